"""An instance's CPU follows its memory, in real sandboxes: its group holds the weight and cap
that `pratai.core.provisioning` computes; under contention CPU time divides in proportion to
memory; on a free CPU a small function still runs at full speed. Jobs get the same rule."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from pratai.core.provisioning import host_cpus, provision
from pratai.drivers.base import InstanceSpec
from pratai.drivers.cgroups import Cgroup
from pratai.drivers.commands import run_command
from pratai.drivers.instance import ProcessInstance
from pratai.drivers.process import ProcessDriver
from pratai.settings import Settings
from tests.helpers import cpu_limits, wait_for_async

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")

CLK_TCK = os.sysconf("SC_CLK_TCK")

# Busy-loops for `seconds` of wall time, on one CPU when asked (two instances pinned to the
# same CPU compete for it even on a machine with CPUs to spare).
BUSY = """
import os, time

def main(payload):
    if payload.get("cpu") is not None:
        os.sched_setaffinity(0, {payload["cpu"]})
    end = time.monotonic() + payload["seconds"]
    while time.monotonic() < end:
        pass
    return "done"
"""

Start = Callable[[int], Awaitable[ProcessInstance]]


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[ProcessDriver]:
    settings = Settings(home=tmp_path / "home")
    driver = ProcessDriver(settings)
    assert driver.cgroups.cpu, driver.cgroups.reason or driver.cgroups.cpu_reason
    yield driver
    if not settings.sandbox_dir.is_relative_to(settings.home):  # /var/tmp, as tmp_path is private
        shutil.rmtree(settings.sandbox_dir, ignore_errors=True)


@pytest_asyncio.fixture(loop_scope="function")
async def start(driver: ProcessDriver, code_root: Path) -> AsyncIterator[Start]:
    instances: list[ProcessInstance] = []
    code = code_root / "busy"
    code.mkdir(mode=0o755)
    (code / "main.py").write_text(textwrap.dedent(BUSY))
    (code / "main.py").chmod(0o644)

    async def go(memory_mb: int) -> ProcessInstance:
        spec = InstanceSpec(f"cpu-test:{memory_mb}", code, None, "main.main", memory_mb)
        instance = await driver.start(spec)
        instances.append(instance)
        return instance

    yield go
    for instance in instances:
        await instance.stop()


def group_of(instance: ProcessInstance) -> Cgroup:
    assert instance._cgroup is not None and instance._cgroup.cpu_dir is not None
    return instance._cgroup


def process_cpu_s(pid: int) -> float:
    """User + system CPU time of a running process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_s(group: Cgroup) -> float:
    """CPU time used by the group's processes: the group's own account where there is one
    (v2 cpu.stat; v1 cpuacct mounted with cpu), else the sum of its processes'."""
    stat = group.memory_dir / "cpu.stat"
    if group.version == "v2":
        for line in stat.read_text().splitlines():
            key, value = line.split()
            if key == "usage_usec":
                return int(value) / 1e6
    assert group.cpu_dir is not None
    usage = group.cpu_dir / "cpuacct.usage"
    if usage.exists():
        return int(usage.read_text()) / 1e9
    total = 0.0
    for pid in group.pids():
        with contextlib.suppress(OSError):
            total += process_cpu_s(pid)
    return total


async def busy(instance: ProcessInstance, seconds: float, cpu: int | None = None) -> None:
    payload = json.dumps({"seconds": seconds, "cpu": cpu}).encode()
    result = await instance.call(payload, "application/json", 30)
    assert result.status == "succeeded", result.error


async def test_an_instances_group_holds_the_weight_and_cap_of_its_memory(start: Start) -> None:
    for memory_mb in (128, 1024, 4096):
        instance = await start(memory_mb)
        cpu_dir = group_of(instance).cpu_dir
        assert cpu_dir is not None
        expected = provision(memory_mb, host_cpus())
        assert cpu_limits(cpu_dir) == (expected.cpu_weight, expected.cpus_max)
        # the sandbox's processes are in the group that holds the limits
        assert str(instance.pid) in (cpu_dir / "cgroup.procs").read_text().split()
    assert cpu_limits(cpu_dir)[1] == min(2.32, host_cpus())  # 4096 MB: 2.32 CPUs, or the machine's


async def test_under_contention_cpu_time_divides_in_proportion_to_memory(start: Start) -> None:
    small, large = await start(128), await start(1024)  # weights 100 and 800
    cpu = min(os.sched_getaffinity(0))
    before = cpu_s(group_of(small)), cpu_s(group_of(large))
    await asyncio.gather(busy(small, 1.5, cpu), busy(large, 1.5, cpu))
    used_small = cpu_s(group_of(small)) - before[0]
    used_large = cpu_s(group_of(large)) - before[1]
    assert used_large > 3 * used_small, (used_small, used_large)  # 8x in theory


async def test_a_128_mb_instance_gets_a_whole_free_cpu(start: Start) -> None:
    """Lambda's ratio would cap 128 MB at 7 % of a CPU; Pratai's floor is one CPU. The machine
    is shared, so a busy loop outside any group runs alongside: what it gets is what a process
    gets here right now, and the instance must get about as much (on an idle machine, ~1)."""
    instance = await start(128)
    group = group_of(instance)
    script = "import time\nend = time.monotonic() + 4\nwhile time.monotonic() < end: pass"
    control = subprocess.Popen([sys.executable, "-c", script])
    try:
        used, control_used, wall = cpu_s(group), process_cpu_s(control.pid), time.monotonic()
        await busy(instance, 1.0)
        wall = time.monotonic() - wall
        rate = (cpu_s(group) - used) / wall
        control_rate = (process_cpu_s(control.pid) - control_used) / wall
    finally:
        control.kill()
        control.wait()
    assert rate > 0.7 * min(1.0, control_rate), (rate, control_rate)


async def test_a_job_gets_the_cpu_of_its_memory(driver: ProcessDriver, code_root: Path) -> None:
    key = f"cpu-job-{code_root.name}"
    spec = InstanceSpec(key, code_root, None, "", 1024)
    job = asyncio.create_task(
        run_command(driver, spec, ["sleep", "30"], b"", 60, lambda _name, _chunk: None)
    )
    parent = driver.cgroups.root / ("pratai" if driver.cgroups.version == "v2" else "cpu/pratai")

    def running_group() -> Path | None:
        for group in parent.glob(f"{key}-*"):
            if (group / "cgroup.procs").read_text().split():
                return group
        return None

    try:
        group = await wait_for_async(running_group, timeout=15, what="the job's group")
        expected = provision(1024, host_cpus())
        assert cpu_limits(group) == (expected.cpu_weight, expected.cpus_max)
    finally:
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job
