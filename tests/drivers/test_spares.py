"""Spare sandboxes (pratai/drivers/spares.py) in real bubblewrap sandboxes: a claimed spare is
as isolated as a sandbox started for its function, holds only that function's code, secrets,
environment and limits, and nothing of another function's. (Every driver contract test also
runs through claimed spares: tests/contracts/test_driver_contract.py.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from pratai.drivers.base import InstanceSpec
from pratai.drivers.instance import ProcessInstance
from pratai.drivers.process import ProcessDriver
from pratai.drivers.spares import MAX_LINKED_FILES, Shape
from pratai.settings import Settings
from tests.helpers import wait_for_async

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")

Start = Callable[..., Awaitable[ProcessInstance]]
SHAPE = Shape("python", None, False)

# What a function reports of its sandbox: the modules it has, the files it sees, its
# environment, and every "canary-<32 hex>" in its own memory.
REPORT = """
import os, re, sys

def scan_memory():
    pattern = re.compile(b"canary" + b"-[0-9a-f]{32}")
    found = set()
    with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            start, end = (int(x, 16) for x in span.split("-"))
            if "r" not in perms or end - start > 1 << 28:
                continue
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue
            found.update(m.decode() for m in pattern.findall(data))
    return sorted(found)

def main(payload):
    return {
        "modules": sorted(sys.modules),
        "code": sorted(os.listdir("/code")),
        "tmp": sorted(os.listdir("/tmp")),
        "secrets": sorted(os.listdir("/run/secrets")),
        "env": dict(os.environ),
        "memory": scan_memory(),
        "processes": sorted(p for p in os.listdir("/proc") if p.isdigit()),
    }
"""


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    s = Settings(home=tmp_path / "home", max_result_bytes=1_000_000)
    yield s
    if not s.sandbox_dir.is_relative_to(s.home):  # /var/tmp, as tmp_path is private
        shutil.rmtree(s.sandbox_dir, ignore_errors=True)


@pytest_asyncio.fixture(loop_scope="function")
async def driver(settings: Settings) -> AsyncIterator[ProcessDriver]:
    made = ProcessDriver(settings, spares=1)
    yield made
    await made.close()


async def spare_waiting(driver: ProcessDriver) -> None:
    driver.spares.refill(SHAPE)
    await wait_for_async(lambda: driver.spares.stats()["waiting"], what="a spare sandbox")


@pytest_asyncio.fixture(loop_scope="function")
async def start(driver: ProcessDriver, code_root: Path) -> AsyncIterator[Start]:
    """Starts an instance of `package`; with `spare`, from a spare that waits for it."""
    instances: list[ProcessInstance] = []
    folders = (code_root / f"fn{n}" for n in range(1000))

    async def go(
        package: dict[str, str], memory_mb: int = 128, spare: bool = True, **kw: Any
    ) -> ProcessInstance:
        code = next(folders)
        code.mkdir(mode=0o755)
        for name, text in package.items():
            (code / name).write_text(textwrap.dedent(text))
            (code / name).chmod(0o644)
        if spare:
            await spare_waiting(driver)
        claimed = driver.spares.stats()["claimed"]
        spec = InstanceSpec(f"test:{code.name}", code, None, "main.main", memory_mb, **kw)
        instance = await driver.start(spec)
        instances.append(instance)
        assert driver.spares.stats()["claimed"] == claimed + (1 if spare else 0)
        return instance

    yield go
    for instance in instances:
        await instance.stop()


async def call(instance: ProcessInstance, payload: object = None) -> Any:
    res = await instance.call(json.dumps(payload).encode(), "application/json", 10)
    assert res.status == "succeeded" and res.result is not None, res.error
    return json.loads(res.result)


async def test_a_claimed_spare_holds_its_function_and_nothing_of_another(start: Start) -> None:
    """Two functions, each in a spare: each sees its own code, environment variables, secret
    files and memory, and nothing of the other's: not its module, its /tmp file, its secret
    (in the environment, a file, or anywhere in memory), nor its processes."""
    canary = {name: f"canary-{uuid.uuid4().hex}" for name in ("a", "b")}
    instances = {}
    for name in ("a", "b"):
        instances[name] = await start(
            {
                "main.py": f"import only_{name}\n" + REPORT,
                f"only_{name}.py": f"open('/tmp/left-by-{name}', 'w').write('x')\n",
            },
            env={"TOKEN": canary[name]},
            files={f"key-{name}": canary[name]},
        )
    seen = {name: await call(instance) for name, instance in instances.items()}
    for me, other in (("a", "b"), ("b", "a")):
        mine = seen[me]
        assert mine["code"] == sorted(["main.py", f"only_{me}.py"])
        assert f"only_{me}" in mine["modules"] and f"only_{other}" not in mine["modules"]
        assert set(mine["tmp"]) - {".pratai-stdout", ".pratai-stderr"} == {f"left-by-{me}"}
        assert mine["secrets"] == [f"key-{me}"]
        assert mine["env"]["TOKEN"] == canary[me]
        assert canary[me] in mine["memory"]  # the scan finds what is there ...
        assert canary[other] not in mine["memory"]  # ... and the other's is not
        assert canary[other] not in json.dumps(mine["env"])
        assert len(mine["processes"]) <= 2  # its own pid namespace: init and itself


async def test_a_spare_takes_the_memory_limit_of_its_function(start: Start) -> None:
    """A spare waits under a small limit of its own; once claimed, the function's limit
    holds, higher or lower."""
    grow = "def main(p):\n    data = bytearray(p << 20)\n    return len(data) >> 20\n"
    roomy = await start({"main.py": grow}, memory_mb=512)
    assert await call(roomy, 300) == 300
    tight = await start({"main.py": grow}, memory_mb=48)
    res = await tight.call(b"200", "application/json", 10)
    assert res.status == "failed" and res.error is not None
    assert res.error["type"] == "MemoryLimitExceeded", res.error


async def test_a_package_too_large_to_link_starts_its_own_sandbox(
    start: Start, driver: ProcessDriver
) -> None:
    """A package of many files is mounted as it is, as without spares; the spare still waits
    for the next function."""
    await spare_waiting(driver)
    files = {f"data{i}.txt": "x" for i in range(MAX_LINKED_FILES + 1)}
    files["main.py"] = "import os\ndef main(p):\n    return len(os.listdir('/code'))\n"
    instance = await start(files, spare=False)
    assert await call(instance) == MAX_LINKED_FILES + 2
    assert driver.spares.stats()["waiting"] == 1


async def test_closing_the_driver_stops_its_spares(driver: ProcessDriver) -> None:
    await spare_waiting(driver)
    [spare] = driver.spares.waiting(SHAPE)
    assert spare.instance.alive
    folders = [spare.code_dir.parent, spare.secrets_dir]
    assert all(folder.exists() for folder in folders)
    await driver.close()
    assert not spare.instance.alive
    assert not any(folder.exists() for folder in folders)


async def test_folders_of_spares_whose_process_is_gone_are_removed(
    driver: ProcessDriver, settings: Settings
) -> None:
    """A platform killed with kill -9 leaves its spares' folders (their code links) behind:
    the next start of a spare removes those of processes that are gone, and no other's."""
    await spare_waiting(driver)  # makes the spares folder
    root = settings.sandbox_dir / "spares"
    gone = subprocess.Popen(["/bin/true"])
    gone.wait()  # its pid is free now
    dead = root / f"spare-{gone.pid}-abc"
    dead.mkdir()
    (dead / "left").write_text("x")
    live = root / f"spare-{os.getpid()}-def"
    live.mkdir()
    fresh = ProcessDriver(settings, spares=1)
    try:
        await spare_waiting(fresh)
    finally:
        await fresh.close()
    assert not dead.exists() and live.exists()


async def test_a_function_setting_what_a_process_reads_at_start_starts_its_own(
    start: Start, driver: ProcessDriver
) -> None:
    """The dynamic loader reads LD_LIBRARY_PATH as a process starts, before a spare learns its
    environment: such a function starts its own sandbox, the spare waits for another."""
    await spare_waiting(driver)
    source = "import os\ndef main(p):\n    return os.environ['LD_LIBRARY_PATH']\n"
    instance = await start({"main.py": source}, spare=False, env={"LD_LIBRARY_PATH": "/code"})
    assert await call(instance) == "/code"
    assert driver.spares.stats()["waiting"] == 1


async def test_one_spare_waits_after_a_first_cold_start(
    start: Start, driver: ProcessDriver
) -> None:
    """The first cold start of a shape starts its own sandbox, then one spare (not two: that
    extra one is for cold starts coming faster than spares)."""
    instance = await start({"main.py": "def main(p):\n    return 1\n"}, spare=False)
    assert await call(instance) == 1
    await wait_for_async(lambda: driver.spares.stats()["started"] == 1, what="a spare")
    assert driver.spares.stats()["waiting"] == 1
    assert driver.spares.stats()["starting"] == 0
