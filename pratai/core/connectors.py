"""Connectors: configured per project, run by the platform, publishing what they receive.

The concrete kinds live in `pratai.connectors`; this service only knows the `Connector` contract
and a factory, so adding a kind never edits the core.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pratai.connectors.base import Connector, ConnectorStatus, Incoming
from pratai.core.events import Events, check_topic
from pratai.core.models import ConnectorRecord, Event, Project, check_name, new_id
from pratai.core.ports import ConnectorStore, ProjectStore
from pratai.errors import Conflict, NotFound

log = logging.getLogger("pratai.connectors")

Factory = Callable[[str, str, dict[str, str]], Connector]


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
    def __init__(self, store: _Store, events: Events, factory: Factory) -> None:
        self.store = store
        self.events = events
        self.factory = factory
        self._running: dict[str, Running] = {}

    async def create(
        self, project: Project, name: str, kind: str, url: str, topic: str, options: dict[str, str]
    ) -> ConnectorRecord:
        check_name(name, "connector")
        check_topic(topic)
        connector = self.factory(kind, url, options)  # validates kind, URL and options
        record = ConnectorRecord(new_id(), project.id, name, kind, url, topic, options)
        try:
            await self.store.create_connector(record)
        except Conflict:
            raise Conflict(f"connector {name!r} already exists", connector=name) from None
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
        running = self._running.get(record.id)
        return running.connector.status if running else ConnectorStatus()

    async def delete(self, project: Project, name: str) -> None:
        record = await self.get(project, name)
        await self.store.delete_connector(record.id)
        await self._stop(record.id)

    async def start_all(self) -> None:
        """Run every configured connector (at platform start)."""
        for record in await self.store.list_connectors():
            try:
                self._start(record, self.factory(record.kind, record.url, record.options))
            except Exception:
                log.exception("connector %s cannot start", record.name)

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

        task = asyncio.create_task(connector.run(emit), name=f"connector-{record.name}")
        self._running[record.id] = Running(record, connector, task)

    async def _stop(self, connector_id: str) -> None:
        running = self._running.pop(connector_id, None)
        if running is not None:
            running.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await running.task

    async def close(self) -> None:
        for connector_id in list(self._running):
            await self._stop(connector_id)
