"""The bubblewrap sandbox both runtime instances and one-shot commands run in, and how it is
launched: into its cgroup, as an unprivileged host uid when the platform runs as root.

Every namespace is unshared (the network only shared when asked for), with a read-only /usr, a
few /etc files, the code at /code, the runtime at /runtime, the environment where its runtime
looks, secret files at /run/secrets and a private /tmp.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from pratai.drivers.base import InstanceSpec
from pratai.drivers.runtimes import Runtime
from pratai.errors import SandboxError

NOBODY = 65534
SANDBOX_UID = 1000
ETC_FILES = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "ssl", "ca-certificates",
    "resolv.conf", "hosts", "nsswitch.conf", "mime.types",
)  # fmt: skip
NAMESPACES = ["user", "mount", "pid", "ipc", "uts", "net", "cgroup"]
SETPRIV = shutil.which("setpriv")
# Joins the cgroup(s) named before "--", then execs the rest. A shell + setpriv in front of bwrap
# lets Popen use vfork: a Python preexec_fn forces a full fork of the (large) platform process,
# which cost ~10 ms of every cold start.
_JOIN_CGROUPS = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'


def bwrap_argv(
    bwrap: str,
    spec: InstanceSpec,
    runtime: Runtime,
    runtime_dir: Path,
    secrets_dir: Path | None = None,
) -> tuple[list[str], dict[str, str]]:
    """bwrap's argv (up to the program to run, without "--") and environment. The environment
    (which may hold secrets) is handed to bwrap itself rather than as --setenv arguments, which
    every host user could read in /proc/<pid>/cmdline; bwrap passes exactly that environment
    on, so the effect is the same as --clearenv plus --setenv."""
    env_dir = spec.env_dir.resolve() if spec.env_dir is not None else None
    cmd = [bwrap, "--unshare-all", *(["--share-net"] if spec.network else [])]
    cmd += ["--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr", *_host_files()]
    cmd += ["--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev"]
    cmd += ["--ro-bind", str(spec.code_dir.resolve()), "/code"]
    cmd += ["--ro-bind", str(runtime_dir), "/runtime", *runtime.mounts(env_dir)]
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
    env.update(runtime.env(env_dir, env["PATH"]))
    env.update(spec.env)
    return cmd, env


def _host_files() -> list[str]:
    """The host's /bin, /lib... (links into /usr, or folders) and the /etc files programs read."""
    args: list[str] = []
    for link in ("bin", "lib", "lib32", "lib64", "sbin", "libx32"):
        host = Path("/") / link
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), f"/{link}"]
        elif host.is_dir():
            args += ["--ro-bind", str(host), f"/{link}"]
    for name in ETC_FILES:
        if (Path("/etc") / name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    return args


def launcher(procs_files: list[str], drop: bool) -> list[str] | None:
    """argv prefix that joins the cgroups and drops privileges, or None to use a preexec_fn."""
    if drop and SETPRIV is None:
        return None
    prefix = ["/bin/sh", "-c", _JOIN_CGROUPS, "sh", *procs_files, "--"] if procs_files else []
    if drop:
        prefix += [str(SETPRIV), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
    return prefix


def preexec(procs_files: list[str], drop: bool) -> Callable[[], None]:
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


def check_reachable(path: Path) -> None:
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


def write_secret_files(files: dict[str, str], drop: bool) -> Path | None:
    """Secret files live in memory (/dev/shm), readable by the sandbox uid alone; the caller
    removes the folder when the instance stops."""
    if not files:
        return None
    folder = secret_folder(drop)
    fill_secret_folder(folder, files, drop)
    return folder


def secret_folder(drop: bool) -> Path:
    """An empty folder for secret files, in memory where there is /dev/shm, readable by the
    sandbox uid alone (a spare sandbox mounts it before its function's files are in it)."""
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    folder = Path(tempfile.mkdtemp(prefix="pratai-secrets-", dir=base))
    os.chmod(folder, 0o500)
    if drop:
        os.chown(folder, NOBODY, NOBODY)
    return folder


def fill_secret_folder(folder: Path, files: dict[str, str], drop: bool) -> None:
    if not files:
        return
    os.chmod(folder, 0o700)  # root writes anyway; the platform's own uid needs the bit
    for name, content in files.items():
        path = folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "w") as out:
            out.write(content)
        if drop:
            os.chown(path, NOBODY, NOBODY)
    os.chmod(folder, 0o500)
