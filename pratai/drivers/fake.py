"""A driver without a sandbox, for tests: the handler runs in a plain child process.

The child is the Python runtime's own bootstrap (pratai/runtimes/python/bootstrap.py), speaking
the same frames, so results, errors (type, message, traceback), per-call stdout and stderr,
their truncation, the result size limit, payload decoding and the AWS-style context are the
sandbox's. What a sandbox adds is absent: no namespaces, no cgroup, the host's uid, files and
network. Memory is bounded as the process driver does without cgroups (an address-space
rlimit: the handler gets a MemoryError, reported as MemoryLimitExceeded); a timeout or a crash
kills the child's whole process group. Tracebacks name the code's real folder, not /code.
It never runs untrusted code: `pratai serve` does not use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from pratai.drivers.base import CallResult, InstanceSpec, failure
from pratai.drivers.frames import (
    Channel,
    bootstrap_config,
    call_result,
    connect,
    frame,
    load_error,
)
from pratai.drivers.runtime_files import PACKAGED
from pratai.drivers.runtimes import FSIZE_LIMIT
from pratai.errors import SandboxError
from pratai.settings import Settings

BOOTSTRAP = PACKAGED / "python" / "bootstrap.py"
# Loads bootstrap.py as a module so its capture files sit in the instance's own folder (the
# sandbox's private /tmp is shared here) and the code folder is importable (no /code mount).
_LAUNCH = """\
import importlib.util, sys
path, code_dir, work_dir, config = sys.argv[1:]
spec = importlib.util.spec_from_file_location("pratai_bootstrap", path)
runtime = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runtime)
runtime.OUT_PATH, runtime.ERR_PATH = work_dir + "/.stdout", work_dir + "/.stderr"
sys.path.insert(0, code_dir)
sys.argv = [path, config]
sys.exit(runtime.main())
"""


class FakeInstance:
    def __init__(self, spec: InstanceSpec, proc: subprocess.Popen[bytes], folder: Path) -> None:
        self.spec = spec
        self.init_ms = 0.0
        self._proc = proc
        self._folder = folder
        self._channel = Channel()
        self._writer: asyncio.WriteTransport | None = None
        self._reader: asyncio.ReadTransport | None = None
        self._lock = asyncio.Lock()
        self._dead = False

    async def connect(self, request_fd: int, response_fd: int) -> None:
        """Takes the driver's ends of the two pipes."""
        self._reader, self._writer = await connect(self._channel, request_fd, response_fd)

    @property
    def alive(self) -> bool:
        return not self._dead and self._proc.poll() is None

    async def call(self, payload: bytes, content_type: str, timeout_s: float) -> CallResult:
        async with self._lock:
            if not self.alive:
                return CallResult("failed", error=failure("InstanceCrashed", self._exit_message()))
            started = time.perf_counter()
            header = {"op": "call", "content_type": content_type, "timeout": timeout_s}
            assert self._writer is not None
            self._writer.write(frame(header, payload))
            try:
                async with asyncio.timeout(timeout_s):
                    answer = await self._channel.next()
            except TimeoutError:
                await self._kill()
                return CallResult.timed_out(timeout_s, _ms_since(started))
            if answer is None:
                await self._kill()
                error = failure("InstanceCrashed", self._exit_message())
                return CallResult("failed", error=error, duration_ms=_ms_since(started))
            return call_result(*answer, peak_memory_kb=None)

    def _exit_message(self) -> str:
        code = self._proc.poll()
        if code is None:
            return "the function's process is not running"
        if code < 0:
            return f"the function's process was killed by signal {-code}"
        return f"the function's process exited with code {code}"

    async def _kill(self) -> None:
        self._dead = True
        with contextlib.suppress(OSError):
            os.killpg(self._proc.pid, signal.SIGKILL)  # its children too
        await asyncio.to_thread(self._proc.wait)

    async def stop(self) -> None:
        await self._kill()
        with contextlib.suppress(RuntimeError):  # the event loop may already be closed
            for pipe in (self._writer, self._reader):
                if pipe is not None:
                    pipe.close()
        shutil.rmtree(self._folder, ignore_errors=True)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


class FakeDriver:
    name = "fake"

    def __init__(self, settings: Settings, start_timeout: float = 30.0) -> None:
        self.settings = settings
        self.start_timeout = start_timeout

    def features(self) -> dict[str, Any]:
        return {"driver": self.name, "namespaces": [], "memory_limit": "rlimit", "cgroup": None}

    async def close(self) -> None:
        pass  # nothing runs but instances

    def _argv(self, spec: InstanceSpec, folder: Path, pipes: tuple[int, int]) -> list[str]:
        config = bootstrap_config(
            spec,
            self.settings,
            pipes,
            rlimit_memory=True,
            rlimit_pids=None,  # RLIMIT_NPROC counts every process of the host user
            fsize=FSIZE_LIMIT,
        )
        if spec.env_dir is not None:  # the venv's python needs `site` to find its packages
            python, flags = str(spec.env_dir.resolve() / "bin" / "python"), ["-I"]
        else:
            python, flags = self.settings.sandbox_python or sys.executable, ["-I", "-S"]
        code_dir = str(spec.code_dir.resolve())
        return [
            python,
            *flags,
            "-c",
            _LAUNCH,
            str(BOOTSTRAP),
            code_dir,
            str(folder),
            json.dumps(config),
        ]

    def _env(self, spec: InstanceSpec, folder: Path) -> dict[str, str]:
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(folder), "LANG": "C.UTF-8"}
        if spec.env_dir is not None:
            env["PATH"] = f"{spec.env_dir.resolve()}/bin:{env['PATH']}"
            env["VIRTUAL_ENV"] = str(spec.env_dir.resolve())
        return {**env, **spec.env}

    async def start(self, spec: InstanceSpec) -> FakeInstance:
        if spec.runtime != "python":
            raise SandboxError(f"the fake driver has no runtime {spec.runtime!r}")
        if spec.files:
            raise SandboxError("the fake driver has no /run/secrets to put files in")
        folder = Path(tempfile.mkdtemp(prefix="pratai-fake-"))
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - read if the start fails
        started = time.perf_counter()
        try:
            proc = subprocess.Popen(
                self._argv(spec, folder, (req_r, resp_w)),
                env=self._env(spec, folder),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                pass_fds=(req_r, resp_w),
                start_new_session=True,
                cwd=folder,
            )
        except OSError as exc:
            for fd in (req_w, resp_r):
                os.close(fd)
            stderr.close()
            shutil.rmtree(folder, ignore_errors=True)
            raise SandboxError(f"could not start the function's process: {exc}") from exc
        finally:
            os.close(req_r)
            os.close(resp_w)
        instance = FakeInstance(spec, proc, folder)
        try:
            await instance.connect(req_w, resp_r)
            with stderr:
                await self._handshake(instance, stderr)
        except BaseException:  # e.g. a cold start cancelled: leave no process behind
            await instance.stop()
            raise
        instance.init_ms = _ms_since(started)
        return instance

    async def _handshake(self, instance: FakeInstance, stderr: IO[bytes]) -> None:
        """Waits for the runtime's first frame; raises SandboxError unless it is "ready"."""
        handler = instance.spec.handler
        try:
            async with asyncio.timeout(self.start_timeout):
                first = await instance._channel.next()
        except TimeoutError:
            await instance.stop()
            message = f"the handler {handler!r} did not load within {self.start_timeout:g} s"
            raise SandboxError(message, type="TimedOut") from None
        if first is None:
            await instance.stop()
            stderr.seek(0)
            detail = stderr.read(8192).decode(errors="replace").strip()
            message = f"the process stopped while loading {handler!r}: {instance._exit_message()}"
            raise SandboxError(f"{message}: {detail}", type="InstanceCrashed", traceback=detail)
        head, _ = first
        if head.get("op") != "ready":
            await instance.stop()
            raise load_error(handler, head)
