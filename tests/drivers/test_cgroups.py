"""Leftover groups from a killed platform are swept; live and young ones stay."""

from __future__ import annotations

import os
import subprocess
import time

from pratai.drivers.cgroups import CgroupManager


def _age(group_dirs, seconds: float) -> None:
    old = time.time() - seconds
    for d in group_dirs:
        os.utime(d, (old, old))


def test_sweep_removes_only_old_empty_groups() -> None:
    manager = CgroupManager()
    assert manager.version is not None, manager.reason
    stale = manager.create("stale", 64 * 1024 * 1024, 16)
    young = manager.create("young", 64 * 1024 * 1024, 16)
    busy = manager.create("busy", 64 * 1024 * 1024, 16)
    assert stale and young and busy
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        busy.attach(sleeper.pid)
        _age(stale.dirs, 3600)
        _age(busy.dirs, 3600)
        manager.sweep(min_age_s=60)
        assert not any(d.exists() for d in stale.dirs)
        assert all(d.exists() for d in young.dirs)
        assert all(d.exists() for d in busy.dirs)
    finally:
        sleeper.kill()
        sleeper.wait()
        busy.kill()
        for group in (young, busy):
            deadline = time.monotonic() + 5
            while not group.remove() and time.monotonic() < deadline:
                time.sleep(0.01)
