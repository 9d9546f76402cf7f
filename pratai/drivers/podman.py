"""The podman driver: container image functions, and the engine that loads their images.

Two contracts (the function version's `handler` names it):

- ``http``: the image serves HTTP on ``$PORT`` (8080). One warm container serves many calls:
  each call POSTs the payload to ``/`` and the response body is the result (status >= 400 or a
  dropped connection: failed). The container has no network of its own unless the function
  asks for one; Pratai still reaches its port by creating the socket inside the container's
  network namespace (`setns` in a short-lived helper thread: a socket stays in the namespace
  it was created in, whichever thread uses it later).
- ``stdio``: one container per call: the payload on stdin, the result on stdout, stderr kept
  as the log; a non-zero exit fails the call.

Either way a body that is valid JSON is the result as is; anything else becomes a JSON string.

Limits: each instance gets its own control group from `CgroupManager` (memory and pids limits),
given to podman as ``--cgroup-parent``; podman puts the container in a child group. The limits
sit on our group rather than on podman's ``--memory`` because cgroup v1 counts an OOM kill only
in the group of the killed task, which podman removes when the container exits: our group keeps
the evidence (v1: ``memory.failcnt``; v2: the hierarchical ``oom_kill`` of ``memory.events``)
and the peak. ``--cgroups no-conmon`` keeps podman's monitor process (and the ``podman
container cleanup`` it runs at exit) out of the limited group. Without writable cgroups podman's
own ``--memory``/``--pids-limit`` apply and its OOMKilled flag is the evidence.

Every container: read-only root (tmpfs /tmp, /run, /var/tmp, charged to the memory limit), all
capabilities dropped, no-new-privileges, the image's non-root user or else uid 65534, no host
mounts, no network unless asked (then podman's default bridge: the host's loopback is another
namespace and stays unreachable; services the host binds on all addresses are reachable through
the bridge gateway). ``--cgroup-manager cgroupfs`` works with and without systemd, on v1 and v2.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from pratai.core.images import CONTRACTS, LoadedImage
from pratai.drivers.base import CallResult, InstanceSpec
from pratai.drivers.cgroups import ROOT, Cgroup, CgroupManager
from pratai.errors import InvalidInput, SandboxError
from pratai.settings import Settings

PORT = 8080
NOBODY = "65534:65534"
CLONE_NEWNET = 0x40000000
INSTALL_HINT = "podman is not installed: install it with `apt-get install podman runc`"
_libc = ctypes.CDLL(None, use_errno=True)


def podman_base() -> list[str] | None:
    """podman's global flags. runc rather than crun: crun fails on hybrid cgroup hosts (it
    cannot set RLIMIT_NOFILE there); cgroupfs works with and without systemd."""
    podman = shutil.which("podman")
    if podman is None:
        return None
    base = [podman, "--cgroup-manager", "cgroupfs"]
    runc = shutil.which("runc")
    return [*base, "--runtime", runc] if runc else base


def as_result(body: bytes) -> str:
    """JSON text of a body: itself when it is JSON, else the body as a JSON string."""
    text = body.decode(errors="replace")
    try:
        json.loads(text)
    except ValueError:
        return json.dumps(text)
    return text.strip()


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"type": kind, "message": message, "traceback": ""}


class OomWatch:
    """Counts OOM kills under one instance's group.

    v2: memory.events is hierarchical, so our group's oom_kill counts the container's kills.
    v1 counts a kill only in the killed task's own group (podman's, removed when the container
    exits) and, on recent kernels, no longer keeps memory.failcnt; but an OOM notification
    registered on our group (cgroup.event_control + an eventfd) fires for OOMs under it, and the
    eventfd keeps the count until read."""

    def __init__(self, cgroup: Cgroup) -> None:
        self.cgroup = cgroup
        self.count = 0
        self._efd = -1
        if cgroup.version == "v1":
            with contextlib.suppress(OSError):
                efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
                ofd = os.open(cgroup.memory_dir / "memory.oom_control", os.O_RDONLY)
                try:
                    control = cgroup.memory_dir / "cgroup.event_control"
                    control.write_text(f"{efd} {ofd}")
                    self._efd = efd
                except OSError:
                    os.close(efd)
                finally:
                    os.close(ofd)

    def kills(self) -> int:
        if self.cgroup.version == "v2":
            return self.cgroup.oom_kills()
        if self._efd >= 0:
            with contextlib.suppress(BlockingIOError):
                self.count += os.eventfd_read(self._efd)
        return self.count

    def close(self) -> None:
        if self._efd >= 0:
            os.close(self._efd)
            self._efd = -1


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


def _socket_in(netns_fd: int) -> socket.socket:
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


class PodmanEngine:
    """Loads archives into podman's image store and removes images (for `pratai image-load`)."""

    def __init__(self) -> None:
        self.base = podman_base()

    async def _podman(self, *args: str, timeout: float = 600) -> tuple[int, str, str]:
        if self.base is None:
            raise SandboxError(INSTALL_HINT, type="PodmanMissing")
        proc = await asyncio.create_subprocess_exec(
            *self.base,
            *args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    async def load(self, archive: Path) -> list[LoadedImage]:
        """Raises InvalidInput when the file is not an image archive podman can read."""
        if not await asyncio.to_thread(tarfile.is_tarfile, archive):
            raise InvalidInput(
                "not an image archive: expected a tar file written by `podman save`, "
                "`docker save` or an OCI layout tarball",
                type="InvalidImageArchive",
            )
        code, out, err = await self._podman("load", "--quiet", "--input", str(archive))
        if code != 0:
            problem = err.strip().splitlines()[0] if err.strip() else f"exit code {code}"
            raise InvalidInput(
                f"podman could not load the archive: {problem}", type="InvalidImageArchive"
            )
        # "Loaded image: localhost/echo:1" or "Loaded image(s): a:1,b:2" or an id when unnamed
        names: list[str] = []
        for line in out.splitlines():
            _, sep, rest = line.partition(":")
            if sep and line.lower().startswith("loaded image"):
                names += [n.strip() for n in rest.split(",") if n.strip()]
        loaded = []
        for name in names:
            code, out, err = await self._podman(
                "image", "inspect", "--format", "{{.Id}} {{.Size}}", name
            )
            if code != 0:
                raise SandboxError(f"podman loaded {name} but cannot inspect it: {err.strip()}")
            image_id, size = out.split()
            ref = image_id[:12] if name.removeprefix("sha256:") == image_id else name
            loaded.append(LoadedImage(ref, image_id, int(size)))
        if not loaded:
            raise InvalidInput("the archive holds no image", type="InvalidImageArchive")
        return loaded

    async def remove(self, image_id: str) -> None:
        """Best effort, never forced: an image a container still uses, or that other names
        still tag, stays."""
        await self._podman("rmi", image_id)


# --- instances ------------------------------------------------------------------------------


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
        else:
            argv += ["--memory", f"{spec.memory_mb}m", "--memory-swap", f"{spec.memory_mb}m"]
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
        return _error(
            "MemoryLimitExceeded",
            f"the container exceeded the memory limit of {self.spec.memory_mb} MB and was killed",
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
        sock = _socket_in(self._netns)
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
                return CallResult("failed", error=_error("InstanceCrashed", "container stopped"))
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
                return CallResult(
                    "timed_out",
                    error=_error("TimedOut", f"the function did not finish within {timeout_s:g} s"),
                    duration_ms=elapsed,
                )
            except OSError as exc:  # refused, reset, closed early, not HTTP
                elapsed = (time.perf_counter() - started) * 1000
                oom = self._hits() > hits
                if not self.alive or oom:
                    await self._kill()
                error = (
                    self._oom_error()
                    if oom
                    else _error("ConnectionFailed", f"the container did not answer: {exc}")
                )
                return CallResult("failed", error=error, duration_ms=elapsed, peak_memory_kb=None)
            elapsed = (time.perf_counter() - started) * 1000
            peak = self._peak()
            if status >= 400:
                error = (
                    self._oom_error()
                    if self._hits() > hits
                    else _error(
                        "HTTPError",
                        f"the container answered {status}: "
                        + body[:500].decode(errors="replace").strip(),
                    )
                )
                return CallResult("failed", error=error, duration_ms=elapsed, peak_memory_kb=peak)
            if len(body) > self.driver.settings.max_result_bytes:
                return CallResult(
                    "failed",
                    error=_error(
                        "ResultTooLarge",
                        f"the result is over the limit of "
                        f"{self.driver.settings.max_result_bytes} bytes",
                    ),
                    duration_ms=elapsed,
                    peak_memory_kb=peak,
                )
            return CallResult(
                "succeeded", result=as_result(body), duration_ms=elapsed, peak_memory_kb=peak
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
                return CallResult("failed", error=_error("InstanceCrashed", "instance stopped"))
            settings = self.driver.settings
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

            async def feed() -> None:
                assert proc.stdin is not None
                with contextlib.suppress(OSError, ConnectionError):
                    proc.stdin.write(payload)
                    await proc.stdin.drain()
                proc.stdin.close()

            out_task = asyncio.ensure_future(
                _read_capped(proc.stdout, settings.max_result_bytes + 1)
            )
            err_task = asyncio.ensure_future(_read_capped(proc.stderr, settings.max_output_bytes))
            try:
                async with asyncio.timeout(timeout_s):
                    await feed()
                    (out, _), (err, err_cut) = await asyncio.gather(out_task, err_task)
                    code = await proc.wait()
            except TimeoutError:
                elapsed = (time.perf_counter() - started) * 1000
                self._dead = True
                await self._remove_container(name)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
                for task in (out_task, err_task):
                    task.cancel()
                return CallResult(
                    "timed_out",
                    error=_error("TimedOut", f"the function did not finish within {timeout_s:g} s"),
                    duration_ms=elapsed,
                )
            elapsed = (time.perf_counter() - started) * 1000
            stderr = err.decode(errors="replace") + ("\n[output truncated]" if err_cut else "")
            peak = self._peak()
            if code != 0:
                if code == 137 and (self._hits() > hits or self.oom is None):
                    error = self._oom_error()
                elif code in (125, 126, 127) and not out:
                    error = _error("ContainerError", f"podman could not run the container: {code}")
                else:
                    error = _error("NonZeroExit", f"the container exited with code {code}")
                return CallResult(
                    "failed", error=error, stderr=stderr, duration_ms=elapsed, peak_memory_kb=peak
                )
            if len(out) > settings.max_result_bytes:
                error = _error(
                    "ResultTooLarge",
                    f"the result is over the limit of {settings.max_result_bytes} bytes",
                )
                return CallResult(
                    "failed", error=error, stderr=stderr, duration_ms=elapsed, peak_memory_kb=peak
                )
            return CallResult(
                "succeeded",
                result=as_result(out),
                stderr=stderr,
                duration_ms=elapsed,
                peak_memory_kb=peak,
            )

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._dead = True
        await self._release()


# --- the driver -----------------------------------------------------------------------------


class PodmanDriver:
    """Runs `spec.image` (an image id) with the contract named by `spec.handler`."""

    name = "podman"

    def __init__(self, settings: Settings, start_timeout: float = 30.0) -> None:
        self.settings = settings
        self.start_timeout = start_timeout
        self.base = podman_base()
        self.cgroups = CgroupManager()
        self._users: dict[str, str] = {}  # image id -> the user its containers run as
        self._probe: dict[str, Any] | None = None
        # marks this platform's containers, so a restart removes what a killed run left
        self.node_label = hashlib.sha256(str(settings.home).encode()).hexdigest()[:16]
        self._swept = False
        self._sweep_lock = asyncio.Lock()
        # podman's monitor (conmon) writes an "oom" marker file into its working directory
        # when a container is OOM-killed: give it a private one instead of ours
        self.workdir = settings.home / "podman"

    async def podman(self, *args: str, timeout: float = 60) -> tuple[int, str, str]:
        assert self.base is not None
        proc = await asyncio.create_subprocess_exec(
            *self.base,
            *args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.workdir,
        )
        try:
            async with asyncio.timeout(timeout):
                out, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return -1, "", f"podman {args[0]} did not finish within {timeout:g} s"
        assert proc.returncode is not None
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    def probe(self) -> dict[str, Any]:
        """Whether podman answers, with its version and OCI runtime (run once, then cached)."""
        if self._probe is None:
            found: dict[str, Any] = {"podman": None, "podman_works": False}
            if self.base is not None:
                found["podman"] = self.base[0]
                fmt = "{{.Version.Version}} {{.Host.OCIRuntime.Name}} {{.Host.CgroupsVersion}}"
                try:
                    done = subprocess.run(
                        [*self.base, "info", "--format", fmt],
                        capture_output=True,
                        text=True,
                        timeout=30,
                    )
                    if done.returncode == 0 and len(done.stdout.split()) == 3:
                        version, runtime, cgroups = done.stdout.split()
                        found.update(
                            podman_works=True,
                            podman_version=version,
                            oci_runtime=runtime,
                            podman_cgroups=cgroups,
                        )
                    else:
                        found["podman_error"] = done.stderr.strip()[-500:]
                except (OSError, subprocess.TimeoutExpired) as exc:
                    found["podman_error"] = str(exc)
            self._probe = found
        return self._probe

    def features(self) -> dict[str, Any]:
        return {
            "driver": self.name,
            "podman": self.base[0] if self.base else None,
            "contracts": list(CONTRACTS),
            "cgroup": self.cgroups.version,
            "memory_limit": "cgroup" if self.cgroups.version else "podman --memory",
            "network_isolation": "--network none (unless the function asks for network)",
            "rootfs": "read-only",
            "capabilities": "all dropped",
        }

    async def _user(self, image_id: str) -> str:
        """The image's own user when it names a non-root one, else nobody."""
        if image_id not in self._users:
            code, out, err = await self.podman(
                "image", "inspect", "--format", "{{.Config.User}}", image_id
            )
            if code != 0:
                raise SandboxError(
                    f"image {image_id[:12]} is not on this machine: {err.strip()}",
                    type="ImageNotFound",
                )
            user = out.strip()
            self._users[image_id] = (
                user if user and user.split(":")[0] not in ("root", "0") else NOBODY
            )
        return self._users[image_id]

    async def _sweep(self) -> None:
        """Once per process, before the first container: remove containers a killed run of
        this platform (same data folder) left behind."""
        if self._swept:
            return
        async with self._sweep_lock:  # concurrent first starts wait, or we'd remove theirs
            if self._swept:
                return
            label = f"label=pratai.node={self.node_label}"
            code, out, _ = await self.podman("ps", "--all", "--quiet", "--filter", label)
            if code == 0 and out.split():
                await self.podman("rm", "--force", "--time", "0", *out.split())
            self._swept = True

    async def start(self, spec: InstanceSpec) -> HttpInstance | StdioInstance:
        if self.base is None:
            raise SandboxError(INSTALL_HINT, type="PodmanMissing")
        if spec.handler not in CONTRACTS:
            raise SandboxError(f"unknown image contract {spec.handler!r}: use http or stdio")
        if spec.files:
            raise SandboxError(
                "secret files are not supported for container images: bind the secret as an "
                "environment variable (--secret) instead",
                type="Unsupported",
            )
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        await self._sweep()
        started = time.perf_counter()
        image_id = spec.image
        user = await self._user(image_id)
        cgroup = self.cgroups.create(spec.key, spec.memory_mb * 1024 * 1024, self.settings.max_pids)
        if cgroup is not None and cgroup.version == "v2":
            # podman's child group needs the controllers enabled below ours
            with contextlib.suppress(OSError):
                (cgroup.memory_dir / "cgroup.subtree_control").write_text("+memory +pids")
        if spec.handler == "stdio":
            instance: HttpInstance | StdioInstance = StdioInstance(self, spec, cgroup, user)
        else:
            instance = await self._start_http(spec, cgroup, user, image_id)
        instance.init_ms = (time.perf_counter() - started) * 1000
        return instance

    async def _start_http(
        self, spec: InstanceSpec, cgroup: Cgroup | None, user: str, image_id: str
    ) -> HttpInstance:
        name = f"pratai-{re.sub(r'[^a-zA-Z0-9_.-]', '-', spec.key)[:40]}-{uuid.uuid4().hex[:8]}"
        instance = HttpInstance(self, spec, cgroup, name)
        with tempfile.TemporaryDirectory(prefix="pratai-podman-") as tmp:
            pidfile = Path(tmp) / "pid"
            argv, env = instance.run_argv(
                name, user, "--detach", "--pidfile", str(pidfile), image_id
            )
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=self.workdir,
            )
            _, err = await proc.communicate()
            if proc.returncode != 0:
                await instance.stop()
                raise SandboxError(
                    f"podman could not start the container: {err.decode(errors='replace')}",
                    type="ContainerError",
                )
            try:
                instance.pid = int(pidfile.read_text().strip())
                instance._netns = os.open(f"/proc/{instance.pid}/ns/net", os.O_RDONLY)
            except (OSError, ValueError) as exc:
                logs = await instance.logs()
                await instance.stop()
                raise SandboxError(
                    f"the container stopped as it started: {logs or exc}", type="ContainerExited"
                ) from exc
        await self._wait_port(instance)
        return instance

    async def _wait_port(self, instance: HttpInstance) -> None:
        """Poll until the container accepts on its port; it stopping or the start timeout
        is a SandboxError."""
        deadline = time.monotonic() + self.start_timeout
        loop = asyncio.get_running_loop()
        delay = 0.002
        while True:
            sock = _socket_in(instance._netns)
            try:
                await loop.sock_connect(sock, ("127.0.0.1", PORT))
                return
            except OSError:
                pass
            finally:
                sock.close()
            if not instance.alive:
                logs = await instance.logs()
                await instance.stop()
                raise SandboxError(
                    f"the container exited before it listened on port {PORT}: {logs}",
                    type="ContainerExited",
                    stderr=logs,
                )
            if time.monotonic() > deadline:
                await instance.stop()
                raise SandboxError(
                    f"the container did not listen on port {PORT} within {self.start_timeout:g} s",
                    type="TimedOut",
                )
            await asyncio.sleep(delay)  # a condition poll with backoff, not a fixed wait
            delay = min(delay * 2, 0.05)
