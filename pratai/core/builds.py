"""Dependency environments: one virtualenv per distinct requirements hash, built once, shared.

Layout under `root` (e.g. $PRATAI_HOME/sandbox/envs):

    <hash>/                  a finished env (contains `.pratai-ready`)
    .<hash>.tmp-<random>/    an env being built; renamed to <hash> only when complete
    .<hash>.lock             fcntl lock file guarding builds across processes

The venv is created from the sandbox interpreter (not this process's Python) with
`uv venv --relocatable`, packages installed with `uv pip install`; `python -m venv` + pip is the
fallback when uv is missing. Everything is made world-readable so the sandbox uid can read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import secrets
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

READY_MARKER = ".pratai-ready"
_HASH = re.compile(r"^[0-9a-f]{8,128}$")
_MAX_LOG = 256 * 1024


@dataclass
class BuildResult:
    ok: bool
    env_dir: Path | None
    log: str
    cached: bool


def find_uv() -> str | None:
    """The uv binary: on PATH, else the one the `uv` PyPI package ships."""
    found = shutil.which("uv")
    if found:
        return found
    try:
        import uv

        path = str(uv.find_uv_bin())
    except Exception:
        return None
    return path if os.access(path, os.X_OK) else None


class EnvironmentBuilder:
    def __init__(
        self,
        root: Path,
        python: str,
        *,
        uv: str | None = None,
        use_uv: bool = True,
        timeout: float = 600.0,
    ) -> None:
        self.root = Path(root)
        self.python = python
        self.uv = (uv or find_uv()) if use_uv else None
        self.timeout = timeout
        self.cache_dir = self.root.parent / "uv-cache"
        self._inflight: dict[str, asyncio.Future[BuildResult]] = {}
        self.builds = 0  # environments actually built by this object (tests, metrics)

    def env_dir(self, requirements_hash: str) -> Path:
        if not _HASH.match(requirements_hash):
            raise ValueError(f"invalid requirements hash {requirements_hash!r}")
        return self.root / requirements_hash

    def is_ready(self, requirements_hash: str) -> bool:
        return (self.env_dir(requirements_hash) / READY_MARKER).is_file()

    async def ensure(self, requirements: str, requirements_hash: str) -> BuildResult:
        """The env for these requirements, building it once if needed (never raises for a
        failed install: `ok` is False and `log` says why)."""
        env = self.env_dir(requirements_hash)
        if (env / READY_MARKER).is_file():
            return BuildResult(True, env, "", cached=True)
        fut = self._inflight.get(requirements_hash)
        if fut is None or fut.get_loop() is not asyncio.get_running_loop():
            fut = asyncio.ensure_future(self._build_locked(requirements, requirements_hash))
            self._inflight[requirements_hash] = fut

            def done(f: asyncio.Future[BuildResult], h: str = requirements_hash) -> None:
                if self._inflight.get(h) is f:
                    del self._inflight[h]

            fut.add_done_callback(done)
        return await asyncio.shield(fut)

    # ------------------------------------------------------------------ internals

    async def _build_locked(self, requirements: str, requirements_hash: str) -> BuildResult:
        env = self.env_dir(requirements_hash)
        if not self.root.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            self.root.chmod(0o755)
        lock_fd = os.open(self.root / f".{requirements_hash}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:  # poll instead of blocking a thread, so cancellation stays clean
                try:
                    fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.1)
            if (env / READY_MARKER).is_file():  # another process built it meanwhile
                return BuildResult(True, env, "", cached=True)
            for stale in self.root.glob(f".{requirements_hash}.tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)
            if env.exists():  # no marker: an unfinished or damaged env
                shutil.rmtree(env, ignore_errors=True)
            return await self._build(requirements, env)
        finally:
            os.close(lock_fd)  # releases the flock

    async def _build(self, requirements: str, env: Path) -> BuildResult:
        """Installs into a temporary folder, then renames it to `env` only once complete."""
        tmp = self.root / f".{env.name}.tmp-{secrets.token_hex(4)}"
        log: list[str] = []
        ok = False
        try:
            if not await self._install(requirements, tmp, env, log):
                return BuildResult(False, None, _tail(log), cached=False)
            (tmp / READY_MARKER).write_text(requirements)
            _make_readable(tmp)
            os.rename(tmp, env)
            ok = True
            self.builds += 1
            return BuildResult(True, env, _tail(log), cached=False)
        except OSError as e:
            log.append(f"build failed: {e}\n")
            return BuildResult(False, None, _tail(log), cached=False)
        finally:
            if not ok:
                shutil.rmtree(tmp, ignore_errors=True)

    async def _install(self, requirements: str, tmp: Path, env: Path, log: list[str]) -> bool:
        """A virtualenv with the requirements in `tmp`, relocated to `env`; False on failure."""
        deadline = time.monotonic() + self.timeout
        if self.uv:
            steps = [
                [self.uv, "venv", "--relocatable", "--python", self.python, str(tmp)],
                [self.uv, "pip", "install", "--python", str(tmp / "bin" / "python"),
                 "-r", str(tmp / "requirements.txt")],
            ]  # fmt: skip
        else:
            steps = [
                [self.python, "-m", "venv", str(tmp)],
                [str(tmp / "bin" / "python"), "-m", "pip", "install",
                 "--disable-pip-version-check", "--no-input",
                 "-r", str(tmp / "requirements.txt")],
            ]  # fmt: skip
        for i, cmd in enumerate(steps):
            if not await self._run(cmd, log, deadline):
                return False
            if i == 0:
                (tmp / "requirements.txt").write_text(requirements)
        _fix_shebangs(tmp, env)
        return True

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
        env.update(
            UV_CACHE_DIR=str(self.cache_dir),
            UV_LINK_MODE="copy",
            UV_PYTHON_DOWNLOADS="never",
            UV_NO_PROGRESS="1",
            NO_COLOR="1",
            PIP_DISABLE_PIP_VERSION_CHECK="1",
            PIP_NO_INPUT="1",
        )
        return env

    async def _run(self, cmd: list[str], log: list[str], deadline: float) -> bool:
        log.append("$ " + " ".join(cmd) + "\n")
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=self.root,
                env=self._env(),
                start_new_session=True,
            )
        except OSError as e:
            log.append(f"cannot run {cmd[0]}: {e}\n")
            return False
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.1)):
                out, _ = await proc.communicate()
        except TimeoutError:
            _kill(proc)
            await proc.wait()
            log.append(f"build timed out after {self.timeout:.0f} s\n")
            return False
        except BaseException:
            _kill(proc)
            raise
        log.append(out.decode(errors="replace"))
        if proc.returncode != 0:
            log.append(f"exit code {proc.returncode}\n")
            return False
        return True


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _tail(log: list[str]) -> str:
    text = "".join(log)
    return text if len(text) <= _MAX_LOG else "[...]\n" + text[-_MAX_LOG:]


def _fix_shebangs(tmp: Path, final: Path) -> None:
    """Scripts written with an absolute `#!<tmp>/bin/python` get the final path (pip fallback;
    uv's relocatable venvs need nothing)."""
    old, new = str(tmp).encode(), str(final).encode()
    bindir = tmp / "bin"
    if not bindir.is_dir():
        return
    for script in bindir.iterdir():
        if script.is_symlink() or not script.is_file():
            continue
        with script.open("rb") as f:
            head = f.read(2)
        if head != b"#!":
            continue
        # `#!<python>`, or for long paths `#!/bin/sh` + `'''exec' "<python>" "$0" "$@"`
        head_lines = script.read_bytes().split(b"\n")
        fixed = [line.replace(old, new) for line in head_lines[:3]]
        if fixed != head_lines[:3]:
            script.write_bytes(b"\n".join(fixed + head_lines[3:]))
    for activate in bindir.glob("activate*"):
        if activate.is_file() and not activate.is_symlink():
            data = activate.read_bytes()
            if old in data:
                activate.write_bytes(data.replace(old, new))


def _make_readable(top: Path) -> None:
    """Dirs 0755, files 0644 (0755 when executable); symlinks untouched."""
    top.chmod(0o755)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, 0o755)
        for name in filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if not os.path.islink(p):
                os.chmod(p, 0o755 if st.st_mode & 0o111 else 0o644)


__all__ = ["READY_MARKER", "BuildResult", "EnvironmentBuilder", "find_uv"]
