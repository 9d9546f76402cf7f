"""`Store` on SQLAlchemy 2 Core: SQLite (embedded default, WAL) or PostgreSQL (psycopg 3).

Blocking database work runs off the event loop: for SQLite on one thread that group-commits
(see `batching`), for PostgreSQL on a pool of eight threads. Each thread keeps one connection
for its lifetime and every method is one short unit of work, so the hot path (create/update an
invocation) is a single prepared statement plus (a share of) a commit.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine, RowMapping, make_url

from pratai.core.models import (
    ApiKey,
    AuditEntry,
    BuildState,
    ConnectorRecord,
    Event,
    Function,
    FunctionVersion,
    Invocation,
    Project,
    Role,
    Route,
    Status,
    Trigger,
    TriggerKind,
    User,
)
from pratai.errors import Conflict
from pratai.store import tables as t
from pratai.store.batching import GroupCommitter

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_PG_MIGRATION_LOCK = 0x70726174  # "prat": pg_advisory_xact_lock key for schema upgrades


def normalize_url(url: str) -> str:
    """`postgresql://` and `postgres://` use the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA busy_timeout=5000")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
    finally:
        cur.close()


def create_engine(url: str) -> Engine:
    sa_url = make_url(normalize_url(url))
    if sa_url.get_backend_name() == "sqlite":
        db = sa_url.database
        if db and db != ":memory:" and not db.startswith("file:"):
            Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(sa_url, connect_args={"check_same_thread": False, "timeout": 5.0})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(sa_url, pool_size=8, max_overflow=4, pool_pre_ping=False)


# --- row <-> record mapping --------------------------------------------------------------

_INV_COLS = [c.name for c in t.invocations.columns]


def _project(r: RowMapping) -> Project:
    return Project(id=r["id"], name=r["name"], created_at=r["created_at"])


def _key(r: RowMapping) -> ApiKey:
    return ApiKey(
        id=r["id"],
        project_id=r["project_id"],
        role=Role(r["role"]),
        secret_hash=r["secret_hash"],
        name=r["name"],
        created_at=r["created_at"],
        expires_at=r["expires_at"],
        revoked_at=r["revoked_at"],
        user_id=r["user_id"],
        rate_limit=r["rate_limit"],
        rate_window_s=r["rate_window_s"],
    )


def _function(r: RowMapping) -> Function:
    d = dict(r)
    d["secrets"] = json.loads(d["secrets"])
    return Function(**d)


def _function_row(f: Function) -> dict[str, Any]:
    d = {c.name: getattr(f, c.name) for c in t.functions.columns}
    d["secrets"] = json.dumps(f.secrets)
    return d


def _version(r: RowMapping) -> FunctionVersion:
    d = dict(r)
    d["state"] = BuildState(d["state"])
    return FunctionVersion(**d)


def _version_row(v: FunctionVersion) -> dict[str, Any]:
    return {
        "function_id": v.function_id,
        "version": v.version,
        "package_digest": v.package_digest,
        "handler": v.handler,
        "requirements_hash": v.requirements_hash,
        "state": str(v.state),
        "build_log": v.build_log,
        "created_at": v.created_at,
    }


def _invocation(r: RowMapping) -> Invocation:
    d = dict(r)
    d["status"] = Status(d["status"])
    d["payload"] = bytes(d["payload"]) if d["payload"] is not None else b""
    d["error"] = json.loads(d["error"]) if d["error"] is not None else None
    return Invocation(**d)


def _invocation_row(inv: Invocation) -> dict[str, Any]:
    d = {name: getattr(inv, name) for name in _INV_COLS}
    d["status"] = str(inv.status)
    d["error"] = json.dumps(inv.error) if inv.error is not None else None
    return d


def _event(r: RowMapping) -> Event:
    d = dict(r)
    d["data"] = bytes(d["data"])
    d["extensions"] = json.loads(d["extensions"])
    return Event(**d)


def _event_row(e: Event) -> dict[str, Any]:
    d = {c.name: getattr(e, c.name) for c in t.events.columns if c.name != "seq"}
    d["extensions"] = json.dumps(e.extensions)
    return d


def _trigger(r: RowMapping) -> Trigger:
    d = dict(r)
    d["kind"] = TriggerKind(d["kind"])
    return Trigger(**d)


# --- prepared statements (compiled once, cached by SQLAlchemy) --------------------------

_INS_INVOCATION = t.invocations.insert()
_UPD_INVOCATION = (
    t.invocations.update()
    .where(t.invocations.c.id == sa.bindparam("_id"))
    .values({name: sa.bindparam(name) for name in _INV_COLS if name != "id"})
)
_UPD_FUNCTION = (
    t.functions.update()
    .where(t.functions.c.id == sa.bindparam("_id"))
    .values({c.name: sa.bindparam(c.name) for c in t.functions.columns if c.name != "id"})
)
_UPD_VERSION = (
    t.function_versions.update()
    .where(
        t.function_versions.c.function_id == sa.bindparam("_function_id"),
        t.function_versions.c.version == sa.bindparam("_version"),
    )
    .values(
        {
            c.name: sa.bindparam(c.name)
            for c in t.function_versions.columns
            if c.name not in ("function_id", "version")
        }
    )
)
_GET_INVOCATION = sa.select(t.invocations).where(t.invocations.c.id == sa.bindparam("id"))


class SqlStore:
    """The `Store` for `sqlite:///path` and `postgresql://...` URLs."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.engine = create_engine(self.url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._executor: ThreadPoolExecutor | None = None
        self._committer: GroupCommitter | None = None
        self._local = threading.local()
        self._conns: list[Connection] = []
        self._conns_lock = threading.Lock()

    # --- plumbing ---------------------------------------------------------------------

    def _conn(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self.engine.connect()
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def _tx(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in one transaction on this thread's connection."""
        return self._tx_on(self._conn(), fn)

    @staticmethod
    def _tx_on(conn: Connection, fn: Callable[[Connection], T]) -> T:
        try:
            result = fn(conn)
            conn.commit()
            return result
        except sa.exc.IntegrityError as e:
            conn.rollback()
            raise Conflict(f"already exists or violates a constraint: {e.orig}") from None
        except BaseException:
            if conn.invalidated or conn.in_transaction():
                conn.rollback()
            raise

    async def _run(self, fn: Callable[[Connection], T]) -> T:
        if self._committer is not None:
            return await self._committer.submit(fn)
        if self._executor is None:
            raise RuntimeError("SqlStore is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._tx, fn)

    def migrate(self) -> None:
        """`alembic upgrade head`, under a lock so concurrent starters don't race.

        SQLite: the whole upgrade runs in one `BEGIN IMMEDIATE` transaction (DDL is
        transactional there); a second process waits on busy_timeout, then finds head.
        PostgreSQL: a transaction-scoped advisory lock does the same.
        """
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.connect() as conn:
            conn.begin()
            if self.is_sqlite:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif self.engine.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()

    async def open(self) -> None:
        if self._executor is not None:
            return
        workers = 1 if self.is_sqlite else 8
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="pratai-store")
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.migrate)
        except BaseException:
            self._executor.shutdown(wait=True)
            self._executor = None
            raise
        if self.is_sqlite:
            self._committer = GroupCommitter(self.engine.connect, self._tx_on)
            self._committer.start()

    async def close(self) -> None:
        committer, self._committer = self._committer, None
        if committer is not None:
            await asyncio.get_running_loop().run_in_executor(None, committer.stop)
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown, True)
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
        self._local = threading.local()
        self.engine.dispose()

    # --- projects and keys ------------------------------------------------------------

    async def create_project(self, project: Project) -> None:
        row = {"id": project.id, "name": project.name, "created_at": project.created_at}
        await self._run(lambda c: c.execute(t.projects.insert(), row))

    async def get_project(self, project_id: str) -> Project | None:
        q = sa.select(t.projects).where(t.projects.c.id == project_id)
        r = await self._run(lambda c: c.execute(q).mappings().first())
        return _project(r) if r else None

    async def get_project_by_name(self, name: str) -> Project | None:
        q = sa.select(t.projects).where(t.projects.c.name == name)
        r = await self._run(lambda c: c.execute(q).mappings().first())
        return _project(r) if r else None

    async def create_key(self, key: ApiKey) -> None:
        row = {c.name: getattr(key, c.name) for c in t.api_keys.columns}
        row["role"] = str(key.role)
        await self._run(lambda c: c.execute(t.api_keys.insert(), row))

    async def get_key(self, key_id: str) -> ApiKey | None:
        q = sa.select(t.api_keys).where(t.api_keys.c.id == key_id)
        r = await self._run(lambda c: c.execute(q).mappings().first())
        return _key(r) if r else None

    async def list_keys(self, project_id: str) -> list[ApiKey]:
        q = (
            sa.select(t.api_keys)
            .where(t.api_keys.c.project_id == project_id)
            .order_by(t.api_keys.c.created_at, t.api_keys.c.id)
        )
        rows = await self._run(lambda c: c.execute(q).mappings().all())
        return [_key(r) for r in rows]

    # --- functions and versions -------------------------------------------------------

    async def create_function(self, function: Function) -> None:
        row = _function_row(function)
        await self._run(lambda c: c.execute(t.functions.insert(), row))

    async def get_function(self, project_id: str, name: str) -> Function | None:
        q = sa.select(t.functions).where(
            t.functions.c.project_id == project_id, t.functions.c.name == name
        )
        r = await self._run(lambda c: c.execute(q).mappings().first())
        return _function(r) if r else None

    async def get_function_by_id(self, function_id: str) -> Function | None:
        q = sa.select(t.functions).where(t.functions.c.id == function_id)
        r = await self._run(lambda c: c.execute(q).mappings().first())
        return _function(r) if r else None

    async def list_functions(self, project_id: str) -> list[Function]:
        q = (
            sa.select(t.functions)
            .where(t.functions.c.project_id == project_id)
            .order_by(t.functions.c.name)
        )
        rows = await self._run(lambda c: c.execute(q).mappings().all())
        return [_function(r) for r in rows]

    async def update_function(self, function: Function) -> None:
        row = _function_row(function)
        row["_id"] = row.pop("id")
        await self._run(lambda c: c.execute(_UPD_FUNCTION, row))

    async def delete_function(self, function_id: str) -> None:
        def work(c: Connection) -> None:
            c.execute(t.invocations.delete().where(t.invocations.c.function_id == function_id))
            c.execute(t.triggers.delete().where(t.triggers.c.function_id == function_id))
            c.execute(t.routes.delete().where(t.routes.c.function_id == function_id))
            c.execute(
                t.function_versions.delete().where(t.function_versions.c.function_id == function_id)
            )
            c.execute(t.functions.delete().where(t.functions.c.id == function_id))

        await self._run(work)

    async def add_version(self, version: FunctionVersion) -> None:
        row = _version_row(version)
        await self._run(lambda c: c.execute(t.function_versions.insert(), row))

    async def get_version(self, function_id: str, version: int) -> FunctionVersion | None:
        v = t.function_versions
        q = sa.select(v).where(v.c.function_id == function_id, v.c.version == version)
        r = await self._run(lambda c: c.execute(q).mappings().first())
        return _version(r) if r else None

    async def list_versions(self, function_id: str) -> list[FunctionVersion]:
        v = t.function_versions
        q = sa.select(v).where(v.c.function_id == function_id).order_by(v.c.version)
        rows = await self._run(lambda c: c.execute(q).mappings().all())
        return [_version(r) for r in rows]

    async def versions_with_state(self, state: BuildState) -> list[FunctionVersion]:
        v = t.function_versions
        q = sa.select(v).where(v.c.state == str(state)).order_by(v.c.created_at)
        rows = await self._run(lambda c: c.execute(q).mappings().all())
        return [_version(r) for r in rows]

    async def update_version(self, version: FunctionVersion) -> None:
        row = _version_row(version)
        row["_function_id"] = row.pop("function_id")
        row["_version"] = row.pop("version")
        await self._run(lambda c: c.execute(_UPD_VERSION, row))

    # --- invocations ------------------------------------------------------------------

    async def create_invocation(self, invocation: Invocation) -> None:
        row = _invocation_row(invocation)
        await self._run(lambda c: c.execute(_INS_INVOCATION, row))

    async def get_invocation(self, project_id: str, invocation_id: str) -> Invocation | None:
        inv = await self.get_invocation_by_id(invocation_id)
        return inv if inv is not None and inv.project_id == project_id else None

    async def get_invocation_by_id(self, invocation_id: str) -> Invocation | None:
        params = {"id": invocation_id}
        r = await self._run(lambda c: c.execute(_GET_INVOCATION, params).mappings().first())
        return _invocation(r) if r else None

    async def start_invocation(self, invocation_id: str, started_at: float) -> Invocation | None:
        """queued -> running in one statement, returning the row; None when it was not queued."""
        i = t.invocations
        q = (
            sa.update(i)
            .where(i.c.id == invocation_id, i.c.status == str(Status.QUEUED))
            .values(status=str(Status.RUNNING), started_at=started_at)
            .returning(*i.columns)
        )
        r = await self._run(lambda c: c.execute(q).mappings().first())
        return _invocation(r) if r else None

    async def update_invocation(self, invocation: Invocation) -> None:
        row = _invocation_row(invocation)
        row["_id"] = row.pop("id")
        await self._run(lambda c: c.execute(_UPD_INVOCATION, row))

    async def list_invocations(
        self,
        project_id: str,
        function_id: str | None = None,
        *,
        limit: int = 50,
        finished_after: float | None = None,
        oldest_first: bool = False,
    ) -> list[Invocation]:
        """Newest first by created_at (or oldest first). With `finished_after`: only those that
        finished strictly after it, oldest finish first (so a follower can page forward)."""
        i = t.invocations
        q = sa.select(i).where(i.c.project_id == project_id)
        if function_id is not None:
            q = q.where(i.c.function_id == function_id)
        if finished_after is not None:
            q = q.where(i.c.finished_at > finished_after).order_by(i.c.finished_at, i.c.id)
        elif oldest_first:
            q = q.order_by(i.c.created_at, i.c.id)
        else:
            q = q.order_by(i.c.created_at.desc(), i.c.id.desc())
        q = q.limit(max(0, limit))
        rows = await self._run(lambda c: c.execute(q).mappings().all())
        return [_invocation(r) for r in rows]

    async def invocations_with_status(self, statuses: Sequence[Status]) -> list[Invocation]:
        if not statuses:
            return []
        i = t.invocations
        q = (
            sa.select(i)
            .where(i.c.status.in_([str(s) for s in statuses]))
            .order_by(i.c.created_at, i.c.id)
        )
        rows = await self._run(lambda c: c.execute(q).mappings().all())
        return [_invocation(r) for r in rows]

    # --- events, triggers, timer ticks ------------------------------------------------

    async def add_event(self, event: Event, invocations: Sequence[Invocation] = ()) -> Event | None:
        """Stores the event, sets its seq and, in the same transaction, the invocations it
        causes (their event_seq set); None, storing nothing, when (project, source, id) exists."""
        row = _event_row(event)
        dialect_insert = sqlite_insert if self.is_sqlite else postgresql_insert
        insert_event = (
            dialect_insert(t.events)
            .on_conflict_do_nothing(index_elements=["project_id", "source", "id"])
            .returning(t.events.c.seq)
        )
        insert_invocation = dialect_insert(t.invocations).on_conflict_do_nothing(
            index_elements=["id"]
        )

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
        row = {c.name: getattr(trigger, c.name) for c in t.triggers.columns}
        row["kind"] = str(trigger.kind)
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

    # --- tenancy ------------------------------------------------------------------------

    async def list_projects(self) -> list[Project]:
        q = sa.select(t.projects).order_by(t.projects.c.name)
        rows = await self._run(lambda c: c.execute(q).mappings().all())
        return [_project(r) for r in rows]

    async def create_user(self, user: User) -> None:
        row = {"id": user.id, "name": user.name, "created_at": user.created_at}
        await self._run(lambda c: c.execute(t.users.insert(), row))

    async def get_user_by_name(self, name: str) -> User | None:
        q = sa.select(t.users).where(t.users.c.name == name)
        r = await self._run(lambda c: c.execute(q).mappings().first())
        return User(**r) if r else None

    async def revoke_key(self, key_id: str, at: float) -> None:
        q = sa.update(t.api_keys).where(t.api_keys.c.id == key_id).values(revoked_at=at)
        await self._run(lambda c: c.execute(q))

    async def add_audit(self, entry: AuditEntry) -> None:
        row = {c.name: getattr(entry, c.name) for c in t.audit.columns if c.name != "seq"}
        await self._run(lambda c: c.execute(t.audit.insert(), row))

    async def list_audit(self, project_id: str, limit: int = 100) -> list[AuditEntry]:
        a = t.audit
        q = sa.select(a).where(a.c.project_id == project_id).order_by(a.c.seq.desc()).limit(limit)
        rows = await self._run(lambda c: c.execute(q).mappings().all())
        return [AuditEntry(**r) for r in rows]

    # --- secrets ------------------------------------------------------------------------

    async def put_secret(self, project_id: str, name: str, ciphertext: bytes, at: float) -> None:
        """Raises Conflict when the project has a secret of that name."""
        row = {"project_id": project_id, "name": name, "ciphertext": ciphertext, "created_at": at}
        await self._run(lambda c: c.execute(t.secrets.insert(), row))

    async def get_secret(self, project_id: str, name: str) -> bytes | None:
        s = t.secrets
        q = sa.select(s.c.ciphertext).where(s.c.project_id == project_id, s.c.name == name)
        value = await self._run(lambda c: c.execute(q).scalar())
        return bytes(value) if value is not None else None

    async def list_secrets(self, project_id: str | None = None) -> list[tuple[str, str, float]]:
        """(project id, name, created_at) of each secret; never the values."""
        s = t.secrets
        q = sa.select(s.c.project_id, s.c.name, s.c.created_at).order_by(s.c.name)
        if project_id is not None:
            q = q.where(s.c.project_id == project_id)
        rows = await self._run(lambda c: c.execute(q).all())
        return [(r[0], r[1], r[2]) for r in rows]

    async def replace_secret_ciphertext(
        self, project_id: str, name: str, ciphertext: bytes
    ) -> None:
        s = t.secrets
        q = (
            sa.update(s)
            .where(s.c.project_id == project_id, s.c.name == name)
            .values(ciphertext=ciphertext)
        )
        await self._run(lambda c: c.execute(q))

    async def delete_secret(self, project_id: str, name: str) -> None:
        s = t.secrets
        q = sa.delete(s).where(s.c.project_id == project_id, s.c.name == name)
        await self._run(lambda c: c.execute(q))

    # --- gateway ------------------------------------------------------------------------

    async def create_route(self, route: Route) -> None:
        """Raises Conflict when the project already routes that method and path."""
        row = {c.name: getattr(route, c.name) for c in t.routes.columns}
        row["cors_origins"] = json.dumps(route.cors_origins)
        await self._run(lambda c: c.execute(t.routes.insert(), row))

    async def list_routes(self, project_id: str, function_id: str | None = None) -> list[Route]:
        r = t.routes
        q = sa.select(r).where(r.c.project_id == project_id).order_by(r.c.path, r.c.method)
        if function_id is not None:
            q = q.where(r.c.function_id == function_id)
        rows = await self._run(lambda c: c.execute(q).mappings().all())
        return [Route(**{**row, "cors_origins": json.loads(row["cors_origins"])}) for row in rows]

    async def delete_route(self, route_id: str) -> None:
        await self._run(lambda c: c.execute(sa.delete(t.routes).where(t.routes.c.id == route_id)))

    async def hit(self, key: str, window: int) -> int:
        """Count one request in (key, window) and return the count, atomically across
        processes; old windows are cleared as they pass."""
        dialect_insert = sqlite_insert if self.is_sqlite else postgresql_insert
        rc = t.rate_counters
        upsert = (
            dialect_insert(rc)
            .values(key=key, window=window, count=1)
            .on_conflict_do_update(index_elements=["key", "window"], set_={"count": rc.c.count + 1})
            .returning(rc.c.count)
        )

        def work(c: Connection) -> int:
            count = int(c.execute(upsert).scalar_one())
            if count == 1:
                c.execute(sa.delete(rc).where(rc.c.key == key, rc.c.window < window))
            return count

        return await self._run(work)
