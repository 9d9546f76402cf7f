"""Progress on long work (uploads, builds, image loads), for a person at a terminal.

Drawn on stderr only when stderr is a terminal and the output is not `-o json`; otherwise not at
all, so scripts and pipes see the same output with it as without. It is one line, redrawn in
place by a thread (so the spinner turns while the command waits on the server) and erased when
the work ends: what the command prints afterwards is unchanged.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import click

from pratai.cli.group import output_format

_SPINNER = "|/-\\"
_BAR = 24  # characters of the bar
_EVERY_S = 0.1  # how often the line is redrawn


def shown() -> bool:
    """Whether progress is drawn: a terminal on stderr, output not `-o json`, not TERM=dumb."""
    if output_format() == "json" or os.environ.get("TERM") == "dumb":
        return False
    return sys.stderr.isatty()


def size(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


class Progress:
    """`with Progress("uploading f.zip", total=n) as p:` then `p.advance(k)` as bytes go; once
    all of `total` went, it shows `then` with a spinner until the block ends. Without `total`,
    a spinner and the time elapsed."""

    def __init__(self, label: str, total: int | None = None, then: str = "") -> None:
        self.label = label
        self.total = total
        self.then = then or "waiting for the server"
        self.done = 0
        self.started = time.monotonic()
        self.shown = shown()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one writer of the line at a time
        self._thread: threading.Thread | None = None

    def advance(self, n: int) -> None:
        self.done += n

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        spin = _SPINNER[int(elapsed / _EVERY_S) % len(_SPINNER)]
        if self.total is None:
            return f"{spin} {self.label}... {elapsed:.0f}s"
        if self.done < self.total:
            part = self.done / self.total if self.total else 1.0
            bar = "#" * int(part * _BAR)
            return (
                f"{self.label} [{bar:.<{_BAR}}] {size(self.done)} / {size(self.total)} {part:4.0%}"
            )
        return f"{spin} {self.label}: {size(self.total)} sent; {self.then}... {elapsed:.0f}s"

    def _draw(self, text: str) -> None:
        with self._lock:
            click.echo(f"\r\033[K{text}", nl=False, err=True)

    def _redraw(self) -> None:
        while not self._stop.wait(_EVERY_S):
            self._draw(self.line())

    def __enter__(self) -> Progress:
        if self.shown:
            self._draw(self.line())
            self._thread = threading.Thread(target=self._redraw, name="progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._draw(self.line())  # where it got to, then the line goes
            self._draw("")


class CountedBytes(io.BytesIO):
    """Bytes to upload that report each read (an upload reads its file in chunks as it sends)."""

    def __init__(self, data: bytes, on_read: Callable[[int], Any]) -> None:
        super().__init__(data)
        self.on_read = on_read

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(size)
        self.on_read(len(chunk))
        return chunk


class CountedFile(io.FileIO):
    """A file on disk to upload, read by chunks as it is sent, reporting each read."""

    def __init__(self, path: str, on_read: Callable[[int], Any]) -> None:
        super().__init__(path, "rb")
        self.on_read = on_read

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(size) or b""
        self.on_read(len(chunk))
        return chunk
