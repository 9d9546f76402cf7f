"""Per-instance control groups: memory, process and CPU limits, peak memory, OOM detection,
kill.

Both layouts are supported:

- cgroup v2 (one tree, ``/sys/fs/cgroup/cgroup.controllers`` exists): ``memory.max``,
  ``memory.swap.max``, ``pids.max``, ``memory.peak``, ``memory.events``, ``cgroup.kill``;
  ``cpu.weight`` and ``cpu.max`` when the ``cpu`` controller can be enabled below the root.
- cgroup v1 (one mount per controller): ``memory/`` and ``pids/`` hierarchies,
  ``memory.limit_in_bytes`` (+ ``memory.memsw.limit_in_bytes`` when swap accounting is on),
  ``memory.max_usage_in_bytes``, ``memory.oom_control``, ``pids.max``; and, when the ``cpu/``
  hierarchy is mounted and writable, ``cpu.shares`` (1024 for v2's weight 100) and
  ``cpu.cfs_quota_us``/``cpu.cfs_period_us``.

The CPU values come from `pratai.core.provisioning`. CPU limits are optional: without the
controller an instance runs with memory and pids limits only, and `CgroupManager.cpu_reason`
says why (`pratai doctor` shows it).

Pratai's groups live under a ``pratai`` parent group. When neither layout is writable (not
root, read-only cgroupfs in a container), `CgroupManager.version` is None and the driver falls
back to rlimits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
import uuid
from pathlib import Path

from pratai.core.provisioning import WEIGHT_DEFAULT, Provisioning

ROOT = Path("/sys/fs/cgroup")
PARENT = "pratai"
CFS_PERIOD_US = 100_000
V1_SHARES_DEFAULT = 1024  # cpu.shares of v2's default weight, 100


def v1_shares(weight: int) -> int:
    """cgroup v1's cpu.shares for a v2 cpu.weight (both scales proportional, 100 = 1024)."""
    return max(2, weight * V1_SHARES_DEFAULT // WEIGHT_DEFAULT)


def cfs_quota_us(cpus: float) -> int:
    """The CPU time per `CFS_PERIOD_US` period that caps a group at `cpus` CPUs."""
    return max(1000, round(cpus * CFS_PERIOD_US))


def _write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _read_int(path: Path) -> int | None:
    text = _read(path).strip()
    return int(text) if text.isdigit() else None


def _keyed(path: Path, key: str) -> int:
    """A value from a flat keyed file such as memory.events or memory.oom_control."""
    for line in _read(path).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key and parts[1].isdigit():
            return int(parts[1])
    return 0


class Cgroup:
    """One instance's group (one directory in v2, one per controller in v1)."""

    def __init__(self, version: str, dirs: list[Path], cpu_dir: Path | None = None) -> None:
        self.version = version
        self.dirs = dirs  # v2: [group]; v1: [memory group, pids group(, cpu group)]
        self.cpu_dir = cpu_dir  # where the CPU limits are: None without the cpu controller
        self.procs_files = [str(d / "cgroup.procs") for d in dirs]
        self._peak_fd: int | None = None

    @property
    def memory_dir(self) -> Path:
        return self.dirs[0]

    def limit_cpu(self, cpu: Provisioning) -> None:
        """Writes the weight and the cap (nothing without the cpu controller)."""
        if self.cpu_dir is None:
            return
        quota = cfs_quota_us(cpu.cpus_max)
        if self.version == "v2":
            _write(self.cpu_dir / "cpu.weight", str(cpu.cpu_weight))
            _write(self.cpu_dir / "cpu.max", f"{quota} {CFS_PERIOD_US}")
        else:
            _write(self.cpu_dir / "cpu.shares", str(v1_shares(cpu.cpu_weight)))
            _write(self.cpu_dir / "cpu.cfs_period_us", str(CFS_PERIOD_US))
            _write(self.cpu_dir / "cpu.cfs_quota_us", str(quota))

    def set_limits(self, memory_bytes: int, pids_max: int, cpu: Provisioning | None) -> None:
        """Writes the limits; again when a spare sandbox is claimed by a function."""
        mem = self.memory_dir
        if self.version == "v2":
            _write(mem / "memory.max", str(memory_bytes))
            if (mem / "memory.swap.max").exists():
                _write(mem / "memory.swap.max", "0")
            _write(mem / "pids.max", str(pids_max))
        else:
            # v1 refuses memory.limit_in_bytes above memory.memsw.limit_in_bytes: raise the
            # memsw limit first when the limit grows, lower it last when it shrinks.
            limits = [mem / "memory.limit_in_bytes"]
            memsw = mem / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                current = _read_int(memsw)
                grows = current is None or memory_bytes > current
                limits = [memsw, *limits] if grows else [*limits, memsw]
            for path in limits:
                _write(path, str(memory_bytes))
            _write(self.dirs[1] / "pids.max", str(pids_max))
        if cpu is not None:
            self.limit_cpu(cpu)

    def attach(self, pid: int) -> None:
        for f in self.procs_files:
            _write(Path(f), str(pid))

    def pids(self) -> list[int]:
        found: set[int] = set()
        for f in self.procs_files:
            found.update(int(x) for x in _read(Path(f)).split() if x.isdigit())
        return sorted(found)

    # -- memory -----------------------------------------------------------------------------

    def reset_peak(self) -> None:
        """Start a new peak-memory window (one call). The file stays open: opening it again
        for every call cost a warm call about 30 µs."""
        fd = self._peak_file()
        if fd is None:
            return
        try:
            # v2 (kernel >= 6.12): a write resets the peak as seen through the same descriptor
            os.write(fd, b"0" if self.version == "v1" else b"reset\n")
        except OSError:
            if self.version == "v2":  # an older kernel: memory.peak cannot be reset
                os.close(fd)
                self._peak_fd = -1

    def peak_kb(self) -> int | None:
        fd = self._peak_file()
        if fd is None:
            value = None if self.version == "v1" else _read_int(self.memory_dir / "memory.peak")
        else:
            try:
                text = os.pread(fd, 64, 0).decode().strip()
                value = int(text) if text.isdigit() else None
            except OSError:
                value = None
        return None if value is None else value // 1024

    def _peak_file(self) -> int | None:
        """memory.max_usage_in_bytes (v1) or memory.peak (v2), opened once."""
        if self._peak_fd is None:
            name = "memory.max_usage_in_bytes" if self.version == "v1" else "memory.peak"
            try:
                self._peak_fd = os.open(self.memory_dir / name, os.O_RDWR)
            except OSError:
                self._peak_fd = -1
        return self._peak_fd if self._peak_fd >= 0 else None

    def oom_kills(self) -> int:
        """OOM kills inside this group since it was created."""
        if self.version == "v2":
            return _keyed(self.memory_dir / "memory.events", "oom_kill")
        oom = self.memory_dir / "memory.oom_control"
        if "oom_kill " in _read(oom):
            return _keyed(oom, "oom_kill")
        return _read_int(self.memory_dir / "memory.failcnt") or 0  # old kernels: limit hits

    # -- teardown ---------------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL every process in the group."""
        if self.version == "v2" and (self.memory_dir / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                _write(self.memory_dir / "cgroup.kill", "1")
                return
        for _ in range(20):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def remove(self) -> bool:
        """Remove the group's directories; False while processes are still exiting."""
        if self._peak_fd is not None and self._peak_fd >= 0:
            os.close(self._peak_fd)
        self._peak_fd = None
        done = True
        for d in self.dirs:
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                done = False
        return done

    async def discard(self) -> None:
        """Kill what is left and remove the group, waiting up to a second for it to empty."""
        for _ in range(100):
            if self.remove():
                break
            self.kill()
            await asyncio.sleep(0.01)


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


class CgroupManager:
    """Finds a writable cgroup layout and creates per-instance groups under ``pratai``."""

    def __init__(self, root: Path = ROOT, parent: str = PARENT) -> None:
        self.root = root
        self.parent = parent
        self.version: str | None = None
        self.reason = ""
        self.cpu = False  # whether groups get CPU limits
        self.cpu_reason = ""  # why not, when they do not
        try:
            self.version = self._setup()
        except OSError as exc:
            self.reason = f"cgroups not writable: {exc}"
        if self.version is not None:
            self.sweep()

    def sweep(self, min_age_s: float = 60.0) -> int:
        """Remove empty groups left by a platform that was killed; young ones may belong to a
        node that is starting an instance right now, so they stay. Returns how many went."""
        parents = (
            [self.root / self.parent]
            if self.version == "v2"
            else [self.root / c / self.parent for c in self._v1_controllers()]
        )
        removed = 0
        cutoff = time.time() - min_age_s
        for parent in parents:
            for group in parent.iterdir():
                try:
                    if group.is_dir() and group.stat().st_mtime < cutoff:
                        group.rmdir()  # fails (EBUSY) while it holds processes
                        removed += 1
                except OSError:
                    continue
        return removed

    @property
    def available(self) -> bool:
        return self.version is not None

    def _v1_controllers(self) -> list[str]:
        return ["memory", "pids", "cpu"] if self.cpu else ["memory", "pids"]

    def _setup(self) -> str | None:
        if (self.root / "cgroup.controllers").exists():
            controllers = _read(self.root / "cgroup.controllers").split()
            if not {"memory", "pids"} <= set(controllers):
                self.reason = "cgroup v2 without the memory and pids controllers"
                return None
            parent = self.root / self.parent
            parent.mkdir(exist_ok=True)
            for d in (self.root, parent):
                enabled = _read(d / "cgroup.subtree_control").split()
                missing = [c for c in ("memory", "pids") if c not in enabled]
                if missing:
                    _write(d / "cgroup.subtree_control", " ".join("+" + c for c in missing))
            self._setup_cpu_v2(controllers, parent)
            return "v2"
        mem, pids = self.root / "memory", self.root / "pids"
        if (mem / "cgroup.procs").exists() and (pids / "cgroup.procs").exists():
            for d in (mem, pids):
                (d / self.parent).mkdir(exist_ok=True)
                if not os.access(d / self.parent / "cgroup.procs", os.W_OK):
                    raise PermissionError(f"{d / self.parent} is not writable")
            self._setup_cpu_v1()
            return "v1"
        self.reason = "no cgroup memory/pids controllers mounted"
        return None

    def _setup_cpu_v2(self, controllers: list[str], parent: Path) -> None:
        """Enables the cpu controller for our groups, if the kernel lets us (it refuses while
        a realtime process runs outside the root group, for one)."""
        if "cpu" not in controllers:
            self.cpu_reason = "cgroup v2 without the cpu controller: no CPU limits"
            return
        try:
            for d in (self.root, parent):
                if "cpu" not in _read(d / "cgroup.subtree_control").split():
                    _write(d / "cgroup.subtree_control", "+cpu")
        except OSError as exc:
            self.cpu_reason = f"cannot enable the cgroup v2 cpu controller: {exc}; no CPU limits"
            return
        self.cpu = True

    def _setup_cpu_v1(self) -> None:
        cpu = self.root / "cpu"
        if not (cpu / "cpu.shares").exists() or not (cpu / "cpu.cfs_quota_us").exists():
            self.cpu_reason = "no cgroup v1 cpu controller with CFS quotas mounted: no CPU limits"
            return
        try:
            (cpu / self.parent).mkdir(exist_ok=True)
        except OSError as exc:
            self.cpu_reason = f"the cgroup v1 cpu hierarchy is not writable: {exc}; no CPU limits"
            return
        if not os.access(cpu / self.parent / "cgroup.procs", os.W_OK):
            self.cpu_reason = f"{cpu / self.parent} is not writable: no CPU limits"
            return
        self.cpu = True

    def create(
        self, key: str, memory_bytes: int, pids_max: int, cpu: Provisioning | None = None
    ) -> Cgroup | None:
        """A new group with the limits applied, or None when cgroups are unavailable. `cpu`
        applies where the cpu controller is (`self.cpu`); None leaves the CPU unlimited."""
        if self.version is None:
            return None
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", key)[:80] + "-" + uuid.uuid4().hex[:10]
        if self.version == "v2":
            top = self.root / self.parent / name
            group = Cgroup("v2", [top], top if self.cpu else None)
        else:
            dirs = [self.root / c / self.parent / name for c in self._v1_controllers()]
            group = Cgroup("v1", dirs, dirs[2] if self.cpu else None)
        try:
            for d in group.dirs:
                d.mkdir()
            group.set_limits(memory_bytes, pids_max, cpu)
        except OSError:
            group.remove()
            raise
        return group
