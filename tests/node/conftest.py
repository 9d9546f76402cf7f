"""A node's parts under test: its settings in pytest's tmp_path, and warm pools of handler code.
A module gives the `driver` its pools run on and the `handler` source they run by default."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from pratai.artifacts.filesystem import FilesystemArtifacts
from pratai.core.models import new_id
from pratai.core.workspace import Workspace
from pratai.drivers import InstanceSpec
from pratai.node.budget import MemoryBudget
from pratai.node.pool import VersionPool
from pratai.settings import Settings
from tests.helpers import make_zip
from tests.node.pools import MakePool, Recording


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    s = Settings.from_env({"PRATAI_HOME": str(tmp_path / "home")})
    yield s
    if not s.sandbox_dir.is_relative_to(s.home):  # root's fallback in /var/tmp
        shutil.rmtree(s.sandbox_dir, ignore_errors=True)


@pytest_asyncio.fixture(loop_scope="function")
async def make_pool(settings: Settings, driver: Recording, handler: str) -> AsyncIterator[MakePool]:
    """Makes a pool of `main.main` in `source` (default: the module's `handler`), with 128 MB
    instances in a budget of the node's own unless told otherwise; closes them all after."""
    workspace = Workspace(settings, FilesystemArtifacts(settings.artifacts_dir))
    pools: list[VersionPool] = []

    async def make(
        budget: MemoryBudget | None = None,
        *,
        concurrency: int = 1,
        memory_mb: int = 128,
        source: str = handler,
        fresh: bool = False,
    ) -> VersionPool:
        digest = workspace.artifacts.put(make_zip({"main.py": source}))
        spec = InstanceSpec(
            key=f"pooltest-{new_id()[:12]}",
            code_dir=await workspace.code_dir(digest),
            env_dir=None,
            handler="main.main",
            memory_mb=memory_mb,
            name="pooltest",
        )
        budget = MemoryBudget(settings.node_memory_mb) if budget is None else budget
        pool = VersionPool(driver, spec, concurrency, budget=budget, fresh=fresh)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        await pool.close()
    for instance in driver.started:
        await instance.stop()
