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
own ``--memory``/``--pids-limit`` apply and its OOMKilled flag is the evidence. CPU likewise:
the weight and cap of `pratai.core.provisioning` sit on our group (the container's group is
below it, so they bound it), or, without writable cgroups, go to podman as ``--cpu-shares``
and ``--cpus``.

Every container: read-only root (tmpfs /tmp, /run, /var/tmp, charged to the memory limit), all
capabilities dropped, no-new-privileges, the image's non-root user or else uid 65534, no host
mounts, no network unless asked (then podman's default bridge: the host's loopback is another
namespace and stays unreachable; services the host binds on all addresses are reachable through
the bridge gateway). ``--cgroup-manager cgroupfs`` works with and without systemd, on v1 and v2.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from pratai.core.ports import CONTRACTS, LoadedImage
from pratai.core.provisioning import host_cpus, provision
from pratai.drivers.base import InstanceSpec
from pratai.drivers.cgroups import Cgroup, CgroupManager
from pratai.drivers.containers import (
    PORT,
    HttpInstance,
    StdioInstance,
    socket_in,
)
from pratai.errors import InvalidInput, SandboxError
from pratai.settings import Settings

NOBODY = "65534:65534"
INSTALL_HINT = "podman is not installed: install it with `apt-get install podman runc`"


def podman_base() -> list[str] | None:
    """podman's global flags. runc rather than crun: crun fails on hybrid cgroup hosts (it
    cannot set RLIMIT_NOFILE there); cgroupfs works with and without systemd."""
    podman = shutil.which("podman")
    if podman is None:
        return None
    base = [podman, "--cgroup-manager", "cgroupfs"]
    runc = shutil.which("runc")
    return [*base, "--runtime", runc] if runc else base


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

    async def exists(self, image_id: str) -> bool:
        """Whether podman holds the image (`image_id` may be a unique prefix of its id)."""
        code, _, _ = await self._podman("image", "exists", image_id, timeout=60)
        return code == 0

    async def remove(self, image_id: str) -> None:
        """Best effort, never forced: an image a container still uses, or that other names
        still tag, stays."""
        await self._podman("rmi", image_id)


# --- the driver -----------------------------------------------------------------------------


class PodmanDriver:
    """Runs `spec.image` (an image id) with the contract named by `spec.handler`."""

    name = "podman"

    def __init__(self, settings: Settings, start_timeout: float = 30.0) -> None:
        self.settings = settings
        self.start_timeout = start_timeout
        self.base = podman_base()
        self.cgroups = CgroupManager()
        self.cpus = host_cpus()
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

    async def close(self) -> None:
        pass  # nothing runs but instances

    def features(self) -> dict[str, Any]:
        cpu_limit = "cgroup" if self.cgroups.cpu else None  # cpu_note says why not
        if self.cgroups.version is None:
            cpu_limit = "podman --cpu-shares --cpus"
        return {
            "driver": self.name,
            "podman": self.base[0] if self.base else None,
            "contracts": list(CONTRACTS),
            "cgroup": self.cgroups.version,
            "memory_limit": "cgroup" if self.cgroups.version else "podman --memory",
            "cpu_limit": cpu_limit,
            "cpu_note": (self.cgroups.cpu_reason or None) if self.cgroups.version else None,
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
        cgroup = self.cgroups.create(
            spec.key,
            spec.memory_mb * 1024 * 1024,
            self.settings.max_pids,
            provision(spec.memory_mb, self.cpus),
        )
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
            sock = socket_in(instance._netns)
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
