"""The SQL store's events, triggers, timer ticks, leases and connectors."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Insert

from pratai.core.models import (
    ConnectorRecord,
    Event,
    Invocation,
    TopicSummary,
    Trigger,
    TriggerKind,
)
from pratai.errors import Conflict
from pratai.store import tables as t
from pratai.store._rows import (
    SqlBase,
    _event,
    _event_row,
    _invocation,
    _invocation_row,
    _trigger,
    _trigger_row,
)


@functools.cache
def _event_inserts(sqlite: bool) -> tuple[Insert, Insert]:
    """An event's insert (nothing on a repeat, returning its seq) and its invocations', built
    once per dialect."""
    dialect_insert = sqlite_insert if sqlite else postgresql_insert
    insert_event = (
        dialect_insert(t.events)
        .on_conflict_do_nothing(index_elements=["project_id", "source", "id"])
        .returning(t.events.c.seq)
    )
    insert_invocation = dialect_insert(t.invocations).on_conflict_do_nothing(index_elements=["id"])
    return insert_event, insert_invocation


class EventRows(SqlBase):
    # --- events, triggers, timer ticks ------------------------------------------------

    async def add_event(self, event: Event, invocations: Sequence[Invocation] = ()) -> Event | None:
        """Stores the event, sets its seq and, in the same transaction, the invocations it
        causes (their event_seq set); None, storing nothing, when (project, source, id) exists."""
        row = _event_row(event)
        insert_event, insert_invocation = _event_inserts(self.is_sqlite)

        def work(c: Connection) -> int | None:
            seq = c.execute(insert_event, row).scalar()
            if seq is not None and invocations:
                for invocation in invocations:
                    invocation.event_seq = int(seq)
                c.execute(insert_invocation, [_invocation_row(i) for i in invocations])
            return None if seq is None else int(seq)

        seq = await self._run(work)
        if seq is None:
            return None
        event.seq = seq
        return event

    async def mark_dispatched_many(self, seqs: Sequence[int]) -> None:
        e = t.events
        q = sa.update(e).where(e.c.seq.in_(list(seqs))).values(dispatched=True)
        await self._run(lambda c: c.execute(q))

    async def get_event(self, project_id: str, seq: int) -> Event | None:
        e = t.events
        q = sa.select(e).where(e.c.project_id == project_id, e.c.seq == seq)
        r = await self._run(lambda c: c.execute(q).mappings().first())
        return _event(r) if r else None

    async def find_event(self, project_id: str, source: str, event_id: str) -> Event | None:
        e = t.events
        q = sa.select(e).where(
            e.c.project_id == project_id, e.c.source == source, e.c.id == event_id
        )
        r = await self._run(lambda c: c.execute(q).mappings().first())
        return _event(r) if r else None

    async def list_events(self, project_id: str, topic: str, limit: int = 50) -> list[Event]:
        e = t.events
        q = (
            sa.select(e)
            .where(e.c.project_id == project_id, e.c.topic == topic)
            .order_by(e.c.seq.desc())
            .limit(limit)
        )
        rows = await self._run(lambda c: c.execute(q).mappings().all())
        return [_event(r) for r in rows]

    async def event_topics(self, project_id: str, limit: int = 200) -> list[TopicSummary]:
        e = t.events
        last = sa.func.max(e.c.created_at).label("last_at")
        q = (
            sa.select(e.c.topic, sa.func.count().label("events"), last)
            .where(e.c.project_id == project_id)
            .group_by(e.c.topic)
            .order_by(last.desc(), e.c.topic)
            .limit(limit)
        )
        rows = await self._run(lambda c: c.execute(q).all())
        return [TopicSummary(r.topic, int(r.events), float(r.last_at)) for r in rows]

    async def mark_dispatched(self, seq: int) -> None:
        e = t.events
        q = sa.update(e).where(e.c.seq == seq).values(dispatched=True)
        await self._run(lambda c: c.execute(q))

    async def undispatched_events(self, limit: int = 1000) -> list[Event]:
        e = t.events
        q = sa.select(e).where(e.c.dispatched.is_(False)).order_by(e.c.seq).limit(limit)
        rows = await self._run(lambda c: c.execute(q).mappings().all())
        return [_event(r) for r in rows]

    async def create_trigger(self, trigger: Trigger) -> None:
        row = _trigger_row(trigger)
        await self._run(lambda c: c.execute(t.triggers.insert(), row))

    async def list_triggers(
        self,
        project_id: str | None = None,
        *,
        function_id: str | None = None,
        kind: TriggerKind | None = None,
        topic: str | None = None,
    ) -> list[Trigger]:
        tr = t.triggers
        q = sa.select(tr).order_by(tr.c.created_at)
        if project_id is not None:
            q = q.where(tr.c.project_id == project_id)
        if function_id is not None:
            q = q.where(tr.c.function_id == function_id)
        if kind is not None:
            q = q.where(tr.c.kind == str(kind))
        if topic is not None:
            q = q.where(tr.c.topic == topic)
        rows = await self._run(lambda c: c.execute(q).mappings().all())
        return [_trigger(r) for r in rows]

    async def get_trigger(self, trigger_id: str) -> Trigger | None:
        q = sa.select(t.triggers).where(t.triggers.c.id == trigger_id)
        r = await self._run(lambda c: c.execute(q).mappings().first())
        return _trigger(r) if r else None

    async def get_trigger_by_token(self, token: str) -> Trigger | None:
        q = sa.select(t.triggers).where(t.triggers.c.token == token)
        r = await self._run(lambda c: c.execute(q).mappings().first())
        return _trigger(r) if r else None

    async def delete_trigger(self, trigger_id: str) -> None:
        q = sa.delete(t.triggers).where(t.triggers.c.id == trigger_id)
        await self._run(lambda c: c.execute(q))

    async def claim_tick(self, trigger_id: str, tick: float, fired_at: float) -> bool:
        """True for exactly one caller per (trigger, tick), across processes."""
        row = {"trigger_id": trigger_id, "tick": tick, "fired_at": fired_at}
        try:
            await self._run(lambda c: c.execute(t.timer_ticks.insert(), row))
        except Conflict:
            return False
        return True

    async def take_lease(self, name: str, holder: str, now: float, ttl_s: float) -> bool:
        """Renew or take over an existing row with one conditional UPDATE, else INSERT one that
        may conflict. PostgreSQL: a concurrent UPDATE of the same row waits for the first and
        re-checks the condition on its new values (which then fails); a concurrent INSERT
        waits on the key and does nothing. SQLite has one writer at a time."""
        le = t.leases
        renew = (
            sa.update(le)
            .where(le.c.name == name, sa.or_(le.c.holder == holder, le.c.until <= now))
            .values(holder=holder, until=now + ttl_s)
        )
        dialect_insert = sqlite_insert if self.is_sqlite else postgresql_insert
        insert = (
            dialect_insert(le)
            .values(name=name, holder=holder, until=now + ttl_s)
            .on_conflict_do_nothing(index_elements=["name"])
            .returning(le.c.name)  # psycopg's rowcount of an INSERT may be -1
        )

        def work(c: Connection) -> bool:
            if c.execute(renew).rowcount:
                return True
            return c.execute(insert).scalar() is not None

        return await self._run(work)

    async def drop_lease(self, name: str, holder: str) -> None:
        le = t.leases
        q = sa.delete(le).where(le.c.name == name, le.c.holder == holder)
        await self._run(lambda c: c.execute(q))

    async def last_tick(self, trigger_id: str) -> float | None:
        tt = t.timer_ticks
        q = sa.select(sa.func.max(tt.c.tick)).where(tt.c.trigger_id == trigger_id)
        value = await self._run(lambda c: c.execute(q).scalar())
        return float(value) if value is not None else None

    async def child_invocations(self, parent_id: str) -> list[Invocation]:
        i = t.invocations
        q = sa.select(i).where(i.c.parent_id == parent_id).order_by(i.c.created_at)
        rows = await self._run(lambda c: c.execute(q).mappings().all())
        return [_invocation(r) for r in rows]

    # --- connectors ---------------------------------------------------------------------

    async def create_connector(self, connector: ConnectorRecord) -> None:
        row = {c.name: getattr(connector, c.name) for c in t.connectors.columns}
        row["options"] = json.dumps(connector.options)
        await self._run(lambda c: c.execute(t.connectors.insert(), row))

    async def list_connectors(self, project_id: str | None = None) -> list[ConnectorRecord]:
        q = sa.select(t.connectors).order_by(t.connectors.c.created_at)
        if project_id is not None:
            q = q.where(t.connectors.c.project_id == project_id)
        rows = await self._run(lambda c: c.execute(q).mappings().all())
        return [ConnectorRecord(**{**r, "options": json.loads(r["options"])}) for r in rows]

    async def delete_connector(self, connector_id: str) -> None:
        q = sa.delete(t.connectors).where(t.connectors.c.id == connector_id)
        await self._run(lambda c: c.execute(q))
