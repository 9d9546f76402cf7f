"""MemoryBudget with real VersionPools on FakeDriver (child processes): room within the budget,
idle instances stopped least recently used first across pools, calls waiting for busy ones,
and the bounded wait's error."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from pratai.drivers.fake import FakeDriver
from pratai.errors import SandboxError
from pratai.node.budget import MemoryBudget, NodeMemoryFull
from pratai.node.pool import Outcome, VersionPool
from pratai.settings import Settings
from tests.helpers import code, wait_for_async
from tests.node.pools import MakePool, Recording, call

pytestmark = pytest.mark.asyncio(loop_scope="function")

# Runs until the file the payload names exists, so a test holds an instance busy for as long
# as it needs; says which instance ran the call.
HANDLER = code("""
    import os
    import time

    TOKEN = os.urandom(8).hex()

    def main(payload):
        while payload.get("until") and not os.path.exists(payload["until"]):
            time.sleep(0.005)
        return TOKEN
""")


@pytest.fixture
def driver(settings: Settings) -> Recording:
    return Recording(FakeDriver(settings))


@pytest.fixture
def handler() -> str:
    return HANDLER


def token(outcome: Outcome) -> str:
    assert outcome.result.status == "succeeded", outcome.result.error
    assert outcome.result.result is not None
    value: str = json.loads(outcome.result.result)
    return value


async def busy_call(pool: VersionPool, until: Path) -> asyncio.Task[Outcome]:
    """A call that keeps its instance busy until the file `until` exists."""
    task = asyncio.create_task(call(pool, {"until": str(until)}, timeout_s=30))
    await wait_for_async(lambda: pool.size == 1 and pool.busy == 1, what="the busy call to run")
    return task


async def test_instances_within_the_budget_all_stay_warm(
    make_pool: MakePool, driver: Recording
) -> None:
    budget = MemoryBudget(256)
    first, second = await make_pool(budget), await make_pool(budget)
    await call(first)
    await call(second)
    assert budget.stats() == {
        "budget_mb": 256,
        "used_mb": 256,
        "peak_mb": 256,
        "instances": 2,
        "waiting": 0,
    }
    assert all(instance.alive for instance in driver.started)
    assert (await call(first)).cold_start is False


async def test_idle_instances_go_least_recently_used_first_across_pools(
    make_pool: MakePool, driver: Recording
) -> None:
    budget = MemoryBudget(256)
    a, b, c = [await make_pool(budget) for _ in range(3)]
    await call(a)
    await call(b)
    warm_a = token(await call(a))  # a is used last: b is now the least recently used
    started_b = driver.started[1]

    await call(c)  # no room for a third: b's idle instance is stopped
    assert not started_b.alive and b.size == 0
    assert (a.size, c.size) == (1, 1) and budget.used_mb == 256 and budget.instances == 2
    again = await call(a)
    assert again.cold_start is False and token(again) == warm_a

    await call(b)  # b comes back cold, in place of c (a was used after it)
    assert (a.size, b.size, c.size) == (1, 1, 0)
    assert budget.peak_mb == 256 and len(driver.started) == 4


async def test_a_call_waits_while_busy_instances_fill_the_budget(
    make_pool: MakePool, driver: Recording, tmp_path: Path
) -> None:
    budget = MemoryBudget(256)
    holder, waiter = await make_pool(budget, memory_mb=256), await make_pool(budget)
    release = tmp_path / "release"
    busy = await busy_call(holder, release)

    waiting = asyncio.create_task(call(waiter))
    await wait_for_async(lambda: budget.waiting == 1, what="the second call to wait for room")
    assert not waiting.done() and len(driver.started) == 1

    release.touch()  # the busy instance becomes idle: it is stopped to make room
    token(await busy)
    assert token(await waiting)
    assert (holder.size, waiter.size) == (0, 1)
    assert budget.used_mb == 128 and budget.peak_mb == 256 and budget.waiting == 0


async def test_a_call_waits_for_its_own_pools_busy_instance_and_reuses_it(
    make_pool: MakePool, driver: Recording, tmp_path: Path
) -> None:
    budget = MemoryBudget(128)
    pool = await make_pool(budget, concurrency=2)
    release = tmp_path / "release"
    busy = await busy_call(pool, release)
    second = asyncio.create_task(call(pool))
    await wait_for_async(lambda: budget.waiting == 1, what="the second call to wait for room")

    release.touch()
    first = token(await busy)
    reused = await second
    assert reused.cold_start is False and token(reused) == first
    assert len(driver.started) == 1 and budget.instances == 1


async def test_a_wait_that_cannot_end_in_time_fails_saying_the_memory_is_full(
    make_pool: MakePool, tmp_path: Path
) -> None:
    budget = MemoryBudget(256)
    holder, waiter = await make_pool(budget, memory_mb=256), await make_pool(budget)
    release = tmp_path / "release"
    busy = await busy_call(holder, release)

    with pytest.raises(NodeMemoryFull) as full:
        await call(waiter, timeout_s=0.3)
    assert full.value.details["type"] == "NodeMemoryFull"
    assert "memory is full" in full.value.message and "256 MB" in full.value.message
    assert (waiter.size, waiter.busy, budget.waiting, budget.used_mb) == (0, 0, 0, 256)
    release.touch()
    token(await busy)


async def test_an_instance_larger_than_the_budget_is_refused_at_once(make_pool: MakePool) -> None:
    budget = MemoryBudget(256)
    pool = await make_pool(budget, memory_mb=512)
    with pytest.raises(NodeMemoryFull, match="needs 512 MB of memory, more than the node's"):
        await asyncio.wait_for(call(pool, timeout_s=600), 5)
    assert budget.stats()["used_mb"] == 0


async def test_stopped_and_failed_instances_give_their_memory_back(
    make_pool: MakePool, driver: Recording
) -> None:
    budget = MemoryBudget(256)
    broken = await make_pool(budget, source="import no_such_module\n")
    with pytest.raises(SandboxError):
        await call(broken)
    assert (budget.used_mb, budget.instances) == (0, 0)

    pool = await make_pool(budget)
    await call(pool)
    await pool.reap(idle_timeout=0)
    assert (budget.used_mb, budget.instances) == (0, 0)

    await call(pool)
    stopped = asyncio.create_task(call(pool, {"until": "/nonexistent"}))
    await wait_for_async(lambda: pool.busy == 1, what="the call to run")
    stopped.cancel()  # a call cancelled mid-way stops its instance
    await asyncio.gather(stopped, return_exceptions=True)
    assert (budget.used_mb, budget.instances, pool.size) == (0, 0, 0)
    assert not any(instance.alive for instance in driver.started)


async def test_a_reservation_without_a_pool_waits_for_room_then_holds_it() -> None:
    budget = MemoryBudget(256)
    async with budget.held(256, timeout_s=5):
        with pytest.raises(NodeMemoryFull, match="memory is full"):
            async with budget.held(64, timeout_s=0.05):
                pass
        later = asyncio.create_task(budget.reserve(64, budget.deadline(30)))
        await wait_for_async(lambda: budget.waiting == 1, what="the reservation to wait")
    await later  # room came when the first one ended
    assert (budget.used_mb, budget.instances) == (64, 1)
