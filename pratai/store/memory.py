"""`Store` in the process's memory: the SQL store's rules without a database, for fast tests.

Every table is a `Table` of copies: what goes in and what comes out is never an object the
caller holds, as with rows of a database. Each method runs without awaiting, so on one event
loop it is one atomic unit, like a transaction; a multi-row method checks every constraint
before it changes anything. Data outlive `close()`, as a database file does, until the
instance is dropped.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from pratai.core.models import (
    ApiKey,
    BuildState,
    Event,
    Function,
    FunctionVersion,
    Invocation,
    InvocationFilter,
    Project,
    Route,
    SavedPayload,
    Status,
    TopicSummary,
    Trigger,
    TriggerKind,
)
from pratai.core.ports import InvocationSample
from pratai.store._memory_tables import Table, missing
from pratai.store.memory_admin import AdminTables


class MemoryStore(AdminTables):
    """The `Store` of `pratai.core.ports`, held in dicts."""

    # --- projects and keys ------------------------------------------------------------

    async def create_project(self, project: Project) -> None:
        self._t.projects.insert(project)

    async def get_project(self, project_id: str) -> Project | None:
        return self._t.projects.get(project_id)

    async def get_project_by_name(self, name: str) -> Project | None:
        return self._t.projects.first(lambda p: p.name == name)

    async def create_key(self, key: ApiKey) -> None:
        if key.project_id not in self._t.projects.rows:
            raise missing("project", key.project_id)
        self._t.keys.insert(key)

    async def get_key(self, key_id: str) -> ApiKey | None:
        return self._t.keys.get(key_id)

    async def list_keys(self, project_id: str) -> list[ApiKey]:
        return self._t.keys.select(
            lambda k: k.project_id == project_id, lambda k: (k.created_at, k.id)
        )

    # --- functions and versions -------------------------------------------------------

    async def create_function(
        self,
        function: Function,
        version: FunctionVersion,
        triggers: Sequence[Trigger] = (),
        routes: Sequence[Route] = (),
    ) -> None:
        t = self._t
        if function.project_id not in t.projects.rows:
            raise missing("project", function.project_id)
        rows: list[tuple[Table[Any], Any]] = [(t.functions, function), (t.versions, version)]
        rows += [(t.triggers, trigger) for trigger in triggers]
        rows += [(t.routes, route) for route in routes]
        for table, row in rows:  # all of the deploy or nothing (a deploy has one of each)
            table.check(row)
        for table, row in rows:
            table.insert(row)

    async def get_function(self, project_id: str, name: str) -> Function | None:
        return self._t.functions.first(lambda f: (f.project_id, f.name) == (project_id, name))

    async def get_function_by_id(self, function_id: str) -> Function | None:
        return self._t.functions.get(function_id)

    async def list_functions(self, project_id: str) -> list[Function]:
        return self._t.functions.select(lambda f: f.project_id == project_id, lambda f: f.name)

    async def update_function(self, function: Function) -> None:
        self._t.functions.replace(function)

    async def delete_function(self, function_id: str) -> None:
        t = self._t
        t.invocations.delete(lambda i: i.function_id == function_id)
        t.triggers.delete(lambda tr: tr.function_id == function_id)
        t.routes.delete(lambda r: r.function_id == function_id)
        t.saved_payloads.delete(lambda s: s.function_id == function_id)
        t.versions.delete(lambda v: v.function_id == function_id)
        t.functions.delete(lambda f: f.id == function_id)

    async def add_version(self, version: FunctionVersion) -> None:
        if version.function_id not in self._t.functions.rows:
            raise missing("function", version.function_id)
        self._t.versions.insert(version)

    async def get_version(self, function_id: str, version: int) -> FunctionVersion | None:
        return self._t.versions.get((function_id, version))

    async def list_versions(self, function_id: str) -> list[FunctionVersion]:
        return self._t.versions.select(lambda v: v.function_id == function_id, lambda v: v.version)

    async def update_version(self, version: FunctionVersion) -> None:
        self._t.versions.replace(version)

    async def versions_with_state(self, state: BuildState) -> list[FunctionVersion]:
        return self._t.versions.select(lambda v: v.state == state, lambda v: v.created_at)

    # --- saved test payloads -----------------------------------------------------------

    async def put_saved_payload(self, saved: SavedPayload) -> None:
        if saved.function_id not in self._t.functions.rows:
            raise missing("function", saved.function_id)
        table = self._t.saved_payloads
        kept = table.first(lambda s: (s.function_id, s.name) == (saved.function_id, saved.name))
        if kept is None:
            table.insert(saved)
        else:
            kept.payload, kept.updated_at = saved.payload, saved.updated_at
            table.replace(kept)

    async def list_saved_payloads(self, function_id: str) -> list[SavedPayload]:
        return self._t.saved_payloads.select(
            lambda s: s.function_id == function_id, lambda s: s.name
        )

    async def delete_saved_payload(self, function_id: str, name: str) -> bool:
        table = self._t.saved_payloads
        before = len(table.rows)
        table.delete(lambda s: (s.function_id, s.name) == (function_id, name))
        return len(table.rows) < before

    # --- invocations ------------------------------------------------------------------

    async def create_invocation(self, invocation: Invocation) -> None:
        self._t.invocations.insert(invocation)

    async def get_invocation(self, project_id: str, invocation_id: str) -> Invocation | None:
        inv = self._t.invocations.get(invocation_id)
        return inv if inv is not None and inv.project_id == project_id else None

    async def get_invocation_by_id(self, invocation_id: str) -> Invocation | None:
        return self._t.invocations.get(invocation_id)

    async def update_invocation(
        self, invocation: Invocation, *, attempt: int | None = None
    ) -> bool:
        stored = self._t.invocations.rows.get(invocation.id)
        if attempt is not None and (stored is None or stored.attempt != attempt):
            return False
        if stored is not None and invocation.payload != stored.payload:
            invocation = replace(invocation, payload=stored.payload)  # written once, as SQL does
        return self._t.invocations.replace(invocation)

    async def start_invocation(self, invocation_id: str, started_at: float) -> Invocation | None:
        inv = self._t.invocations.rows.get(invocation_id)
        if inv is None or inv.status != Status.QUEUED:
            return None
        inv.status, inv.started_at = Status.RUNNING, started_at
        return copy.deepcopy(inv)

    async def list_invocations(
        self,
        project_id: str,
        function_id: str | None = None,
        *,
        limit: int = 50,
        finished_after: float | None = None,
        oldest_first: bool = False,
        where: InvocationFilter | None = None,
        brief: bool = False,
    ) -> list[Invocation]:

        def match(i: Invocation) -> bool:
            if i.project_id != project_id or function_id not in (None, i.function_id):
                return False
            if where is not None and not where.matches(i):
                return False
            finished = i.finished_at
            return finished_after is None or (finished is not None and finished > finished_after)

        if finished_after is not None:
            found = self._t.invocations.select(match, lambda i: (i.finished_at, i.id), limit=limit)
        else:
            by_created = lambda i: (i.created_at, i.id)  # noqa: E731
            found = self._t.invocations.select(
                match, by_created, reverse=not oldest_first, limit=limit
            )
        if brief:  # as the SQL store's brief rows: without the large fields
            for i in found:
                i.payload, i.result, i.stdout, i.stderr = b"", None, "", ""
        return found

    async def invocations_with_status(self, statuses: Sequence[Status]) -> list[Invocation]:
        return self._t.invocations.select(
            lambda i: i.status in statuses, lambda i: (i.created_at, i.id)
        )

    async def invocation_samples(
        self,
        project_id: str,
        *,
        since: float | None = None,
        function_id: str | None = None,
        statuses: Sequence[Status] | None = None,
        limit: int | None = None,
    ) -> list[InvocationSample]:
        found = [
            InvocationSample(
                i.id, i.function_id, i.status, i.created_at, i.duration_ms, i.cold_start
            )
            for i in self._t.invocations.rows.values()
            if i.project_id == project_id
            and (since is None or i.created_at >= since)
            and function_id in (None, i.function_id)
            and (statuses is None or i.status in statuses)
        ]
        found.sort(key=lambda s: (s.created_at, s.id), reverse=True)
        return found if limit is None else found[: max(0, limit)]

    async def count_invocations(self, statuses: Sequence[Status]) -> dict[tuple[str, Status], int]:
        return self._t.invocations.tally(
            lambda i: i.status in statuses, lambda i: (i.project_id, i.status)
        )

    # --- events, triggers, timer ticks ------------------------------------------------

    async def add_event(self, event: Event, invocations: Sequence[Invocation] = ()) -> Event | None:
        if self._t.events.first(
            lambda e: (e.project_id, e.source, e.id) == (event.project_id, event.source, event.id)
        ):
            return None
        event.seq = next(self._t.event_seq)
        self._t.events.insert(event)
        for invocation in invocations:
            invocation.event_seq = event.seq
            if invocation.id not in self._t.invocations.rows:  # as ON CONFLICT DO NOTHING
                self._t.invocations.insert(invocation)
        return event

    async def get_event(self, project_id: str, seq: int) -> Event | None:
        event = self._t.events.get(seq)
        return event if event is not None and event.project_id == project_id else None

    async def find_event(self, project_id: str, source: str, event_id: str) -> Event | None:
        wanted = (project_id, source, event_id)
        return self._t.events.first(lambda e: (e.project_id, e.source, e.id) == wanted)

    async def list_events(self, project_id: str, topic: str, limit: int = 50) -> list[Event]:
        match = lambda e: (e.project_id, e.topic) == (project_id, topic)  # noqa: E731
        return self._t.events.select(match, lambda e: e.seq, reverse=True, limit=limit)

    async def event_topics(self, project_id: str, limit: int = 200) -> list[TopicSummary]:
        seen: dict[str, tuple[int, float]] = {}
        for event in self._t.events.rows.values():
            if event.project_id == project_id:
                count, last = seen.get(event.topic, (0, 0.0))
                seen[event.topic] = (count + 1, max(last, event.created_at))
        found = [TopicSummary(topic, n, last) for topic, (n, last) in seen.items()]
        return sorted(found, key=lambda s: (-s.last_at, s.topic))[: max(0, limit)]

    async def mark_dispatched(self, seq: int) -> None:
        await self.mark_dispatched_many([seq])

    async def mark_dispatched_many(self, seqs: Sequence[int]) -> None:
        for seq in seqs:
            if seq in self._t.events.rows:
                self._t.events.rows[seq].dispatched = True

    async def undispatched_events(self, limit: int = 1000) -> list[Event]:
        return self._t.events.select(lambda e: not e.dispatched, lambda e: e.seq, limit=limit)

    async def create_trigger(self, trigger: Trigger) -> None:
        self._t.triggers.insert(trigger)

    async def list_triggers(
        self,
        project_id: str | None = None,
        *,
        function_id: str | None = None,
        kind: TriggerKind | None = None,
        topic: str | None = None,
    ) -> list[Trigger]:
        wanted = {
            "project_id": project_id,
            "function_id": function_id,
            "kind": kind,
            "topic": topic,
        }
        filters = {name: value for name, value in wanted.items() if value is not None}
        match = lambda t: all(getattr(t, k) == v for k, v in filters.items())  # noqa: E731
        return self._t.triggers.select(match, lambda t: t.created_at)

    async def get_trigger(self, trigger_id: str) -> Trigger | None:
        return self._t.triggers.get(trigger_id)

    async def get_trigger_by_token(self, token: str) -> Trigger | None:
        return self._t.triggers.first(lambda t: t.token == token)

    async def delete_trigger(self, trigger_id: str) -> None:
        self._t.triggers.delete(lambda t: t.id == trigger_id)

    async def claim_tick(self, trigger_id: str, tick: float, fired_at: float) -> bool:
        if (trigger_id, tick) in self._t.ticks:
            return False
        self._t.ticks[(trigger_id, tick)] = fired_at
        return True

    async def last_tick(self, trigger_id: str) -> float | None:
        return max((tick for tid, tick in self._t.ticks if tid == trigger_id), default=None)

    async def child_invocations(self, parent_id: str) -> list[Invocation]:
        return self._t.invocations.select(
            lambda i: i.parent_id == parent_id, lambda i: i.created_at
        )
