"""The default driver: a bubblewrap sandbox per instance, limited by a cgroup (or rlimits).

Each instance is `bwrap ... <interpreter> /runtime/<bootstrap> '<config>'` (sandbox.py builds
the bwrap part, runtimes.py the rest, per runtime), started as an unprivileged host uid (65534)
when the platform runs as root. The runtime files are copied into the sandbox folder first (see
runtime_files.py). The running sandbox and its protocol: instance.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from pratai.core.provisioning import Provisioning, host_cpus, provision
from pratai.drivers.base import InstanceSpec
from pratai.drivers.cgroups import Cgroup, CgroupManager
from pratai.drivers.frames import bootstrap_config
from pratai.drivers.instance import ProcessInstance
from pratai.drivers.runtime_files import install_runtimes
from pratai.drivers.runtimes import FSIZE_LIMIT, RUNTIMES, Runtime, runtime_of
from pratai.drivers.sandbox import (
    NAMESPACES,
    NOBODY,
    bwrap_argv,
    check_reachable,
    fill_secret_folder,
    launcher,
    preexec,
    secret_folder,
    write_secret_files,
)
from pratai.drivers.spares import (
    Shape,
    Spare,
    Spares,
    link_tree,
    package_tree,
    sweep_spare_folders,
)
from pratai.errors import SandboxError
from pratai.settings import Settings

INSTALL_HINT = (
    "bubblewrap (bwrap) is not installed: install it with `apt-get install bubblewrap`, "
    "`dnf install bubblewrap` or `apk add bubblewrap`"
)
log = logging.getLogger(__name__)
MIB = 1024 * 1024
REFILL_AFTER_S = 0.05
# A spare's memory limit until a function claims it: an idle runtime needs far less.
SPARE_MEMORY_MB = 64


class ProcessDriver:
    name = "process"

    def __init__(self, settings: Settings, start_timeout: float = 30.0, spares: int = 0) -> None:
        """`spares`: sandboxes kept started per shape for the next cold starts (spares.py);
        the processes pass PRATAI_SPARE_SANDBOXES, and 0 starts none."""
        self.settings = settings
        self.start_timeout = start_timeout
        self.bwrap = shutil.which("bwrap")
        self.cgroups = CgroupManager()
        self.cpus = host_cpus()
        self.drop_privileges = os.geteuid() == 0
        self._runtimes: Path | None = None  # the copy of pratai/runtimes the sandboxes mount
        self.spares = Spares(self._start_spare, per_shape=spares)
        self._swept = False  # the spares folder, of processes gone (a kill -9)

    def runtime_dir(self, runtime: str) -> Path:
        """The folder mounted at /runtime, copied into the sandbox folder on first use."""
        if self._runtimes is None or not self._runtimes.is_dir():
            self._runtimes = install_runtimes(self.settings.sandbox_dir)
        return self._runtimes / runtime_of(runtime).folder

    def provision(self, memory_mb: int) -> Provisioning:
        """The CPU weight and cap of an instance with `memory_mb` on this machine."""
        return provision(memory_mb, self.cpus)

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
            "cpu_limit": "cgroup (weight and cap follow memory)" if self.cgroups.cpu else None,
            "cpu_note": (self.cgroups.cpu_reason or None) if cg else None,
            "cpus": self.cpus,
            "network_isolation": bool(self.bwrap),
            "unprivileged_uid": NOBODY if self.drop_privileges else None,
            "spare_sandboxes": self.spares.stats(),
            **{rt.interpreter: rt.interpreter_path(self.settings) for rt in RUNTIMES.values()},
        }

    def sandbox(
        self, spec: InstanceSpec, secrets_dir: Path | None = None
    ) -> tuple[list[str], dict[str, str]]:
        """bwrap's argv (up to the program to run, without "--") and environment, shared by
        runtime instances and one-shot commands."""
        assert self.bwrap
        runtime_dir = self.runtime_dir(spec.runtime)
        return bwrap_argv(self.bwrap, spec, runtime_of(spec.runtime), runtime_dir, secrets_dir)

    def command(
        self,
        spec: InstanceSpec,
        in_fd: int,
        out_fd: int,
        cgroup: bool,
        secrets_dir: Path | None = None,
        spare: bool = False,
    ) -> tuple[list[str], dict[str, str]]:
        """The argv and environment of a runtime instance: the sandbox, then the runtime's
        bootstrap speaking the frame protocol on `in_fd`/`out_fd`. A spare's bootstrap learns
        the rest when it is claimed."""
        cmd, env = self.sandbox(spec, secrets_dir)
        if spare:
            config: dict[str, Any] = {"in_fd": in_fd, "out_fd": out_fd, "spare": True}
        else:
            config = self._config(spec, (in_fd, out_fd), cgroup)
        env_dir = spec.env_dir.resolve() if spec.env_dir is not None else None
        program = runtime_of(spec.runtime).program(self.settings, spec.memory_mb, env_dir, cgroup)
        return [*cmd, "--", *program, json.dumps(config)], env

    def _config(self, spec: InstanceSpec, pipes: tuple[int, int], cgroup: bool) -> dict[str, Any]:
        return bootstrap_config(
            spec,
            self.settings,
            pipes,
            rlimit_memory=not cgroup,
            rlimit_pids=None if cgroup else self.settings.max_pids,
            fsize=FSIZE_LIMIT,
        )

    async def start(self, spec: InstanceSpec) -> ProcessInstance:
        runtime = self._check(spec)  # before anything needs cleaning up
        if (
            not runtime.spares
            or self.spares.per_shape <= 0
            or any(name in spec.env for name in runtime.startup_env)
        ):
            return await self._start_new(spec, runtime)
        shape, code = Shape.of(spec, bool(runtime.heap_flag)), spec.code_dir.resolve()
        was_waiting = False
        try:
            entries = await asyncio.to_thread(package_tree, code)
            spare = None
            if entries is not None:
                spare, was_waiting = await self.spares.take_or_wait(shape)
            if spare is not None and entries is not None and await self._fill(spare, spec, entries):
                config = self._claim_config(spec, spare)
                try:
                    await spare.instance.claim(spec, config, self.start_timeout)
                except BaseException:  # e.g. a cold start cancelled: leave nothing running
                    await spare.instance.stop()
                    raise
                return spare.instance
            return await self._start_new(spec, runtime)
        finally:
            # For the next cold start. After a spare that was waiting, a little later, so that
            # starting one (~50 ms of CPU) does not slow down this call's answer; at once
            # when cold starts come faster than spares.
            self.spares.refill(shape, after_s=REFILL_AFTER_S if was_waiting else 0.0)

    async def close(self) -> None:
        """Stops the spares (instances stop with their pools)."""
        await self.spares.close()

    async def _start_new(self, spec: InstanceSpec, runtime: Runtime) -> ProcessInstance:
        cgroup = self.cgroups.create(
            spec.key,
            spec.memory_mb * 1024 * 1024,
            self.settings.max_pids,
            self.provision(spec.memory_mb),
        )
        instance, request_w, response_r = self._launch(spec, runtime, cgroup)
        try:
            await instance.connect(request_w, response_r)
            await instance.handshake(self.start_timeout)
        except BaseException:  # e.g. a cold start cancelled: leave no sandbox or cgroup behind
            await instance.stop()
            raise
        return instance

    def _check(self, spec: InstanceSpec) -> Runtime:
        """The spec's runtime, once its interpreter, bwrap and every mounted folder are there."""
        if not self.bwrap:
            raise SandboxError(INSTALL_HINT)
        runtime = runtime_of(spec.runtime)
        runtime.check(self.settings)
        runtime_dir = self.runtime_dir(spec.runtime)
        if self.drop_privileges:
            for path in (spec.code_dir, spec.env_dir, runtime_dir):
                if path is not None:
                    check_reachable(Path(path))
        return runtime

    def _launch(
        self,
        spec: InstanceSpec,
        runtime: Runtime,
        cgroup: Cgroup | None,
        spare: tuple[Path, Path] | None = None,
    ) -> tuple[ProcessInstance, int, int]:
        """The started sandbox, and the driver's ends of its request and response pipes.
        `spare`: its folder (holding the code folder) and its secrets folder."""
        request_r, request_w = os.pipe()
        response_r, response_w = os.pipe()
        if runtime.reopens_pipes and self.drop_privileges:
            for fd in (request_r, response_w):
                os.fchown(fd, NOBODY, NOBODY)
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - owned by the instance
        if spare is not None:
            secrets_dir: Path | None = spare[1]
            cleanup: tuple[Path, ...] = spare
        else:
            secrets_dir = write_secret_files(spec.files, self.drop_privileges)
            cleanup = (secrets_dir,) if secrets_dir is not None else ()
        argv, env = self.command(
            spec, request_r, response_w, cgroup is not None, secrets_dir, spare is not None
        )
        started = time.perf_counter()
        try:
            proc = self._spawn(argv, env, stderr, (request_r, response_w), cgroup)
        except OSError as exc:
            for fd in (request_w, response_r):
                os.close(fd)
            stderr.close()
            if cgroup:
                cgroup.remove()
            for folder in cleanup:
                shutil.rmtree(folder, ignore_errors=True)
            raise SandboxError(f"could not start the sandbox: {exc}") from exc
        instance = ProcessInstance(
            spec,
            proc,
            cgroup=cgroup,
            stderr=stderr,
            cleanup=cleanup,
            heap_oom=runtime.heap_oom,
            started=started,
        )
        return instance, request_w, response_r

    async def _start_spare(self, shape: Shape) -> Spare:
        runtime = runtime_of(shape.runtime)
        self.runtime_dir(shape.runtime)  # makes the sandbox folder, on the very first start
        root = self.settings.sandbox_dir / "spares"
        if not root.is_dir():
            root.mkdir()
            root.chmod(0o711)  # whatever the umask: the sandbox uid passes, lists nothing
        elif not self._swept:
            await asyncio.to_thread(sweep_spare_folders, root)
        self._swept = True
        folder = Path(tempfile.mkdtemp(prefix=f"spare-{os.getpid()}-", dir=root))
        folder.chmod(0o755)
        code = folder / "code"
        code.mkdir()
        code.chmod(0o755)
        secrets = secret_folder(self.drop_privileges)
        memory_mb = shape.heap_mb or SPARE_MEMORY_MB
        spec = InstanceSpec(
            key="spare",
            code_dir=code,
            env_dir=shape.env_dir,
            handler="",
            memory_mb=memory_mb,
            network=shape.network,
            runtime=shape.runtime,
        )
        try:
            cgroup = self.cgroups.create(
                "spare", memory_mb * MIB, self.settings.max_pids, self.provision(memory_mb)
            )
        except OSError:
            for made in (folder, secrets):
                shutil.rmtree(made, ignore_errors=True)
            raise
        # In a thread: the fork and exec would otherwise hold up the call that made room for it
        instance, request_w, response_r = await asyncio.to_thread(
            self._launch, spec, runtime, cgroup, (folder, secrets)
        )
        try:
            await instance.connect(request_w, response_r)
            await instance.wait_spare(self.start_timeout)
        except BaseException:
            await instance.stop()
            raise
        return Spare(instance, code, secrets, cgroup)

    async def _fill(
        self, spare: Spare, spec: InstanceSpec, entries: list[tuple[Path, bool]]
    ) -> bool:
        """Puts the function's code (`entries` of its folder), secret files and limits into a
        spare; False (the spare stopped) when that fails."""
        try:
            await asyncio.to_thread(link_tree, spec.code_dir.resolve(), entries, spare.code_dir)
            fill_secret_folder(spare.secrets_dir, spec.files, self.drop_privileges)
            if spare.cgroup is not None:
                spare.cgroup.set_limits(
                    spec.memory_mb * MIB, self.settings.max_pids, self.provision(spec.memory_mb)
                )
        except OSError:
            log.warning("could not hand a spare sandbox to %s", spec.key, exc_info=True)
            await spare.instance.stop()
            return False
        return True

    def _claim_config(self, spec: InstanceSpec, spare: Spare) -> dict[str, Any]:
        config = self._config(spec, (0, 0), spare.cgroup is not None)
        del config["in_fd"], config["out_fd"]  # the spare has its own
        return config

    def _spawn(
        self,
        argv: list[str],
        env: dict[str, str],
        stderr: IO[bytes],
        fds: tuple[int, int],
        cgroup: Cgroup | None,
    ) -> subprocess.Popen[bytes]:
        """Starts `argv` in the cgroup, as the unprivileged uid if need be, handing it `fds`
        (closed here once it has them)."""
        procs_files = cgroup.procs_files if cgroup else []
        prefix = launcher(procs_files, self.drop_privileges)
        hook = None if prefix is not None else preexec(procs_files, self.drop_privileges)
        try:
            return subprocess.Popen(
                [*(prefix or []), *argv],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                pass_fds=fds,
                start_new_session=True,
                preexec_fn=hook,
                cwd="/",
            )
        finally:
            for fd in fds:
                os.close(fd)
