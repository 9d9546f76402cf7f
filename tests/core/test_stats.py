"""Usage statistics: buckets, error counts, percentiles and cold starts over the hour and day,
per project and per function, on the memory store and a clock of the test's own."""

from __future__ import annotations

import pytest

from pratai.core.models import Function, Invocation, Project, Status, new_id
from pratai.core.stats import DAY, HOUR, Stats, percentile, window
from pratai.errors import InvalidInput
from pratai.store.memory import MemoryStore
from tests.helpers import Clock

NOW = 1_700_000_000.0 + 30  # half a minute into a minute


async def _setup() -> tuple[MemoryStore, Project, Function, Function]:
    store = MemoryStore()
    await store.open()
    project = Project(id=new_id(), name="p")
    await store.create_project(project)
    return store, project, _fn(project, "f"), _fn(project, "g")


def _fn(project: Project, name: str) -> Function:
    return Function(id=new_id(), project_id=project.id, name=name)


async def _add(
    store: MemoryStore,
    function: Function,
    ago_s: float,
    status: Status = Status.SUCCEEDED,
    duration_ms: float | None = 10.0,
    cold: bool = False,
) -> Invocation:
    inv = Invocation(
        id=new_id(),
        project_id=function.project_id,
        function_id=function.id,
        function_name=function.name,
        version=1,
        mode="sync",
        status=status,
        duration_ms=duration_ms,
        cold_start=cold,
        created_at=NOW - ago_s,
    )
    await store.create_invocation(inv)
    return inv


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([], 0.5) is None


def test_windows_end_with_the_bucket_that_holds_now() -> None:
    starts = HOUR.starts(NOW)
    assert len(starts) == 60 and starts[-1] <= NOW < starts[-1] + 60
    assert starts[-1] - starts[0] == 59 * 60
    day = DAY.starts(NOW)
    assert len(day) == 48 and day[-1] <= NOW < day[-1] + 1800
    assert window("day") is DAY
    with pytest.raises(InvalidInput, match="unknown window 'week'"):
        window("week")


async def test_usage_counts_calls_errors_cold_starts_and_percentiles_per_bucket() -> None:
    store, project, f, g = await _setup()
    for k in range(20):  # this minute: 20 calls of f, 1..20 ms, 2 cold
        await _add(store, f, 1, duration_ms=float(k + 1), cold=k < 2)
    await _add(store, f, 1, Status.FAILED, duration_ms=None)
    await _add(store, f, 2, Status.TIMED_OUT, duration_ms=5000.0)
    await _add(store, f, 120, Status.QUEUED, duration_ms=None)  # two minutes ago
    await _add(store, g, 300)  # another function
    await _add(store, f, 2 * 3600)  # two hours ago: in the day only
    await _add(store, f, 2 * 86400)  # two days ago: in neither
    stats = Stats(store, Clock(NOW))

    usage = await stats.usage(project, [HOUR, DAY])
    hour, day = usage["hour"], usage["day"]
    now_bucket = hour.buckets[-1]
    assert (now_bucket.calls, now_bucket.errors, now_bucket.cold_starts) == (22, 2, 2)
    assert (now_bucket.p50_ms, now_bucket.p95_ms) == (11.0, 20.0)  # 21 durations: 1..20, 5000
    assert hour.buckets[-3].calls == 1 and hour.buckets[-3].p50_ms is None  # still queued
    assert hour.buckets[-6].calls == 1
    assert sum(b.calls for b in hour.buckets) == hour.total.calls == 24
    assert hour.total.errors == 2
    assert day.total.calls == 25 and len(day.buckets) == 48
    assert sum(b.calls for b in day.buckets) == 25

    only_g = await stats.usage(project, [HOUR], function=g)
    assert only_g["hour"].total.calls == 1 and only_g["hour"].total.p95_ms == 10.0

    empty = await stats.usage(Project(id=new_id(), name="new"), [HOUR])
    assert empty["hour"].total.calls == 0 and empty["hour"].total.p50_ms is None
    assert len(empty["hour"].buckets) == 60


async def test_activity_gives_each_function_a_sparkline_and_its_last_run() -> None:
    store, project, f, g = await _setup()
    idle = _fn(project, "idle")
    for ago in (30, 90, 95, 5 * 3600):
        await _add(store, f, ago)
    await _add(store, g, 3 * 86400)  # older than the day: found by a look further back
    activity = await Stats(store, Clock(NOW)).activity(project, [f, g, idle])
    assert activity.calls[f.id][-1] == 1 and activity.calls[f.id][-2] == 2
    assert len(activity.calls[f.id]) == 60 and sum(activity.calls[f.id]) == 3
    assert sum(activity.calls[g.id]) == 0 and sum(activity.calls[idle.id]) == 0
    assert activity.last_run == {f.id: NOW - 30, g.id: NOW - 3 * 86400}


async def test_in_flight_and_the_latest_failures() -> None:
    store, project, f, g = await _setup()
    failed = [await _add(store, f, 10 * k, Status.FAILED) for k in range(1, 13)]
    timed_out = await _add(store, g, 5, Status.TIMED_OUT)
    await _add(store, f, 1)
    for status in (Status.QUEUED, Status.QUEUED, Status.RUNNING):
        await _add(store, g, 1, status, duration_ms=None)
    other = Project(id=new_id(), name="other")
    await store.create_project(other)
    await _add(store, _fn(other, "f"), 1, Status.FAILED)
    await _add(store, _fn(other, "f"), 1, Status.QUEUED)
    stats = Stats(store, Clock(NOW))

    flight = await stats.in_flight(project)
    assert (flight.queued, flight.running) == (2, 1)
    latest = await stats.latest_failures(project)
    assert [i.id for i in latest] == [timed_out.id] + [i.id for i in failed[:9]]
    assert latest[0].function_name == "g" and latest[0].status == Status.TIMED_OUT
    assert len(await stats.latest_failures(project, limit=3)) == 3
