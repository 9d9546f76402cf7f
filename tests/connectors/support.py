"""Helpers for the connector tests: collecting emits, running a connector, private servers.

Restart tests run their own server on a free port (never the machine's shared one), except
RabbitMQ, whose app on the shared node is stopped and started again (always started again).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from pratai.connectors.base import Connector, Incoming
from tests.helpers import wait_for


class Collector:
    """An `emit` that records what it got; it raises for its first `fail` calls."""

    def __init__(self, fail: int = 0, block_first: bool = False) -> None:
        self.items: list[Incoming] = []
        self.calls = 0
        self._fail = fail
        self._block_first = block_first
        self.blocked = asyncio.Event()

    async def __call__(self, incoming: Incoming) -> None:
        self.calls += 1
        if self._block_first:
            self._block_first = False
            self.blocked.set()
            await asyncio.Event().wait()  # until cancelled
        if self._fail > 0:
            self._fail -= 1
            raise RuntimeError("emit failed on purpose")
        self.items.append(incoming)

    @property
    def data(self) -> list[Any]:
        return [i.data for i in self.items]


@contextlib.asynccontextmanager
async def running(connector: Connector, emit: Callable[[Incoming], Any]) -> AsyncIterator[None]:
    """Runs the connector in a task; on exit cancels it and checks it ended by cancellation only."""
    task = asyncio.create_task(connector.run(emit))
    try:
        yield
        assert not task.done(), f"run() returned early: {task}"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        assert task.cancelled()
    assert connector.status.connected is False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(
    port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    def listening() -> bool:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {proc.args!r}")
        with socket.socket() as s:
            s.settimeout(0.2)
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, timeout, interval=0.02, what=f"something to listen on 127.0.0.1:{port}")


def require_binary(name: str, *fallbacks: str) -> str:
    for candidate in (name, *fallbacks):
        found = shutil.which(candidate) or (candidate if os.access(candidate, os.X_OK) else None)
        if found:
            return found
    raise AssertionError(f"{name} is not installed (the connector tests need it)")


class PrivateServer:
    """A server process on a fixed port that a test can stop and start again."""

    def __init__(self, argv: list[str], port: int, log: Path) -> None:
        self.argv = argv
        self.port = port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)
        wait_port(self.port, proc=self.proc)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _as_postgres(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


class PrivatePostgres:
    """A throwaway PostgreSQL cluster (initdb in a temporary folder) on a free port."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        bindir = Path(bins[-1]) if bins else None
        initdb = shutil.which("initdb") or (str(bindir / "initdb") if bindir else None)
        if initdb is None or not os.access(initdb, os.X_OK):
            raise AssertionError("PostgreSQL's initdb is not installed")
        self.bindir = Path(initdb).parent
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="pratai-pg-"))
        self.data = self.root / "data"
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        subprocess.run(
            _as_postgres(
                [initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"]
            ),
            check=True,
            capture_output=True,
        )
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            _as_postgres(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-o",
                    opts,
                    "-l",
                    str(self.root / "log"),
                    "-w",
                    *args,
                ]
            ),
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        self._ctl("start")
        wait_port(self.port)

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ctl("-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
