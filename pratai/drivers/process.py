"""The default driver: a bubblewrap sandbox per instance, limited by a cgroup (or rlimits).

Each instance is `bwrap ... <interpreter> /runtime/<bootstrap> '<config>'` (sandbox.py builds
the bwrap part, runtimes.py the rest, per runtime), started as an unprivileged host uid (65534)
when the platform runs as root. The runtime files are copied into the sandbox folder first (see
runtime_files.py). The running sandbox and its protocol: instance.py.
"""

from __future__ import annotations

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
    launcher,
    preexec,
    write_secret_files,
)
from pratai.errors import SandboxError
from pratai.settings import Settings

INSTALL_HINT = (
    "bubblewrap (bwrap) is not installed: install it with `apt-get install bubblewrap`, "
    "`dnf install bubblewrap` or `apk add bubblewrap`"
)


class ProcessDriver:
    name = "process"

    def __init__(self, settings: Settings, start_timeout: float = 30.0) -> None:
        self.settings = settings
        self.start_timeout = start_timeout
        self.bwrap = shutil.which("bwrap")
        self.cgroups = CgroupManager()
        self.cpus = host_cpus()
        self.drop_privileges = os.geteuid() == 0
        self._runtimes: Path | None = None  # the copy of pratai/runtimes the sandboxes mount

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
    ) -> tuple[list[str], dict[str, str]]:
        """The argv and environment of a runtime instance: the sandbox, then the runtime's
        bootstrap speaking the frame protocol on `in_fd`/`out_fd`."""
        cmd, env = self.sandbox(spec, secrets_dir)
        config = bootstrap_config(
            spec,
            self.settings,
            (in_fd, out_fd),
            rlimit_memory=not cgroup,
            rlimit_pids=None if cgroup else self.settings.max_pids,
            fsize=FSIZE_LIMIT,
        )
        env_dir = spec.env_dir.resolve() if spec.env_dir is not None else None
        program = runtime_of(spec.runtime).program(self.settings, spec.memory_mb, env_dir, cgroup)
        return [*cmd, "--", *program, config], env

    async def start(self, spec: InstanceSpec) -> ProcessInstance:
        runtime = self._check(spec)  # before anything needs cleaning up
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
        self, spec: InstanceSpec, runtime: Runtime, cgroup: Cgroup | None
    ) -> tuple[ProcessInstance, int, int]:
        """The started sandbox, and the driver's ends of its request and response pipes."""
        request_r, request_w = os.pipe()
        response_r, response_w = os.pipe()
        if runtime.reopens_pipes and self.drop_privileges:
            for fd in (request_r, response_w):
                os.fchown(fd, NOBODY, NOBODY)
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - owned by the instance
        secrets_dir = write_secret_files(spec.files, self.drop_privileges)
        argv, env = self.command(spec, request_r, response_w, cgroup is not None, secrets_dir)
        started = time.perf_counter()
        try:
            proc = self._spawn(argv, env, stderr, (request_r, response_w), cgroup)
        except OSError as exc:
            for fd in (request_w, response_r):
                os.close(fd)
            stderr.close()
            if cgroup:
                cgroup.remove()
            if secrets_dir is not None:
                shutil.rmtree(secrets_dir, ignore_errors=True)
            raise SandboxError(f"could not start the sandbox: {exc}") from exc
        instance = ProcessInstance(
            spec,
            proc,
            cgroup=cgroup,
            stderr=stderr,
            secrets_dir=secrets_dir,
            heap_oom=runtime.heap_oom,
            started=started,
        )
        return instance, request_w, response_r

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
