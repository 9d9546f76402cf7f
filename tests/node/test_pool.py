"""VersionPool with the real ProcessDriver: warm reuse, the concurrency cap, replacing broken
instances, scale to zero. Each instance is told apart by a random token made at import time
(pids are equal across sandboxes: each has its own pid namespace)."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
from typing import Any

import pytest

from pratai.drivers.process import ProcessDriver
from pratai.errors import SandboxError
from pratai.node.budget import MemoryBudget
from pratai.node.pool import Outcome, VersionPool
from pratai.settings import Settings
from tests.helpers import code, wait_for_async
from tests.node.pools import MakePool, Recording, call

pytestmark = [
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed"),
    pytest.mark.asyncio(loop_scope="function"),
]

# Returns which instance ran the call, how many calls that instance served, and when it ran.
HANDLER = code("""
    import os
    import time

    TOKEN = os.urandom(8).hex()
    calls = 0

    def main(payload):
        global calls
        calls += 1
        started = time.time()
        action = payload.get("action") if isinstance(payload, dict) else None
        if action == "sleep":
            time.sleep(payload["seconds"])
        elif action == "hang":
            time.sleep(60)
        elif action == "exit":
            os._exit(3)
        return {"token": TOKEN, "calls": calls, "started": started, "ended": time.time()}
""")


@pytest.fixture
def driver(settings: Settings) -> Recording:
    return Recording(ProcessDriver(settings))


@pytest.fixture
def handler() -> str:
    return HANDLER


def answer(outcome: Outcome) -> dict[str, Any]:
    assert outcome.result.status == "succeeded", outcome.result.error
    assert outcome.result.result is not None
    value: dict[str, Any] = json.loads(outcome.result.result)
    return value


class PeakSize:
    """Samples `pool.size` while calls run."""

    def __init__(self, pool: VersionPool) -> None:
        self.pool = pool
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.pool.size)
            await asyncio.sleep(0.002)

    async def __aenter__(self) -> PeakSize:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self.peak = max(self.peak, self.pool.size)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def test_warm_instance_is_reused(make_pool: MakePool, driver: Recording) -> None:
    pool = await make_pool()
    first = await call(pool)
    second = await call(pool)
    a, b = answer(first), answer(second)
    assert a["token"] == b["token"]  # the same sandbox served both
    assert (a["calls"], b["calls"]) == (1, 2)  # imported once: module state survives
    assert first.cold_start is True and first.init_ms is not None and first.init_ms > 0
    assert second.cold_start is False and second.init_ms is None
    assert pool.size == 1 and pool.busy == 0
    assert len(driver.started) == 1


async def test_fresh_pool_starts_and_stops_an_instance_per_call(
    make_pool: MakePool, driver: Recording
) -> None:
    budget = MemoryBudget(1024)
    pool = await make_pool(budget, fresh=True)
    outcomes = [await call(pool) for _ in range(3)]
    answers = [answer(o) for o in outcomes]
    assert len({a["token"] for a in answers}) == 3  # a new sandbox each time
    assert [a["calls"] for a in answers] == [1, 1, 1]  # no module state carried over
    assert all(o.cold_start and o.init_ms is not None and o.init_ms > 0 for o in outcomes)
    # each is stopped right after its answer (in the background), its memory given back
    await wait_for_async(
        lambda: not any(inst.alive for inst in driver.started) and budget.used_mb == 0,
        timeout=5,
        what="fresh instances to stop",
    )
    assert pool.size == 0


async def test_fresh_pool_keeps_its_concurrency_cap(make_pool: MakePool, driver: Recording) -> None:
    pool = await make_pool(concurrency=2, fresh=True)
    async with PeakSize(pool) as size:
        outcomes = await asyncio.gather(
            *(call(pool, {"action": "sleep", "seconds": 0.1}) for _ in range(5))
        )
    assert len({answer(o)["token"] for o in outcomes}) == 5
    assert size.peak <= 2 and len(driver.started) == 5
    await pool.close()  # waits for the last stops
    assert not any(inst.alive for inst in driver.started)


async def test_fresh_instances_never_outnumber_the_concurrency(
    make_pool: MakePool, driver: Recording
) -> None:
    """An instance still stopping holds its call's slot: alive sandboxes stay within the cap."""
    pool = await make_pool(concurrency=1, fresh=True)
    for _ in range(4):
        await call(pool)
        assert sum(inst.alive for inst in driver.started) <= 1


async def test_concurrency_one_serialises_calls_on_one_instance(
    make_pool: MakePool, driver: Recording
) -> None:
    pool = await make_pool(concurrency=1)
    async with PeakSize(pool) as size:
        outcomes = await asyncio.gather(
            *(call(pool, {"action": "sleep", "seconds": 0.2}) for _ in range(3))
        )
    answers = [answer(o) for o in outcomes]  # all succeed: extra calls wait, never fail
    assert len({a["token"] for a in answers}) == 1
    assert sorted(a["calls"] for a in answers) == [1, 2, 3]
    assert [o.cold_start for o in outcomes].count(True) == 1
    assert size.peak == 1
    assert len(driver.started) == 1
    # one after another: no two handler runs overlap in time
    spans = sorted((a["started"], a["ended"]) for a in answers)
    assert all(prev[1] <= nxt[0] for prev, nxt in itertools.pairwise(spans))


async def test_pool_grows_up_to_its_concurrency(make_pool: MakePool, driver: Recording) -> None:
    pool = await make_pool(concurrency=3)
    async with PeakSize(pool) as size:
        outcomes = await asyncio.gather(
            *(call(pool, {"action": "sleep", "seconds": 0.3}) for _ in range(3))
        )
    tokens = {answer(o)["token"] for o in outcomes}
    assert len(tokens) == 3 and all(o.cold_start for o in outcomes)
    assert size.peak == 3 and pool.size == 3
    # a later call takes one of the warm instances instead of starting a fourth
    later = await call(pool)
    assert later.cold_start is False and answer(later)["token"] in tokens
    assert len(driver.started) == 3 and pool.size == 3


@pytest.mark.parametrize(
    ("action", "status", "error_type"),
    [("exit", "failed", "InstanceCrashed"), ("hang", "timed_out", "TimedOut")],
)
async def test_broken_instance_is_replaced_on_the_next_call(
    make_pool: MakePool, driver: Recording, action: str, status: str, error_type: str
) -> None:
    pool = await make_pool()
    before = answer(await call(pool))["token"]

    broken = await call(pool, {"action": action}, timeout_s=0.5)
    assert broken.result.status == status
    assert broken.result.error is not None and broken.result.error["type"] == error_type
    assert pool.size == 0  # the dead instance is not kept
    assert not driver.started[0].alive

    after = await call(pool)
    assert after.cold_start is True
    fresh = answer(after)
    assert fresh["token"] != before and fresh["calls"] == 1
    assert pool.size == 1 and len(driver.started) == 2


async def test_reap_stops_idle_instances(make_pool: MakePool, driver: Recording) -> None:
    pool = await make_pool()
    first = answer(await call(pool))
    await pool.reap(idle_timeout=60)  # not idle long enough: kept
    assert pool.size == 1 and driver.started[0].alive

    await pool.reap(idle_timeout=0)
    assert pool.size == 0
    assert not driver.started[0].alive

    again = await call(pool)  # the pool scales back up from zero
    assert again.cold_start is True and answer(again)["token"] != first["token"]
    assert pool.size == 1


async def test_close_stops_idle_instances_and_busy_ones_when_they_finish(
    make_pool: MakePool, driver: Recording
) -> None:
    pool = await make_pool(concurrency=2)
    await asyncio.gather(*(call(pool, {"action": "sleep", "seconds": 0.1}) for _ in range(2)))
    assert pool.size == 2 and len(driver.started) == 2

    slow = asyncio.create_task(call(pool, {"action": "sleep", "seconds": 0.3}))
    await wait_for_async(lambda: pool.busy == 1, timeout=10, interval=0.005, what="one call to run")
    await pool.close()
    assert pool.size == 1  # the idle one is stopped at once
    assert sum(inst.alive for inst in driver.started) == 1

    done = await slow  # the call in flight still completes...
    assert answer(done)["calls"] == 2
    assert pool.size == 0  # ...and its instance is stopped instead of kept warm
    assert not any(inst.alive for inst in driver.started)


async def test_a_failed_start_frees_its_slot(make_pool: MakePool, driver: Recording) -> None:
    pool = await make_pool(
        concurrency=1, source="import no_such_module\n\ndef main(p):\n    return p\n"
    )
    for _ in range(2):  # the second call is not stuck behind the first one's slot
        with pytest.raises(SandboxError) as failed:
            await asyncio.wait_for(call(pool), 10)
        assert failed.value.details["type"] == "ModuleNotFoundError"
        assert pool.size == 0 and pool.busy == 0
    assert driver.started == []
