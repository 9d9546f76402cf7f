"""Where connectors run: an api that only stores them, a scheduler that reconciles what runs with
what is stored, and the lease that picks the one scheduler that runs them (MemoryStore, a fake
connector kind; the real kinds are in tests/connectors, the real cluster in tests/cluster)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio

from pratai.broker.memory import MemoryBroker
from pratai.cluster.connector_lease import LEASE, ConnectorLease
from pratai.connectors.base import ConnectorStatus, Emit, Incoming
from pratai.core.connectors import Connectors
from pratai.core.events import Events
from pratai.core.invocations import Invocations
from pratai.core.models import ConnectorRecord, Project, new_id
from pratai.errors import InvalidInput
from pratai.settings import Settings
from pratai.store.memory import MemoryStore
from tests.helpers import Clock, wait_for_async

pytestmark = pytest.mark.asyncio(loop_scope="function")


class FakeConnector:
    """Forwards what the test puts in its inbox; "crash" makes run() raise."""

    kind = "fake"

    def __init__(self, url: str) -> None:
        self.url = url
        self.status = ConnectorStatus()
        self.inbox: asyncio.Queue[object] = asyncio.Queue()
        self.running = False

    async def run(self, emit: Emit) -> None:
        self.running = self.status.connected = True
        try:
            while True:
                item = await self.inbox.get()
                if item == "crash":
                    raise RuntimeError("crashed on purpose")
                await emit(Incoming(data=item, subject=self.url, type="fake.message"))
                self.status.forwarded += 1
        finally:
            self.running = self.status.connected = False


@dataclass
class Factory:
    made: list[FakeConnector] = field(default_factory=list)

    def __call__(self, kind: str, url: str, options: dict[str, str]) -> FakeConnector:
        if kind != "fake":
            raise InvalidInput(f"unknown connector kind {kind!r}")
        connector = FakeConnector(url)
        self.made.append(connector)
        return connector

    def live(self, url: str) -> list[FakeConnector]:
        return [c for c in self.made if c.url == url and c.running]

    async def started(self, url: str, count: int = 1) -> list[FakeConnector]:
        """The connectors of `url` running, once `count` of them are (a task starts soon)."""
        await wait_for_async(lambda: len(self.live(url)) >= count, what=f"{count} of {url}")
        found = self.live(url)
        assert len(found) == count, found
        return found


@dataclass
class Parts:
    store: MemoryStore
    events: Events
    project: Project
    factory: Factory

    def connectors(self, *, runs_here: bool = True) -> Connectors:
        return Connectors(self.store, self.events, self.factory, runs_here=runs_here)

    async def events_on(self, topic: str) -> list[object]:
        return [e.data for e in reversed(await self.store.list_events(self.project.id, topic))]


@pytest_asyncio.fixture(loop_scope="function")
async def parts(tmp_path: Path) -> AsyncIterator[Parts]:
    settings = Settings(home=tmp_path)
    store = MemoryStore()
    await store.open()
    invocations = Invocations(settings, store, MemoryBroker(), executor=None)
    project = Project(id=new_id(), name="p")
    await store.create_project(project)
    yield Parts(store, Events(settings, store, invocations), project, Factory())
    await store.close()


async def test_an_api_stores_a_connector_and_a_scheduler_runs_it_until_it_is_deleted(
    parts: Parts,
) -> None:
    api, scheduler = parts.connectors(runs_here=False), parts.connectors()
    record = await api.create(parts.project, "feed", "fake", "fake://a", "in", {})
    assert api.running() == [] and parts.factory.live("fake://a") == []  # checked, not run
    assert api.status(record) == ConnectorStatus()
    with pytest.raises(InvalidInput):
        await api.create(parts.project, "bad", "nope", "x://a", "in", {})

    await scheduler.reconcile()
    [connector] = await parts.factory.started("fake://a")
    assert scheduler.running() == [record] and scheduler.status(record).connected
    await connector.inbox.put({"n": 1})
    assert await wait_for_async(lambda: parts.events_on("in"), what="the event") == [b'{"n": 1}']
    await scheduler.reconcile()  # nothing changed: the same connector keeps running
    assert parts.factory.live("fake://a") == [connector]

    await api.delete(parts.project, "feed")
    await scheduler.reconcile()
    assert scheduler.running() == [] and not connector.running


async def test_reconcile_restarts_a_connector_whose_run_ended_and_reports_a_broken_one_once(
    parts: Parts, caplog: pytest.LogCaptureFixture
) -> None:
    scheduler = parts.connectors()
    await scheduler.create(parts.project, "feed", "fake", "fake://a", "in", {})
    [first] = await parts.factory.started("fake://a")
    broken = ConnectorRecord(new_id(), parts.project.id, "old", "gone", "x://", "in")
    await parts.store.create_connector(broken)  # stored by a version that had the kind

    await first.inbox.put("crash")
    await wait_for_async(lambda: not first.running, what="the connector to crash")
    with caplog.at_level(logging.INFO, "pratai.connectors"):
        await scheduler.reconcile()
        await scheduler.reconcile()
    [second] = await parts.factory.started("fake://a")
    assert second is not first
    assert [r.name for r in scheduler.running()] == ["feed"]
    assert [r.message for r in caplog.records].count("connector old cannot start") == 1
    await scheduler.close()
    assert not second.running


async def test_one_scheduler_holds_the_lease_and_another_takes_over_when_it_stops_renewing(
    parts: Parts,
) -> None:
    clock = Clock()
    api = parts.connectors(runs_here=False)
    await api.create(parts.project, "feed", "fake", "fake://a", "in", {})
    a = ConnectorLease(parts.store, parts.connectors(), "a", ttl_s=10, every_s=2, clock=clock)
    b = ConnectorLease(parts.store, parts.connectors(), "b", ttl_s=10, every_s=2, clock=clock)

    assert await a.step() and not await b.step()
    [first] = await parts.factory.started("fake://a")
    assert b.connectors.running() == []
    clock.advance(4)
    assert await a.step() and not await b.step()  # renewed until now + 10

    clock.advance(9.9)  # a stops renewing (dead, or paused)
    assert not await b.step()
    clock.advance(0.1)  # the lease expired
    assert await b.step()
    assert [r.name for r in b.connectors.running()] == ["feed"]
    await parts.factory.started("fake://a", 2)  # for now beside a's
    assert not await a.step()  # back, it finds the lease taken and stops its own
    assert a.connectors.running() == [] and not first.running
    await parts.factory.started("fake://a")

    await b.close()  # a clean stop frees the lease: a takes over at its next round
    assert parts.factory.live("fake://a") == []
    assert await a.step()
    await parts.factory.started("fake://a")
    await a.close()
    assert parts.factory.live("fake://a") == []
    assert await parts.store.take_lease(LEASE, "someone", clock(), 10)  # dropped


async def test_a_holder_that_cannot_reach_the_store_stops_its_connectors(parts: Parts) -> None:
    class Failing(MemoryStore):
        fail = False

        async def take_lease(self, name: str, holder: str, now: float, ttl_s: float) -> bool:
            if self.fail:
                raise ConnectionError("database unreachable")
            return await parts.store.take_lease(name, holder, now, ttl_s)

    store = Failing()
    lease = ConnectorLease(store, parts.connectors(), "a", clock=Clock())
    await parts.connectors(runs_here=False).create(parts.project, "f", "fake", "fake://a", "in", {})
    assert await lease.step()
    await parts.factory.started("fake://a")
    store.fail = True
    assert not await lease.step()
    assert parts.factory.live("fake://a") == []
