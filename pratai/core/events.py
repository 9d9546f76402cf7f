"""Events: CloudEvents 1.0 on per-project topics, delivered to subscribed functions.

Publishing stores the event (unique per project, source and id, so a repeat is a no-op), then
creates one queued invocation per subscriber, with an id derived from the event and the function
so that dispatching twice (after a crash) creates nothing twice. An event is marked dispatched
only after that; `recover()` dispatches what a crash left undispatched.

Every finished async invocation can emit `function.NAME.succeeded` / `function.NAME.failed` on
the topic of that name (only when someone subscribes), carrying a hop count so that accidental
cycles stop after MAX_HOPS. An invocation that failed its last retry goes to the project's
`dead-letter` topic, from where `redrive()` runs it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Protocol

from pratai.core.invocations import Invocations
from pratai.core.models import (
    Event,
    Function,
    Invocation,
    Project,
    Status,
    Trigger,
    TriggerKind,
    new_id,
)
from pratai.core.ports import EventStore, FunctionReader, ProjectStore, TriggerStore
from pratai.errors import InvalidInput, NotFound, PayloadTooLarge
from pratai.settings import Settings

MAX_HOPS = 16
DEAD_LETTER_TOPIC = "dead-letter"
DEAD_LETTER_SOURCE = "/pratai/dead-letter"
HOPS = "prataihops"
PARENT = "prataiparent"
TOPIC_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$"
_TOPIC = re.compile(TOPIC_PATTERN)
_CACHE_SECONDS = 1.0
FLUSH_SECONDS = 0.2


@dataclass(frozen=True)
class TopicView:
    """A topic of a project: its events (none yet when only subscribed to) and subscribers."""

    topic: str
    events: int
    last_at: float | None
    subscribers: list[str]  # function names


def check_topic(topic: str) -> str:
    if not _TOPIC.fullmatch(topic or ""):
        raise InvalidInput(
            f"invalid topic {topic!r}: use letters, digits, '.', '_', '-' or '/' (at most 255)"
        )
    return topic


def iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


def result_topic(function_name: str, status: Status) -> str:
    outcome = "succeeded" if status == Status.SUCCEEDED else "failed"
    return f"function.{function_name}.{outcome}"


class _Store(EventStore, TriggerStore, FunctionReader, ProjectStore, Protocol):
    """What Events reads and writes: events, subscriptions, the functions they run."""


class Events:
    def __init__(self, settings: Settings, store: _Store, invocations: Invocations) -> None:
        self.settings = settings
        self.store = store
        self.invocations = invocations
        self._subscribers: dict[tuple[str, str], tuple[float, list[Trigger]]] = {}
        # Dispatched events are marked in batches: a crash before the mark only means the
        # event is dispatched again on restart, which creates nothing twice.
        self._dispatched: list[int] = []
        self._flusher: asyncio.Task[None] | None = None
        invocations.finished_listeners.append(self.on_finished)

    def start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_forever())

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await self.flush()

    async def flush(self) -> None:
        seqs, self._dispatched = self._dispatched, []
        if seqs:
            await self.store.mark_dispatched_many(seqs)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()

    def forget_subscribers(self, project_id: str, topic: str | None) -> None:
        if topic is not None:
            self._subscribers.pop((project_id, topic), None)

    async def subscribers(self, project_id: str, topic: str) -> list[Trigger]:
        key = (project_id, topic)
        cached = self._subscribers.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        found = await self.store.list_triggers(project_id, kind=TriggerKind.MESSAGE, topic=topic)
        self._subscribers[key] = (time.monotonic() + _CACHE_SECONDS, found)
        return found

    async def publish(self, project: Project, event: Event) -> tuple[Event, bool]:
        """Durable when it returns. Returns the stored event and whether it was a duplicate."""
        check_topic(event.topic)
        if len(event.data) > self.settings.max_payload_bytes:
            raise PayloadTooLarge(
                f"event data is {len(event.data)} bytes; the limit is "
                f"{self.settings.max_payload_bytes} bytes"
            )
        event.project_id = project.id
        event.time = event.time or iso_now()
        caused = await self._invocations_of(event)
        event.dispatched = True  # its invocations are stored with it, atomically
        stored = await self.store.add_event(event, caused)
        if stored is None:
            existing = await self.store.find_event(project.id, event.source, event.id)
            assert existing is not None
            return existing, True
        for invocation in caused:
            await self.invocations.enqueue(invocation)
        return stored, False

    async def _invocations_of(self, event: Event) -> list[Invocation]:
        """One queued invocation per subscriber, with ids derived from the event's identity so
        that dispatching again (after a crash) creates nothing twice."""
        caused = []
        for trigger in await self.subscribers(event.project_id, event.topic):
            identity = f"{event.project_id}:{event.source}:{event.id}:{trigger.function_id}"
            invocation = await self.invocations.prepare_for(
                trigger.function_id,
                event.data,
                event.datacontenttype,
                invocation_id=hashlib.sha256(identity.encode()).hexdigest()[:32],
                event_seq=event.seq,
                parent_id=event.extensions.get(PARENT),
                event_id=event.id,
            )
            if invocation is not None:
                caused.append(invocation)
        return caused

    async def dispatch(self, event: Event) -> list[str]:
        """Queue the invocations of an event stored undispatched; safe to repeat."""
        assert event.seq is not None
        ids = []
        for invocation in await self._invocations_of(event):
            await self.invocations.store_and_enqueue(invocation)
            ids.append(invocation.id)
        self._dispatched.append(event.seq)
        return ids

    async def recover(self) -> int:
        pending = await self.store.undispatched_events()
        for event in pending:
            await self.dispatch(event)
        return len(pending)

    async def recent(self, project: Project, topic: str, limit: int = 50) -> list[Event]:
        return await self.store.list_events(project.id, check_topic(topic), min(limit, 1000))

    async def topics(self, project: Project) -> list[TopicView]:
        """Topics with events (the latest-used first), then topics only subscribed to."""
        subscribed: dict[str, list[str]] = {}
        names: dict[str, str] = {}
        for trigger in await self.store.list_triggers(project.id, kind=TriggerKind.MESSAGE):
            if trigger.function_id not in names:
                function = await self.store.get_function_by_id(trigger.function_id)
                names[trigger.function_id] = function.name if function else "?"
            subscribed.setdefault(trigger.topic or "", []).append(names[trigger.function_id])
        found = [
            TopicView(s.topic, s.events, s.last_at, sorted(subscribed.pop(s.topic, [])))
            for s in await self.store.event_topics(project.id)
        ]
        found += [TopicView(t, 0, None, sorted(fns)) for t, fns in sorted(subscribed.items())]
        return found

    async def _hops(self, invocation: Invocation) -> int:
        if invocation.event_seq is None:
            return 0
        cause = await self.store.get_event(invocation.project_id, invocation.event_seq)
        return int(cause.extensions.get(HOPS, "0")) if cause else 0

    async def on_finished(self, invocation: Invocation, function: Function) -> None:
        """After the last attempt: chain to subscribers, and dead-letter a failure."""
        failed = invocation.status != Status.SUCCEEDED
        topic = result_topic(function.name, invocation.status)
        chained = bool(await self.subscribers(invocation.project_id, topic))
        if not chained and not (failed and invocation.mode == "async"):
            return  # the common case: nothing to publish, no store round trip
        project = await self.store.get_project(invocation.project_id)
        if project is None:
            return
        if chained:
            hops = await self._hops(invocation) + 1
            if hops <= MAX_HOPS:
                body = invocation.result if not failed else json.dumps(invocation.error)
                await self.publish(
                    project,
                    Event(
                        project_id=project.id,
                        topic=topic,
                        id=invocation.id,
                        source=f"/pratai/functions/{function.name}",
                        type=topic,
                        data=(body or "null").encode(),
                        subject=invocation.id,
                        extensions={HOPS: str(hops), PARENT: invocation.id},
                    ),
                )
        if failed and invocation.mode == "async":
            await self._dead_letter(project, invocation, function)

    async def _dead_letter(self, project: Project, invocation: Invocation, fn: Function) -> None:
        error = invocation.error or {}
        await self.publish(
            project,
            Event(
                project_id=project.id,
                topic=DEAD_LETTER_TOPIC,
                id=invocation.id,
                source=DEAD_LETTER_SOURCE,
                type="pratai.dead_letter",
                data=invocation.payload,
                datacontenttype=invocation.content_type,
                subject=fn.name,
                extensions={
                    "prataifunction": fn.name,
                    "prataiinvocation": invocation.id,
                    "prataierror": f"{error.get('type', '')}: {error.get('message', '')}"[:500],
                    "prataiattempts": str(invocation.attempt),
                },
            ),
        )

    async def redrive(self, project: Project, event_id: str) -> Invocation:
        """Run a dead-lettered event's function again, as a new invocation."""
        dead = await self.store.find_event(project.id, DEAD_LETTER_SOURCE, event_id)
        if dead is None:
            raise NotFound(f"no dead-letter event {event_id!r}", event=event_id)
        name = dead.extensions.get("prataifunction", "")
        function = await self.store.get_function(project.id, name)
        if function is None:
            raise NotFound(f"function {name!r} of that event no longer exists", function=name)
        queued = await self.invocations.submit_for(
            function.id,
            dead.data,
            dead.datacontenttype,
            invocation_id=new_id(),
            event_seq=dead.seq,
            parent_id=dead.extensions.get("prataiinvocation"),
            event_id=dead.id,
        )
        assert queued is not None
        return queued
