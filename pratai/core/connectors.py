"""Connectors: configured per project, run by the platform, publishing what they receive.

The concrete kinds live in `pratai.connectors`; this service only knows the `Connector` contract
and a factory, so adding a kind never edits the core.

`pratai serve` runs every connector in its one process (`start_all`, then each as it is created).
In a cluster the apis only store them (`runs_here=False`), and the one scheduler that holds the
connectors lease runs them, calling `reconcile` every few seconds to follow what any api stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from pratai.connectors.base import Connector, ConnectorStatus, Incoming
from pratai.core.events import Events, check_topic
from pratai.core.models import ConnectorRecord, Event, Project, check_name, new_id
from pratai.core.ports import ConnectorStore, ProjectStore
from pratai.errors import Conflict, NotFound

log = logging.getLogger("pratai.connectors")

Factory = Callable[[str, str, dict[str, str]], Connector]
StatusSource = Callable[[list[str]], Awaitable[dict[str, ConnectorStatus]]]
"""The statuses of connectors (by id) that run in another process; the unknown ones left out."""


@dataclass
class Running:
    record: ConnectorRecord
    connector: Connector
    task: asyncio.Task[None]


def _encode(data: object) -> tuple[bytes, str]:
    if isinstance(data, bytes):
        return data, "application/octet-stream"
    if isinstance(data, str):
        return data.encode(), "text/plain"
    return json.dumps(data).encode(), "application/json"


class _Store(ConnectorStore, ProjectStore, Protocol):
    """Connectors, and the projects whose topics they publish to."""


class Connectors:
    def __init__(
        self,
        store: _Store,
        events: Events,
        factory: Factory,
        *,
        runs_here: bool = True,
        elsewhere: StatusSource | None = None,
    ) -> None:
        self.store = store
        self.events = events
        self.factory = factory
        self.runs_here = runs_here  # False: another process runs them (a cluster's scheduler)
        self.elsewhere = elsewhere  # ... which tells their statuses
        self.emitted_listeners: list[Callable[[ConnectorRecord], Awaitable[None]]] = []  # metrics
        self._running: dict[str, Running] = {}
        self._broken: dict[str, ConnectorRecord] = {}  # could not be made; logged once
        self._lock = asyncio.Lock()  # a create, delete or reconcile at a time

    async def create(
        self, project: Project, name: str, kind: str, url: str, topic: str, options: dict[str, str]
    ) -> ConnectorRecord:
        check_name(name, "connector")
        check_topic(topic)
        connector = self.factory(kind, url, options)  # validates kind, URL and options
        record = ConnectorRecord(new_id(), project.id, name, kind, url, topic, options)
        async with self._lock:
            try:
                await self.store.create_connector(record)
            except Conflict:
                raise Conflict(f"connector {name!r} already exists", connector=name) from None
            if self.runs_here:
                self._start(record, connector)
        return record

    async def all(self, project: Project) -> list[ConnectorRecord]:
        return await self.store.list_connectors(project.id)

    async def get(self, project: Project, name: str) -> ConnectorRecord:
        for record in await self.store.list_connectors(project.id):
            if record.name == name:
                return record
        raise NotFound(f"connector {name!r} not found", connector=name)

    def status(self, record: ConnectorRecord) -> ConnectorStatus:
        """Its status when it runs in this process; otherwise not connected, nothing
        forwarded."""
        running = self._running.get(record.id)
        return running.connector.status if running else ConnectorStatus()

    async def statuses(self, records: list[ConnectorRecord]) -> dict[str, ConnectorStatus]:
        """Each one's status by id: from this process when they run here, else from where
        they run (`elsewhere`, a cluster's scheduler), when it answers."""
        if self.runs_here or self.elsewhere is None or not records:
            return {record.id: self.status(record) for record in records}
        found = await self.elsewhere([record.id for record in records])
        return {record.id: found.get(record.id, ConnectorStatus()) for record in records}

    async def delete(self, project: Project, name: str) -> None:
        record = await self.get(project, name)
        async with self._lock:
            await self.store.delete_connector(record.id)
            await self._stop(record.id)

    async def start_all(self) -> None:
        """Run every configured connector (at platform start)."""
        for record in await self.store.list_connectors():
            self._make_and_start(record)

    async def reconcile(self) -> None:
        """Make what runs here match the store: start each stored connector that is not
        running (or whose task ended), stop each running one no longer stored or whose record
        changed."""
        async with self._lock:
            stored = {record.id: record for record in await self.store.list_connectors()}
            for connector_id, running in list(self._running.items()):
                if running.task.done():  # run() never returns: it raised
                    log.warning("connector %s ended; starting it again", running.record.name)
                if stored.get(connector_id) != running.record or running.task.done():
                    await self._stop(connector_id)
            for connector_id in list(self._broken):
                if stored.get(connector_id) != self._broken[connector_id]:
                    del self._broken[connector_id]
            for connector_id, record in stored.items():
                if connector_id not in self._running and connector_id not in self._broken:
                    self._make_and_start(record)

    def running(self) -> list[ConnectorRecord]:
        """The connectors that run in this process."""
        return [running.record for running in self._running.values()]

    def here(self) -> list[tuple[ConnectorRecord, ConnectorStatus]]:
        """Those this process runs or failed to make (never connected), with their statuses
        (metrics: which are up)."""
        found = [(running.record, running.connector.status) for running in self._running.values()]
        return found + [(record, ConnectorStatus()) for record in self._broken.values()]

    def _make_and_start(self, record: ConnectorRecord) -> None:
        try:
            connector = self.factory(record.kind, record.url, record.options)
        except Exception:
            log.exception("connector %s cannot start", record.name)
            self._broken[record.id] = record
            return
        log.info("connector %s (%s) starts", record.name, record.kind)
        self._start(record, connector)

    def _start(self, record: ConnectorRecord, connector: Connector) -> None:
        async def emit(incoming: Incoming) -> None:
            project = await self.store.get_project(record.project_id)
            if project is None:
                return
            data, content_type = _encode(incoming.data)
            await self.events.publish(
                project,
                Event(
                    project_id=project.id,
                    topic=record.topic,
                    id=incoming.id or uuid.uuid4().hex,
                    source=f"/pratai/connectors/{record.name}",
                    type=incoming.type,
                    subject=incoming.subject,
                    data=data,
                    datacontenttype=content_type,
                    extensions=dict(incoming.extensions),
                ),
            )
            for listener in self.emitted_listeners:
                await listener(record)

        task = asyncio.create_task(connector.run(emit), name=f"connector-{record.name}")
        self._running[record.id] = Running(record, connector, task)

    async def _stop(self, connector_id: str) -> None:
        running = self._running.pop(connector_id, None)
        if running is not None:
            running.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await running.task

    async def stop_all(self) -> None:
        """Stop every connector running here (they stay stored)."""
        async with self._lock:
            for connector_id in list(self._running):
                await self._stop(connector_id)
            self._broken.clear()

    async def close(self) -> None:
        await self.stop_all()
