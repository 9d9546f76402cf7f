"""The runtime programs a sandbox mounts at /runtime, copied into the sandbox folder.

When Pratai runs as root the sandbox runs as an unprivileged uid, which may not be able to
reach where Pratai itself is installed (a clone in /root, in a `mktemp -d` folder: both 0700).
The sandbox folder is chosen to be reachable (see settings.py), so the driver copies
pratai/runtimes/ there once, to `<sandbox dir>/runtimes/<content hash>/` (dirs 0755, files 0644),
and mounts that copy. The hash keeps the files of different Pratai versions sharing one sandbox
folder apart; writing under a temporary name and renaming makes concurrent first starts safe.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from pratai.errors import SandboxError

PACKAGED = Path(__file__).resolve().parent.parent / "runtimes"


def _files(source: Path) -> list[Path]:
    """The runtime files, relative to `source`, without compiled caches."""
    return sorted(
        path.relative_to(source)
        for path in source.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


def _digest(source: Path, files: list[Path]) -> str:
    digest = hashlib.sha256()
    for name in files:
        digest.update(f"{name}\0".encode())
        digest.update(hashlib.sha256((source / name).read_bytes()).digest())
    return digest.hexdigest()[:16]


def install_runtimes(sandbox_dir: Path, source: Path = PACKAGED) -> Path:
    """The folder holding a sandbox-readable copy of `source` (python/, node/, ...)."""
    try:
        return _install(sandbox_dir, source)
    except OSError as exc:
        raise SandboxError(
            f"cannot copy the runtime files into {sandbox_dir}: {exc}", type="SandboxSetupError"
        ) from exc


def _install(sandbox_dir: Path, source: Path) -> Path:
    files = _files(source)
    if not sandbox_dir.is_dir():
        sandbox_dir.mkdir(parents=True)
        sandbox_dir.chmod(0o755)

    def fill(folder: Path) -> None:
        for name in files:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, folder / name)

    return write_once(sandbox_dir / "runtimes" / _digest(source, files), fill)


def write_once(target: Path, fill: Callable[[Path], None]) -> Path:
    """`target`, a folder the sandbox uid may read (dirs 0755, files 0644), filled by `fill`
    unless it exists. Each first user fills a folder of its own and renames it into place, so
    concurrent first users are safe: one rename wins."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    target.parent.chmod(0o755)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}"
    try:
        tmp.mkdir()
        fill(tmp)
        for path in [tmp, *tmp.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        try:
            tmp.rename(target)
        except OSError:
            if not target.is_dir():  # not merely another process that was first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
