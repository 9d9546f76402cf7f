"""Timers: due ticks, cron in a time zone, and at most one firing per tick across schedulers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pratai.broker.embedded import EmbeddedBroker
from pratai.core.invocations import Invocations
from pratai.core.jobs import Jobs, JobSpec, Runtimes
from pratai.core.models import (
    BuildState,
    Function,
    FunctionVersion,
    Project,
    Trigger,
    TriggerKind,
    new_id,
    trigger_of,
)
from pratai.core.saved_jobs import SavedJobs
from pratai.core.triggers import last_due_tick, next_ticks
from pratai.scheduler import Scheduler
from pratai.settings import Settings
from pratai.store.sql import SqlStore


def test_frequency_ticks_count_from_creation() -> None:
    trigger = Trigger("t", "p", "f", TriggerKind.TIMER, frequency_s=60, created_at=1000.0)
    assert last_due_tick(trigger, 1059.0) is None
    assert last_due_tick(trigger, 1060.0) == 1060.0
    assert last_due_tick(trigger, 1000.0 + 60 * 7 + 5) == 1000.0 + 60 * 7  # missed: latest only


def test_cron_ticks_follow_the_time_zone() -> None:
    created = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
    trigger = Trigger(
        "t",
        "p",
        "f",
        TriggerKind.TIMER,
        cron="0 9 * * *",
        timezone="Asia/Tokyo",
        created_at=created,
    )
    at = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC).timestamp()
    tick = last_due_tick(trigger, at)
    assert tick is not None
    assert dt.datetime.fromtimestamp(tick, dt.UTC) == dt.datetime(2026, 3, 10, 0, 0, tzinfo=dt.UTC)


def test_the_next_ticks_of_a_timer_are_those_it_will_fire() -> None:
    every = Trigger("t", "p", "f", TriggerKind.TIMER, frequency_s=60, created_at=1000.0)
    assert next_ticks(every, 1000.0 + 60 * 7 + 5, 3) == [1480.0, 1540.0, 1600.0]
    assert next_ticks(every, 1060.0, 1) == [1120.0]  # a tick at `at` is not next
    created = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
    daily = Trigger(
        "t", "p", "f", TriggerKind.TIMER, cron="0 9 * * *", timezone="Asia/Tokyo",
        created_at=created,
    )  # fmt: skip
    at = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC).timestamp()
    assert [dt.datetime.fromtimestamp(t, dt.UTC).isoformat() for t in next_ticks(daily, at, 2)] == [
        "2026-03-11T00:00:00+00:00",
        "2026-03-12T00:00:00+00:00",
    ]
    assert next_ticks(Trigger("t", "p", "f", TriggerKind.WEBHOOK), at) == []


async def test_two_schedulers_fire_each_tick_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    settings = Settings(home=tmp_path)
    stores = [SqlStore(url), SqlStore(url)]
    broker = EmbeddedBroker(str(tmp_path / "broker.sqlite3"))
    for store in stores:
        await store.open()
    await broker.open()
    try:
        project = Project(id=new_id(), name="default")
        await stores[0].create_project(project)
        function = Function(id=new_id(), project_id=project.id, name="tick", active_version=1)
        version = FunctionVersion(
            function.id, 1, "0" * 64, "main.main", None, state=BuildState.READY
        )
        await stores[0].create_function(function, version)
        trigger = Trigger(
            new_id(), project.id, function.id, TriggerKind.TIMER, frequency_s=10, created_at=0.0
        )
        await stores[0].create_trigger(trigger)
        schedulers = [Scheduler(s, Invocations(settings, s, broker, None)) for s in stores]
        fired = 0
        for at in (25.0, 25.5, 31.0, 39.9, 40.0, 41.0, 95.0):  # due ticks: 20, 30, 40, 90
            for scheduler in schedulers:
                fired += await scheduler.tick(at)
        assert fired == 4
        invocations = await stores[0].list_invocations(project.id, function.id, limit=100)
        assert len(invocations) == 4
        # each says which timer fired it, so lists and metrics tell timer runs apart
        assert {(i.timer_id, trigger_of(i)) for i in invocations} == {(trigger.id, "timer")}
        assert await stores[1].last_tick(trigger.id) == 90.0
    finally:
        await broker.close()
        for store in stores:
            await store.close()


async def test_a_scheduled_job_runs_once_per_cron_tick_across_schedulers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    settings = Settings(home=tmp_path)
    stores = [SqlStore(url), SqlStore(url)]
    broker = EmbeddedBroker(str(tmp_path / "broker.sqlite3"))
    for store in stores:
        await store.open()
    await broker.open()
    try:
        project = Project(id=new_id(), name="default")
        await stores[0].create_project(project)
        runtimes = Runtimes(python="3.11")
        saved_jobs = [SavedJobs(s, Jobs(settings, s, broker, runtimes)) for s in stores]
        await saved_jobs[0].save(project, "hourly", JobSpec(command=["echo", "tick"]))
        saved = await saved_jobs[0].schedule(project, "hourly", "0 * * * *")
        start = saved.updated_at
        hour = 3600.0
        first = (start // hour + 1) * hour  # the first full hour after scheduling
        schedulers = [
            Scheduler(s, Invocations(settings, s, broker, None), j)
            for s, j in zip(stores, saved_jobs, strict=True)
        ]
        fired = 0
        for at in (start + 1, first + 1, first + 2, first + hour - 1, first + 5 * hour + 7):
            for scheduler in schedulers:
                fired += await scheduler.tick(at)
        assert fired == 2  # the first hour, then the missed ones coalesced into one run
        jobs = await stores[0].list_jobs(project.id)
        assert len(jobs) == 2
        assert {j.saved_name for j in jobs} == {"hourly"} and jobs[0].command == ["echo", "tick"]
        await saved_jobs[1].schedule(project, "hourly", None)
        assert await schedulers[0].tick(first + 9 * hour) == 0
    finally:
        await broker.close()
        for store in stores:
            await store.close()
