"""Running containers of image functions: a warm `HttpInstance`, or a `StdioInstance` that
starts a container per call; both read their limits' evidence from a control group they share
with podman's (see `cgroups.OomWatch`). The podman driver (`pratai.drivers.podman`) starts
them; its docstring explains the contracts."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pratai.core.provisioning import provision
from pratai.drivers.base import CallResult, InstanceSpec, failure
from pratai.drivers.cgroups import ROOT, Cgroup, OomWatch, v1_shares

if TYPE_CHECKING:
    from pratai.drivers.podman import PodmanDriver

PORT = 8080
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def as_result(body: bytes) -> str:
    """JSON text of a body: itself when it is JSON, else the body as a JSON string."""
    text = body.decode(errors="replace")
    try:
        json.loads(text)
    except ValueError:
        return json.dumps(text)
    return text.strip()


def _remove_groups(cgroup: Cgroup) -> bool:
    """Podman creates the container's group in every controller under our group's name; remove
    them all, deepest first. False while something is still inside."""
    name = cgroup.memory_dir.name
    done = cgroup.remove()
    for parent in [ROOT / "pratai", *ROOT.glob("*/pratai")]:
        top = parent / name
        if not top.is_dir():
            continue
        for folder in sorted(
            (p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)
        ):
            with contextlib.suppress(OSError):
                folder.rmdir()
        try:
            top.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            done = False
    return done


def socket_in(netns_fd: int) -> socket.socket:
    """A TCP socket inside another network namespace. setns changes the calling thread only,
    so a throwaway thread does it; the socket stays in that namespace when used elsewhere."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            if _libc.setns(netns_fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns: {os.strerror(err)}")
            box["sock"] = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=run, name="pratai-netns", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    sock: socket.socket = box["sock"]
    sock.setblocking(False)
    return sock


async def _read_capped(stream: asyncio.StreamReader | None, cap: int) -> tuple[bytes, bool]:
    """Everything the stream sends, keeping at most `cap` bytes; True when some was dropped."""
    if stream is None:
        return b"", False
    kept = bytearray()
    dropped = False
    while chunk := await stream.read(65536):
        room = cap - len(kept)
        if len(chunk) > room:
            dropped = True
        kept += chunk[: max(0, room)]
    return bytes(kept), dropped


async def _feed(proc: asyncio.subprocess.Process, payload: bytes) -> None:
    assert proc.stdin is not None
    with contextlib.suppress(OSError, ConnectionError):
        proc.stdin.write(payload)
        await proc.stdin.drain()
    proc.stdin.close()


class _Container:
    """What both contracts share: the spec, the limits group, the podman argv."""

    def __init__(self, driver: PodmanDriver, spec: InstanceSpec, cgroup: Cgroup | None) -> None:
        self.driver = driver
        self.spec = spec
        self.cgroup = cgroup
        self.init_ms = 0.0
        self.oom = OomWatch(cgroup) if cgroup is not None else None
        self._dead = False
        self._stopped = False
        self._lock = asyncio.Lock()

    def run_argv(self, name: str, user: str, *extra: str) -> tuple[list[str], dict[str, str]]:
        spec = self.spec
        base = self.driver.base
        assert base is not None
        argv = [*base, "run", "--name", name, "--pull", "never", "--hostname", "pratai"]
        argv += ["--label", f"pratai.node={self.driver.node_label}", "--stop-timeout", "1"]
        argv += ["--read-only", "--cap-drop", "all", "--security-opt", "no-new-privileges"]
        argv += ["--user", user, "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
        argv += ["--pids-limit", str(self.driver.settings.max_pids)]
        argv += ["--network", "bridge" if spec.network else "none"]
        if self.cgroup is not None:
            argv += ["--cgroup-parent", "/pratai/" + self.cgroup.memory_dir.name]
            argv += ["--cgroups", "no-conmon"]
        else:  # no group of ours: podman's own limits
            cpu = provision(spec.memory_mb, self.driver.cpus)
            argv += ["--memory", f"{spec.memory_mb}m", "--memory-swap", f"{spec.memory_mb}m"]
            argv += ["--cpu-shares", str(v1_shares(cpu.cpu_weight)), "--cpus", f"{cpu.cpus_max:g}"]
        env = {**spec.env, "PORT": str(PORT)}
        # `--env NAME` takes the value from podman's own environment: secrets never appear in
        # an argv other host users could read in /proc.
        for key in env:
            argv += ["--env", key]
        clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
        return [*argv, *extra], clean

    def _hits(self) -> int:
        return self.oom.kills() if self.oom is not None else 0

    def _peak(self) -> int | None:
        return self.cgroup.peak_kb() if self.cgroup is not None else None

    def _oom_error(self) -> dict[str, Any]:
        return failure(
            "MemoryLimitExceeded",
            f"the container exceeded the memory limit of {self.spec.memory_mb} MB and was killed",
        )

    def _answer(self, body: bytes, stderr: str, elapsed: float) -> CallResult:
        """What a container that answered `body` returns: the body as JSON, if not too large."""
        limit = self.driver.settings.max_result_bytes
        if len(body) > limit:
            error = failure("ResultTooLarge", f"the result is over the limit of {limit} bytes")
            return CallResult(
                "failed",
                error=error,
                stderr=stderr,
                duration_ms=elapsed,
                peak_memory_kb=self._peak(),
            )
        return CallResult(
            "succeeded",
            result=as_result(body),
            stderr=stderr,
            duration_ms=elapsed,
            peak_memory_kb=self._peak(),
        )

    async def _remove_container(self, name: str) -> None:
        await self.driver.podman("rm", "--force", "--time", "0", name)

    async def _release(self) -> None:
        if self.oom is not None:
            self.oom.close()
        if self.cgroup is not None:
            for _ in range(100):
                if _remove_groups(self.cgroup):
                    break
                self.cgroup.kill()
                await asyncio.sleep(0.01)


class HttpInstance(_Container):
    """A warm container serving HTTP on its port; calls go one at a time."""

    def __init__(
        self, driver: PodmanDriver, spec: InstanceSpec, cgroup: Cgroup | None, name: str
    ) -> None:
        super().__init__(driver, spec, cgroup)
        self.name = name
        self.pid = 0
        self._netns = -1

    @property
    def alive(self) -> bool:
        return not self._dead and self.pid > 0 and Path(f"/proc/{self.pid}").exists()

    async def _exchange(self, payload: bytes, content_type: str) -> tuple[int, bytes]:
        sock = socket_in(self._netns)
        try:
            loop = asyncio.get_running_loop()
            await loop.sock_connect(sock, ("127.0.0.1", PORT))
            reader, writer = await asyncio.open_connection(sock=sock)
        except BaseException:
            sock.close()
            raise
        try:
            # HTTP/1.0: the server answers without chunking and closes when done.
            head = (
                f"POST / HTTP/1.0\r\nHost: localhost\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(payload)}\r\nUser-Agent: pratai\r\n\r\n"
            )
            writer.write(head.encode() + payload)
            await writer.drain()
            raw, _ = await _read_capped(reader, self.driver.settings.max_result_bytes + 65536)
        finally:
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()
        head_bytes, sep, body = raw.partition(b"\r\n\r\n")
        status_line = head_bytes.split(b"\r\n", 1)[0].split()
        if not sep or len(status_line) < 2 or not status_line[1].isdigit():
            raise ConnectionError("the container's answer is not HTTP")
        for line in head_bytes.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == b"content-length" and value.strip().isdigit():
                body = body[: int(value.strip())]
        return int(status_line[1]), body

    async def call(self, payload: bytes, content_type: str, timeout_s: float) -> CallResult:
        async with self._lock:
            if not self.alive:
                return CallResult("failed", error=failure("InstanceCrashed", "container stopped"))
            if self.cgroup is not None:
                self.cgroup.reset_peak()
            hits = self._hits()
            started = time.perf_counter()
            try:
                async with asyncio.timeout(timeout_s):
                    status, body = await self._exchange(payload, content_type)
            except TimeoutError:
                elapsed = (time.perf_counter() - started) * 1000
                await self._kill()
                return CallResult.timed_out(timeout_s, elapsed)
            except OSError as exc:  # refused, reset, closed early, not HTTP
                elapsed = (time.perf_counter() - started) * 1000
                oom = self._hits() > hits
                if not self.alive or oom:
                    await self._kill()
                error = (
                    self._oom_error()
                    if oom
                    else failure("ConnectionFailed", f"the container did not answer: {exc}")
                )
                return CallResult("failed", error=error, duration_ms=elapsed, peak_memory_kb=None)
            elapsed = (time.perf_counter() - started) * 1000
            if status < 400:
                return self._answer(body, "", elapsed)
            error = (
                self._oom_error()
                if self._hits() > hits
                else failure(
                    "HTTPError",
                    f"the container answered {status}: "
                    + body[:500].decode(errors="replace").strip(),
                )
            )
            return CallResult(
                "failed", error=error, duration_ms=elapsed, peak_memory_kb=self._peak()
            )

    async def _kill(self) -> None:
        self._dead = True
        await self._remove_container(self.name)

    async def logs(self) -> str:
        _, out, err = await self.driver.podman("logs", "--tail", "20", self.name)
        return (out + err).strip()

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._dead = True
        try:
            await self._remove_container(self.name)
        finally:
            if self._netns >= 0:
                os.close(self._netns)
                self._netns = -1
            await self._release()


class StdioInstance(_Container):
    """Runs one container per call; the instance only holds the limits group."""

    def __init__(
        self, driver: PodmanDriver, spec: InstanceSpec, cgroup: Cgroup | None, user: str
    ) -> None:
        super().__init__(driver, spec, cgroup)
        self.user = user

    @property
    def alive(self) -> bool:
        return not self._dead

    async def call(self, payload: bytes, content_type: str, timeout_s: float) -> CallResult:
        async with self._lock:
            if self._dead:
                return CallResult("failed", error=failure("InstanceCrashed", "instance stopped"))
            name = f"pratai-{uuid.uuid4().hex[:16]}"
            argv, env = self.run_argv(
                name, self.user, "--rm", "--interactive", "--log-driver", "none"
            )
            argv.append(self.spec.image)
            if self.cgroup is not None:
                self.cgroup.reset_peak()
            hits = self._hits()
            started = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
                cwd=self.driver.workdir,
            )
            settings = self.driver.settings
            out_task = asyncio.ensure_future(
                _read_capped(proc.stdout, settings.max_result_bytes + 1)
            )
            err_task = asyncio.ensure_future(_read_capped(proc.stderr, settings.max_output_bytes))
            try:
                async with asyncio.timeout(timeout_s):
                    await _feed(proc, payload)
                    (out, _), (err, err_cut) = await asyncio.gather(out_task, err_task)
                    code = await proc.wait()
            except TimeoutError:
                elapsed = (time.perf_counter() - started) * 1000
                await self._abandon(name, proc, (out_task, err_task))
                return CallResult.timed_out(timeout_s, elapsed)
            elapsed = (time.perf_counter() - started) * 1000
            stderr = err.decode(errors="replace") + ("\n[output truncated]" if err_cut else "")
            if code == 0:
                return self._answer(out, stderr, elapsed)
            return CallResult(
                "failed",
                error=self._exit_error(code, bool(out), self._hits() > hits),
                stderr=stderr,
                duration_ms=elapsed,
                peak_memory_kb=self._peak(),
            )

    def _exit_error(self, code: int, answered: bool, oom: bool) -> dict[str, Any]:
        if code == 137 and (oom or self.oom is None):
            return self._oom_error()
        if code in (125, 126, 127) and not answered:
            return failure("ContainerError", f"podman could not run the container: {code}")
        return failure("NonZeroExit", f"the container exited with code {code}")

    async def _abandon(
        self, name: str, proc: asyncio.subprocess.Process, readers: tuple[asyncio.Future[Any], ...]
    ) -> None:
        """A call that timed out: its container goes, and the instance with it."""
        self._dead = True
        await self._remove_container(name)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        for task in readers:
            task.cancel()

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._dead = True
        await self._release()
