"""A container image function's CPU follows its memory as a sandboxed one's does: the
container runs below Pratai's group, which holds the weight and cap; without a group of
Pratai's, podman is given them. Real podman, an image built here from busybox-static."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pratai.core.provisioning import host_cpus, provision
from pratai.drivers.base import InstanceSpec
from pratai.drivers.containers import HttpInstance, _Container
from pratai.drivers.podman import PodmanDriver
from pratai.settings import Settings
from tests.helpers import cpu_limits
from tests.images.support import build_image


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    assert shutil.which("podman"), "podman is not installed: run `make install`"
    work = Path(tempfile.mkdtemp(prefix="pratai-image-cpu-"))
    try:
        archive, ref = build_image(work, "http")
        subprocess.run(["podman", "load", "--quiet", "-i", str(archive)], check=True)
        done = subprocess.run(
            ["podman", "image", "inspect", "--format", "{{.Id}}", ref],
            check=True,
            capture_output=True,
            text=True,
        )
        yield done.stdout.strip()
        subprocess.run(["podman", "rmi", "--force", ref], capture_output=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def driver(tmp_path: Path) -> PodmanDriver:
    driver = PodmanDriver(Settings(home=tmp_path / "home"))
    assert driver.cgroups.cpu, driver.cgroups.reason or driver.cgroups.cpu_reason
    return driver


def spec(memory_mb: int, image: str = "") -> InstanceSpec:
    return InstanceSpec(
        f"img-cpu:{memory_mb}", Path("/nonexistent"), None, "http", memory_mb,
        runtime="image", image=image,
    )  # fmt: skip


async def test_a_container_runs_below_the_group_with_its_weight_and_cap(
    driver: PodmanDriver, image: str
) -> None:
    instance = await driver.start(spec(1024, image))
    try:
        assert isinstance(instance, HttpInstance) and instance.cgroup is not None
        cpu_dir = instance.cgroup.cpu_dir
        assert cpu_dir is not None
        expected = provision(1024, host_cpus())
        assert cpu_limits(cpu_dir) == (expected.cpu_weight, expected.cpus_max)
        # the container's process is in a group below ours, in the hierarchy with the limits
        lines = Path(f"/proc/{instance.pid}/cgroup").read_text().splitlines()
        controllers = {line.split(":")[1]: line.split(":")[2] for line in lines}
        where = controllers["cpu"] if instance.cgroup.version == "v1" else controllers[""]
        assert where.startswith(f"/pratai/{cpu_dir.name}/"), where
    finally:
        await instance.stop()
    assert not cpu_dir.exists()


def test_without_a_group_of_ours_podman_gets_the_cpu_limits(driver: PodmanDriver) -> None:
    argv, _ = _Container(driver, spec(1024), None).run_argv("name", "65534:65534", "image-id")
    expected = provision(1024, host_cpus())
    assert argv[argv.index("--cpu-shares") + 1] == "8192"  # weight 800 on v1's scale
    assert argv[argv.index("--cpus") + 1] == f"{expected.cpus_max:g}"
