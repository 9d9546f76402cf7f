"""The default driver: a bubblewrap sandbox per instance, limited by a cgroup (or rlimits).

Each instance is `bwrap ... <python> -I /runtime/bootstrap.py '<config>'`, started as an
unprivileged host uid (65534) when the platform runs as root, with every namespace unshared
(network only shared when the function asks for it), a read-only /usr, a few /etc files, the
code at /code, the runtime at /runtime (copied into the sandbox folder, see runtime_files.py)
and a private /tmp. The driver and the runtime talk over two pipes with length-prefixed frames;
see pratai/runtimes/python/bootstrap.py for the format.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import stat
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from pratai.drivers.base import CallResult, InstanceSpec
from pratai.drivers.cgroups import Cgroup, CgroupManager
from pratai.drivers.runtime_files import install_runtimes
from pratai.errors import SandboxError
from pratai.settings import Settings

# runtime name -> its folder of pratai/runtimes (as copied by install_runtimes), mounted at /runtime
RUNTIME_DIRS = {"python": "python", "node20": "node"}
PRLIMIT = shutil.which("prlimit")
# What V8 prints when the heap reaches --max-old-space-size, just before it aborts.
V8_HEAP_OOM = "JavaScript heap out of memory"
HEAD = struct.Struct("!II")
NOBODY = 65534
SANDBOX_UID = 1000
FSIZE_LIMIT = 64 * 1024 * 1024
ETC_FILES = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "ssl", "ca-certificates",
    "resolv.conf", "hosts", "nsswitch.conf", "mime.types",
)  # fmt: skip
NAMESPACES = ["user", "mount", "pid", "ipc", "uts", "net", "cgroup"]
INSTALL_HINT = (
    "bubblewrap (bwrap) is not installed: install it with `apt-get install bubblewrap`, "
    "`dnf install bubblewrap` or `apk add bubblewrap`"
)


class _Channel(asyncio.Protocol):
    """Collects frames from the runtime; one waiter at a time."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.frames: list[tuple[dict[str, Any], bytes]] = []
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= HEAD.size:
            hlen, blen = HEAD.unpack_from(self.buf)
            end = HEAD.size + hlen + blen
            if len(self.buf) < end:
                break
            header = json.loads(bytes(self.buf[HEAD.size : HEAD.size + hlen]))
            self.frames.append((header, bytes(self.buf[HEAD.size + hlen : end])))
            del self.buf[:end]
        if self.frames:
            self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def next(self) -> tuple[dict[str, Any], bytes] | None:
        """The next frame, or None once the runtime has closed its end."""
        while not self.frames:
            if self.closed:
                return None
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        return self.frames.pop(0)


SETPRIV = shutil.which("setpriv")
# Joins the cgroup(s) named before "--", then execs the rest. A shell + setpriv in front of bwrap
# lets Popen use vfork: a Python preexec_fn forces a full fork of the (large) platform process,
# which cost ~10 ms of every cold start.
_JOIN_CGROUPS = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'


def _launcher(procs_files: list[str], drop: bool) -> list[str] | None:
    """argv prefix that joins the cgroups and drops privileges, or None to use a preexec_fn."""
    if drop and SETPRIV is None:
        return None
    prefix = ["/bin/sh", "-c", _JOIN_CGROUPS, "sh", *procs_files, "--"] if procs_files else []
    if drop:
        prefix += [str(SETPRIV), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
    return prefix


def _preexec(procs_files: list[str], drop: bool) -> Callable[[], None]:
    def run() -> None:
        pid = str(os.getpid()).encode()
        for path in procs_files:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)
        if drop:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)

    return run


class ProcessInstance:
    """One running sandbox that has imported one handler."""

    def __init__(
        self,
        spec: InstanceSpec,
        proc: subprocess.Popen[bytes],
        cgroup: Cgroup | None,
        writer: asyncio.WriteTransport,
        reader: asyncio.ReadTransport,
        channel: _Channel,
        stderr: IO[bytes],
    ) -> None:
        self.spec = spec
        self.init_ms = 0.0
        self._proc = proc
        self._cgroup = cgroup
        self._writer = writer
        self._reader = reader
        self._channel = channel
        self._stderr = stderr
        self.secrets_dir: Path | None = None  # removed at stop
        self._lock = asyncio.Lock()
        self._dead = False
        self._stopped = False
        self._oom_base = cgroup.oom_kills() if cgroup else 0

    @property
    def alive(self) -> bool:
        return not self._dead and self._proc.poll() is None

    @property
    def pid(self) -> int:
        return self._proc.pid

    async def call(self, payload: bytes, content_type: str, timeout_s: float) -> CallResult:
        async with self._lock:
            if not self.alive:
                return CallResult("failed", error=_error("InstanceCrashed", self._crash_message()))
            header = json.dumps(
                {"op": "call", "content_type": content_type, "timeout": timeout_s}
            ).encode()
            if self._cgroup:
                self._cgroup.reset_peak()
            started = time.perf_counter()
            self._writer.write(HEAD.pack(len(header), len(payload)) + header + payload)
            try:
                async with asyncio.timeout(timeout_s):  # not wait_for: see broker.embedded
                    frame = await self._channel.next()
            except TimeoutError:
                elapsed = (time.perf_counter() - started) * 1000
                await self._kill()
                return CallResult.timed_out(timeout_s, elapsed)
            if frame is None:
                return await self._crashed((time.perf_counter() - started) * 1000)
            head, body = frame
            r_len, o_len, e_len = head["lens"]
            peak = self._cgroup.peak_kb() if self._cgroup else None
            return CallResult(
                status=head["status"],
                result=body[:r_len].decode() if head["status"] == "succeeded" else None,
                error=head["error"],
                stdout=body[r_len : r_len + o_len].decode(errors="replace"),
                stderr=body[r_len + o_len : r_len + o_len + e_len].decode(errors="replace"),
                duration_ms=head["duration_ms"],
                peak_memory_kb=peak if peak is not None else head.get("maxrss_kb"),
            )

    async def _crashed(self, elapsed_ms: float) -> CallResult:
        """The runtime went away mid-call: OOM kill, os._exit, a signal."""
        peak = self._cgroup.peak_kb() if self._cgroup else None
        await self._reap()
        oom = self._cgroup is not None and self._cgroup.oom_kills() > self._oom_base
        await self._kill()
        oom = oom or V8_HEAP_OOM in self._stderr_tail()
        if oom:
            error = _error(
                "MemoryLimitExceeded",
                f"the function exceeded the memory limit of {self.spec.memory_mb} MB "
                "and was killed",
            )
        else:
            error = _error("InstanceCrashed", self._crash_message())
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
            for pid in _children(self._proc.pid):
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
                for _ in range(100):
                    if self._cgroup.remove():
                        break
                    self._cgroup.kill()
                    await asyncio.sleep(0.01)
            with contextlib.suppress(RuntimeError):  # the event loop may already be closed
                self._writer.close()
                self._reader.close()
            self._stderr.close()
            if self.secrets_dir is not None:
                shutil.rmtree(self.secrets_dir, ignore_errors=True)

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


def _children(pid: int) -> list[int]:
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


def _check_reachable(path: Path) -> None:
    """bwrap runs as uid 65534 and opens the mount sources by path, so every parent must be
    searchable by others. Say so plainly instead of letting bwrap fail with EACCES."""
    path = path.resolve()
    for directory in [*reversed(path.parents), path]:
        try:
            st = directory.stat()
        except OSError as exc:
            raise SandboxError(f"cannot use {path} in a sandbox: {exc}") from exc
        mode = st.st_mode
        if mode & stat.S_IXOTH or (st.st_uid == NOBODY and mode & stat.S_IXUSR):
            continue
        raise SandboxError(
            f"the sandbox runs as the unprivileged uid {NOBODY} and cannot reach {path}: "
            f"{directory} is not searchable by other users (chmod o+x {directory}, or keep "
            "PRATAI_HOME in a folder other users may traverse; mode 0711 keeps it unlistable)",
            type="SandboxSetupError",
        )


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"type": kind, "message": message, "traceback": ""}


class ProcessDriver:
    name = "process"

    def __init__(self, settings: Settings, start_timeout: float = 30.0) -> None:
        self.settings = settings
        self.start_timeout = start_timeout
        self.bwrap = shutil.which("bwrap")
        self.cgroups = CgroupManager()
        self.drop_privileges = os.geteuid() == 0
        self._runtimes: Path | None = None  # the copy of pratai/runtimes the sandboxes mount

    def runtime_dir(self, runtime: str) -> Path:
        """The folder mounted at /runtime, copied into the sandbox folder on first use."""
        if self._runtimes is None or not self._runtimes.is_dir():
            self._runtimes = install_runtimes(self.settings.sandbox_dir)
        return self._runtimes / RUNTIME_DIRS.get(runtime, runtime)

    def features(self) -> dict[str, Any]:
        cg = self.cgroups.version
        return {
            "driver": self.name,
            "bwrap": self.bwrap,
            "namespaces": NAMESPACES if self.bwrap else [],
            "cgroup": cg,
            "cgroup_note": self.cgroups.reason or None,
            "memory_limit": "cgroup" if cg else "rlimit",
            "pids_limit": "cgroup" if cg else "rlimit",
            "network_isolation": bool(self.bwrap),
            "unprivileged_uid": NOBODY if self.drop_privileges else None,
            "sandbox_python": self.settings.sandbox_python,
            "sandbox_node": self.settings.sandbox_node,
        }

    def sandbox(
        self, spec: InstanceSpec, secrets_dir: Path | None = None
    ) -> tuple[list[str], dict[str, str]]:
        """bwrap's argv (up to the program to run, without "--") and environment, shared by
        runtime instances and one-shot commands. The environment (which may hold secrets) is
        handed to bwrap itself rather than as --setenv arguments, which every host user could
        read in /proc/<pid>/cmdline; bwrap passes exactly that environment on, so the effect is
        the same as --clearenv plus --setenv."""
        assert self.bwrap
        code_dir = spec.code_dir.resolve()
        env_dir = spec.env_dir.resolve() if spec.env_dir is not None else None
        cmd = [self.bwrap, "--unshare-all"]
        if spec.network:
            cmd.append("--share-net")
        cmd += ["--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr"]
        for link in ("bin", "lib", "lib32", "lib64", "sbin", "libx32"):
            host = Path("/") / link
            if host.is_symlink():
                cmd += ["--symlink", os.readlink(host), f"/{link}"]
            elif host.is_dir():
                cmd += ["--ro-bind", str(host), f"/{link}"]
        for name in ETC_FILES:
            if (Path("/etc") / name).exists():
                cmd += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
        cmd += ["--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev"]
        cmd += ["--ro-bind", str(code_dir), "/code"]
        cmd += ["--ro-bind", str(self.runtime_dir(spec.runtime)), "/runtime"]
        if env_dir is not None and spec.runtime == "node20":
            # /node_modules is on the lookup path of both require() and import from /code
            cmd += ["--ro-bind", str(env_dir / "node_modules"), "/node_modules"]
        elif env_dir is not None:  # at its own path: the venv's bin/python finds pyvenv.cfg
            cmd += ["--ro-bind", str(env_dir), str(env_dir)]
        if secrets_dir is not None:
            cmd += ["--ro-bind", str(secrets_dir), "/run/secrets"]
        cmd += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "pratai"]
        cmd += ["--chdir", "/tmp"]
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": "/tmp",
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        if env_dir is not None and spec.runtime == "python":
            env["PATH"] = f"{env_dir}/bin:{env['PATH']}"
            env["VIRTUAL_ENV"] = str(env_dir)
        env.update(spec.env)
        return cmd, env

    def command(
        self,
        spec: InstanceSpec,
        in_fd: int,
        out_fd: int,
        cgroup: bool,
        secrets_dir: Path | None = None,
    ) -> tuple[list[str], dict[str, str]]:
        """The argv and environment of a runtime instance: the sandbox, then the runtime's
        bootstrap speaking the frame protocol on `in_fd`/`out_fd`."""
        cmd, env = self.sandbox(spec, secrets_dir)
        config = {
            "in_fd": in_fd,
            "out_fd": out_fd,
            "handler": spec.handler,
            "name": spec.name or spec.key,
            "memory_mb": spec.memory_mb,
            "max_output": self.settings.max_output_bytes,
            "max_result": self.settings.max_result_bytes,
            "rlimit_memory": not cgroup,
            "rlimit_pids": None if cgroup else self.settings.max_pids,
            "fsize": FSIZE_LIMIT,
        }
        if spec.runtime == "node20":
            return [*cmd, "--", *self._node_program(spec, cgroup), json.dumps(config)], env
        env_dir = spec.env_dir.resolve() if spec.env_dir is not None else None
        python = str(env_dir / "bin" / "python") if env_dir else self.settings.sandbox_python
        # A venv needs `site` to find its packages; without one, -S keeps the host's system
        # site-packages out of the sandbox and starts faster.
        flags = ["-I"] if env_dir else ["-I", "-S"]
        argv = [*cmd, "--", python, *flags, "/runtime/bootstrap.py", json.dumps(config)]
        return argv, env

    def _node_program(self, spec: InstanceSpec, cgroup: bool) -> list[str]:
        """Node has no setrlimit, so prlimit sets the limits the Python runtime sets itself.
        An address-space limit is impossible (V8 reserves far more than it uses): without a
        cgroup only the heap is bounded. The heap limit sits under the memory limit, so a
        growing heap fails with V8's clear message rather than an OOM kill."""
        limits: list[str] = []
        if PRLIMIT:
            limits = [PRLIMIT, "--core=0", f"--fsize={FSIZE_LIMIT}"]
            if not cgroup:
                limits.append(f"--nproc={self.settings.max_pids}")
            limits.append("--")
        heap_mb = max(16, spec.memory_mb * 3 // 4)
        node = self.settings.sandbox_node
        return [*limits, node, f"--max-old-space-size={heap_mb}", "/runtime/bootstrap.js"]

    def _write_secret_files(self, spec: InstanceSpec) -> Path | None:
        """Secret files live in memory (/dev/shm), readable by the sandbox uid alone, and go
        when the instance stops."""
        if not spec.files:
            return None
        base = "/dev/shm" if Path("/dev/shm").is_dir() else None
        folder = Path(tempfile.mkdtemp(prefix="pratai-secrets-", dir=base))
        for name, content in spec.files.items():
            path = folder / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "w") as out:
                out.write(content)
            if self.drop_privileges:
                os.chown(path, NOBODY, NOBODY)
        os.chmod(folder, 0o500)
        if self.drop_privileges:
            os.chown(folder, NOBODY, NOBODY)
        return folder

    async def start(self, spec: InstanceSpec) -> ProcessInstance:
        if not self.bwrap:
            raise SandboxError(INSTALL_HINT)
        if spec.runtime not in RUNTIME_DIRS:
            raise SandboxError(f"the process driver has no runtime {spec.runtime!r}")
        if spec.runtime == "node20" and not Path(self.settings.sandbox_node).is_file():
            raise SandboxError(
                f"Node.js is not installed at {self.settings.sandbox_node}: install Node.js 20 "
                "(e.g. `apt-get install nodejs`) or set PRATAI_SANDBOX_NODE"
            )
        runtime_dir = self.runtime_dir(spec.runtime)  # before anything needs cleaning up
        if self.drop_privileges:
            for path in (spec.code_dir, spec.env_dir, runtime_dir):
                if path is not None:
                    _check_reachable(Path(path))
        loop = asyncio.get_running_loop()
        cgroup = self.cgroups.create(spec.key, spec.memory_mb * 1024 * 1024, self.settings.max_pids)
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        if spec.runtime == "node20" and self.drop_privileges:
            for fd in (req_r, resp_w):  # so bootstrap.js may reopen them close-on-exec
                os.fchown(fd, NOBODY, NOBODY)
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - owned by the instance
        secrets_dir = self._write_secret_files(spec)
        argv, env = self.command(spec, req_r, resp_w, cgroup is not None, secrets_dir)
        started = time.perf_counter()
        procs_files = cgroup.procs_files if cgroup else []
        launcher = _launcher(procs_files, self.drop_privileges)
        preexec = None if launcher is not None else _preexec(procs_files, self.drop_privileges)
        try:
            proc = subprocess.Popen(
                [*(launcher or []), *argv],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                pass_fds=(req_r, resp_w),
                start_new_session=True,
                preexec_fn=preexec,
                cwd="/",
            )
        except OSError as exc:
            for fd in (req_r, req_w, resp_r, resp_w):
                os.close(fd)
            stderr.close()
            if cgroup:
                cgroup.remove()
            if secrets_dir is not None:
                shutil.rmtree(secrets_dir, ignore_errors=True)
            raise SandboxError(f"could not start the sandbox: {exc}") from exc
        os.close(req_r)
        os.close(resp_w)
        channel = _Channel()
        reader, _ = await loop.connect_read_pipe(lambda: channel, os.fdopen(resp_r, "rb", 0))
        writer, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(req_w, "wb", 0))
        instance = ProcessInstance(spec, proc, cgroup, writer, reader, channel, stderr)
        instance.secrets_dir = secrets_dir
        try:
            async with asyncio.timeout(self.start_timeout):
                frame = await channel.next()
        except TimeoutError:
            await instance.stop()
            raise SandboxError(
                f"the handler {spec.handler!r} did not load within {self.start_timeout:g} s",
                type="TimedOut",
            ) from None
        if frame is None:
            result = await instance._crashed((time.perf_counter() - started) * 1000)
            detail = instance.read_stderr()
            await instance.stop()
            assert result.error is not None
            message = f"the sandbox stopped while loading {spec.handler!r}: "
            message += result.error["message"] + (f": {detail}" if detail else "")
            raise SandboxError(message, type=result.error["type"], traceback=detail)
        head, _ = frame
        if head.get("op") != "ready":
            await instance.stop()
            err = head.get("error") or {}
            raise SandboxError(
                f"could not load handler {spec.handler!r}: "
                f"{err.get('type', 'Error')}: {err.get('message', '')}",
                type=err.get("type", "Error"),
                traceback=err.get("traceback", ""),
                stdout=head.get("stdout", ""),
                stderr=head.get("stderr", ""),
            )
        instance.init_ms = (time.perf_counter() - started) * 1000
        return instance
