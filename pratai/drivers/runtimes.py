"""What the process driver knows of each runtime, as one table.

An instance of a runtime is its interpreter on the host running its bootstrap program (from
pratai/runtimes/<folder>/, mounted at /runtime), which speaks the frame protocol. The function's
environment (its installed requirements) is mounted read-only where the runtime looks for
packages. A runtime bounds its memory, files and processes either itself (the Python bootstrap
calls setrlimit, told so by its config) or through prlimit and an interpreter flag.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from pratai.core.runtimes import NODE, PYTHON
from pratai.errors import SandboxError
from pratai.settings import Settings

PRLIMIT = shutil.which("prlimit")
FSIZE_LIMIT = 64 * 1024 * 1024  # the largest file an instance may write
STARTUP_ENV = ("LD_LIBRARY_PATH", "LD_PRELOAD", "LANG", "LC_ALL", "LC_CTYPE")


@dataclass(frozen=True)
class Runtime:
    folder: str  # of pratai/runtimes, mounted at /runtime
    bootstrap: str  # the program in that folder the interpreter runs
    interpreter: str  # the Settings field naming the interpreter on the host
    flags: tuple[str, ...] = ()  # the interpreter's, before the bootstrap
    missing: str = ""  # set: the interpreter must exist, else this says so ({path})
    # The environment: a virtualenv runs the bootstrap with its own interpreter and these flags
    # (None: the environment is no virtualenv) ...
    venv_flags: tuple[str, ...] | None = None
    # ... or its `env_folder` is mounted at `env_mount` (None: at its own path).
    env_folder: str = ""
    env_mount: str | None = None
    heap_flag: str = ""  # caps the heap at 3/4 of the memory limit, as "<flag>=<MB>"
    heap_oom: str = ""  # what the interpreter prints when the heap cap is hit, before it aborts
    prlimit: bool = False  # the interpreter cannot set rlimits itself: prlimit sets them
    reopens_pipes: bool = False  # the bootstrap reopens its pipe fds, as the sandbox uid
    spares: bool = False  # the bootstrap can start as a spare (spares.py) and be claimed
    # environment variables read as a process starts (by the dynamic loader, libc's locale,
    # the interpreter): a function that sets one starts its own sandbox, since a spare learns
    # the environment after its start
    startup_env: tuple[str, ...] = STARTUP_ENV

    def interpreter_path(self, settings: Settings) -> str:
        return str(getattr(settings, self.interpreter))

    def check(self, settings: Settings) -> None:
        path = self.interpreter_path(settings)
        if self.missing and not Path(path).is_file():
            raise SandboxError(self.missing.format(path=path))

    def mounts(self, env_dir: Path | None) -> list[str]:
        """bwrap's arguments that mount the environment folder, if there is one."""
        if env_dir is None:
            return []
        source = env_dir / self.env_folder if self.env_folder else env_dir
        return ["--ro-bind", str(source), self.env_mount or str(source)]

    def env(self, env_dir: Path | None, path: str) -> dict[str, str]:
        """What the environment adds to the sandbox's environment variables (PATH is `path`)."""
        if env_dir is None or self.venv_flags is None:
            return {}
        return {"PATH": f"{env_dir}/bin:{path}", "VIRTUAL_ENV": str(env_dir)}

    def program(
        self, settings: Settings, memory_mb: int, env_dir: Path | None, cgroup: bool
    ) -> list[str]:
        """The argv that runs the bootstrap in the sandbox (its config goes last)."""
        interpreter, flags = self.interpreter_path(settings), list(self.flags)
        if env_dir is not None and self.venv_flags is not None:
            interpreter, flags = str(env_dir / "bin" / "python"), list(self.venv_flags)
        if self.heap_flag:
            flags.append(f"{self.heap_flag}={max(16, memory_mb * 3 // 4)}")
        limits: list[str] = []
        if self.prlimit and PRLIMIT:
            limits = [PRLIMIT, "--core=0", f"--fsize={FSIZE_LIMIT}"]
            if not cgroup:
                limits.append(f"--nproc={settings.max_pids}")
            limits.append("--")
        return [*limits, interpreter, *flags, f"/runtime/{self.bootstrap}"]


RUNTIMES = {
    PYTHON: Runtime(
        folder="python",
        bootstrap="bootstrap.py",
        interpreter="sandbox_python",
        # A venv needs `site` to find its packages; without one, -S keeps the host's system
        # site-packages out of the sandbox and starts faster.
        flags=("-I", "-S"),
        venv_flags=("-I",),  # mounted at its own path: the venv's bin/python finds pyvenv.cfg
        spares=True,
    ),
    NODE: Runtime(
        folder="node",
        bootstrap="bootstrap.js",
        interpreter="sandbox_node",
        missing="Node.js is not installed at {path}: install Node.js 20 "
        "(e.g. `apt-get install nodejs`) or set PRATAI_SANDBOX_NODE",
        # /node_modules is on the lookup path of both require() and import from /code
        env_folder="node_modules",
        env_mount="/node_modules",
        # Node has no setrlimit, so prlimit sets the limits the Python runtime sets itself. An
        # address-space limit is impossible (V8 reserves far more than it uses): without a
        # cgroup only the heap is bounded. The heap cap sits under the memory limit, so a
        # growing heap fails with V8's clear message rather than an OOM kill.
        heap_flag="--max-old-space-size",
        heap_oom="JavaScript heap out of memory",
        prlimit=True,
        reopens_pipes=True,  # close-on-exec, so the function's child processes lack them
        spares=True,
        startup_env=(*STARTUP_ENV, "NODE_OPTIONS"),
    ),
}


def runtime_of(name: str) -> Runtime:
    try:
        return RUNTIMES[name]
    except KeyError:
        raise SandboxError(f"the process driver has no runtime {name!r}") from None
