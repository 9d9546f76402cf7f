"""One running sandbox of the process driver.

The driver and the runtime talk over two pipes with length-prefixed frames (see frames.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import IO, Any

from pratai.drivers.base import CallResult, InstanceSpec, failure
from pratai.drivers.cgroups import Cgroup
from pratai.drivers.frames import Channel, call_result, connect, frame, load_error
from pratai.errors import SandboxError


class ProcessInstance:
    """One running sandbox that has imported one handler."""

    def __init__(
        self,
        spec: InstanceSpec,
        proc: subprocess.Popen[bytes],
        *,
        cgroup: Cgroup | None,
        stderr: IO[bytes],
        cleanup: tuple[Path, ...],
        heap_oom: str,
        started: float,
    ) -> None:
        self.spec = spec
        self.init_ms = 0.0
        self._proc = proc
        self._cgroup = cgroup
        self._stderr = stderr
        self.cleanup = cleanup  # folders removed at stop (secret files; a spare's code)
        self._heap_oom = heap_oom  # what the interpreter prints when its heap cap is hit
        self._started = started  # perf_counter() at launch
        self._channel = Channel()
        self._writer: asyncio.WriteTransport | None = None
        self._reader: asyncio.ReadTransport | None = None
        self._lock = asyncio.Lock()
        self._dead = False
        self._stopped = False
        self._oom_base = cgroup.oom_kills() if cgroup else 0

    async def connect(self, request_fd: int, response_fd: int) -> None:
        """Takes the driver's ends of the two pipes."""
        self._reader, self._writer = await connect(self._channel, request_fd, response_fd)

    async def handshake(self, timeout_s: float) -> None:
        """Waits for the runtime to load the handler. If it does not, the instance stops and
        SandboxError says why, with the user's import error in its details."""
        handler = self.spec.handler
        head = await self._first_frame(
            f"the handler {handler!r} did not load within {timeout_s:g} s",
            f"the sandbox stopped while loading {handler!r}: ",
            timeout_s,
        )
        if head.get("op") != "ready":
            await self.stop()
            raise load_error(self.spec.handler, head)
        self.init_ms = (time.perf_counter() - self._started) * 1000

    async def wait_spare(self, timeout_s: float) -> None:
        """Waits for a spare's runtime to say it is up and waiting for its function."""
        head = await self._first_frame(
            f"a spare sandbox did not start within {timeout_s:g} s",
            "a spare sandbox stopped as it started: ",
            timeout_s,
        )
        if head.get("op") != "spare":
            await self.stop()
            raise SandboxError(f"a spare sandbox answered {head.get('op')!r}")

    async def claim(self, spec: InstanceSpec, config: dict[str, Any], timeout_s: float) -> None:
        """Hands this spare to the function of `spec` (its code and secret files are in place,
        its cgroup's limits set): the runtime takes the config and environment, then loads the
        handler. init_ms counts from here: the cold start the caller waits for."""
        self.spec = spec
        self._started = time.perf_counter()
        assert self._writer is not None
        self._writer.write(frame({"op": "claim", "config": config, "env": spec.env}))
        await self.handshake(timeout_s)

    async def _first_frame(self, late: str, stopped: str, timeout_s: float) -> dict[str, Any]:
        """The runtime's next frame; if none comes, the instance stops and SandboxError says
        why."""
        try:
            async with asyncio.timeout(timeout_s):
                first = await self._channel.next()
        except TimeoutError:
            await self.stop()
            raise SandboxError(late, type="TimedOut") from None
        if first is None:
            result = await self._crashed((time.perf_counter() - self._started) * 1000)
            detail = self.read_stderr()
            await self.stop()
            assert result.error is not None
            message = stopped + result.error["message"] + (f": {detail}" if detail else "")
            raise SandboxError(message, type=result.error["type"], traceback=detail)
        return first[0]

    @property
    def alive(self) -> bool:
        return not self._dead and self._proc.poll() is None

    @property
    def pid(self) -> int:
        return self._proc.pid

    async def call(self, payload: bytes, content_type: str, timeout_s: float) -> CallResult:
        async with self._lock:
            if not self.alive:
                return CallResult("failed", error=failure("InstanceCrashed", self._crash_message()))
            header = {"op": "call", "content_type": content_type, "timeout": timeout_s}
            if self._cgroup:
                self._cgroup.reset_peak()
            started = time.perf_counter()
            assert self._writer is not None
            self._writer.write(frame(header, payload))
            try:
                async with asyncio.timeout(timeout_s):  # not wait_for: see broker.embedded
                    answer = await self._channel.next()
            except TimeoutError:
                elapsed = (time.perf_counter() - started) * 1000
                await self._kill()
                return CallResult.timed_out(timeout_s, elapsed)
            if answer is None:
                return await self._crashed((time.perf_counter() - started) * 1000)
            peak = self._cgroup.peak_kb() if self._cgroup else None
            return call_result(*answer, peak_memory_kb=peak)

    async def _crashed(self, elapsed_ms: float) -> CallResult:
        """The runtime went away mid-call: OOM kill, os._exit, a signal."""
        peak = self._cgroup.peak_kb() if self._cgroup else None
        await self._reap()
        oom = self._cgroup is not None and self._cgroup.oom_kills() > self._oom_base
        await self._kill()
        oom = oom or bool(self._heap_oom and self._heap_oom in self._stderr_tail())
        if oom:
            error = failure(
                "MemoryLimitExceeded",
                f"the function exceeded the memory limit of {self.spec.memory_mb} MB "
                "and was killed",
            )
        else:
            error = failure("InstanceCrashed", self._crash_message())
        return CallResult("failed", error=error, duration_ms=elapsed_ms, peak_memory_kb=peak)

    def _crash_message(self) -> str:
        code = self._proc.returncode
        if code is None:
            return "the sandbox is not running"
        if code > 128 and code - 128 < 65:  # bwrap reports a signal as 128 + signum
            name = signal.Signals(code - 128).name if code - 128 in signal.valid_signals() else ""
            return f"the function's process was killed by signal {code - 128} {name}".rstrip()
        if code < 0:
            return f"the function's process was killed by signal {-code}"
        return f"the function's process exited with code {code}"

    async def _reap(self, wait_s: float = 2.0) -> None:
        deadline = time.monotonic() + wait_s
        while self._proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    async def _kill(self) -> None:
        """Kill the sandbox's pid-namespace init first, so the outer bwrap (our child) reaps it
        and exits on its own; killing both at once would leave the init a zombie of host pid 1."""
        self._dead = True
        if self._proc.poll() is None:
            for pid in children(self._proc.pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            await self._reap(1.0)
        if self._proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            await self._reap()
        if self._cgroup:
            self._cgroup.kill()  # anything that escaped the namespace teardown

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            await self._kill()
        finally:
            if self._cgroup:
                await self._cgroup.discard()
            with contextlib.suppress(RuntimeError):  # the event loop may already be closed
                for pipe in (self._writer, self._reader):
                    if pipe is not None:
                        pipe.close()
            self._stderr.close()
            for folder in self.cleanup:
                shutil.rmtree(folder, ignore_errors=True)

    def _stderr_tail(self, size: int = 4096) -> str:
        with contextlib.suppress(OSError, ValueError):
            self._stderr.seek(0, os.SEEK_END)
            self._stderr.seek(max(0, self._stderr.tell() - size))
            return self._stderr.read(size).decode(errors="replace")
        return ""

    def read_stderr(self) -> str:
        """What bwrap (or the interpreter, before the runtime took over) wrote to stderr."""
        with contextlib.suppress(OSError, ValueError):
            self._stderr.seek(0)
            return self._stderr.read(8192).decode(errors="replace").strip()
        return ""


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:  # kernels without CONFIG_PROC_CHILDREN: scan /proc
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    stat = (entry / "stat").read_text()
                    if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry.name))
        return found
    return [int(x) for x in text.split()]
