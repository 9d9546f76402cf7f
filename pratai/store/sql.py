"""`Store` on SQLAlchemy 2 Core: SQLite (embedded default, WAL) or PostgreSQL (psycopg 3).

Blocking database work runs off the event loop: for SQLite on one thread that group-commits
(see `batching`), for PostgreSQL on a pool of eight threads. Each thread keeps one connection
for its lifetime and every method is one short unit of work, so the hot path (create/update an
invocation) is a single prepared statement plus (a share of) a commit.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, Engine, make_url

from pratai.core.models import (
    ApiKey,
    BuildState,
    Function,
    FunctionVersion,
    Invocation,
    InvocationFilter,
    Project,
    Route,
    Status,
    Trigger,
)
from pratai.errors import Conflict
from pratai.store import tables as t
from pratai.store._rows import (
    _INV_COLS,
    _function,
    _function_row,
    _insert_route,
    _insert_unique,
    _invocation,
    _invocation_row,
    _key,
    _project,
    _trigger_row,
    _version,
    _version_row,
)
from pratai.store.batching import GroupCommitter
from pratai.store.prepared import hot_statements
from pratai.store.sql_admin import AUDIT_COLUMNS, AdminRows
from pratai.store.sql_events import EventRows
from pratai.store.sql_images import ImageRows
from pratai.store.sql_invocations import select_invocations
from pratai.store.sql_jobs import JobRows
from pratai.store.sql_payloads import PayloadRows
from pratai.store.sql_stats import StatsRows

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
        _wal(cur)
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
    finally:
        cur.close()


def _wal(cur: Any, tries: int = 50) -> None:
    """Switches the file to WAL (it stays so). Processes opening a new file at once race for
    that switch, and SQLite answers the losers "database is locked" at once rather than after
    busy_timeout: they try again, for up to 5 s as busy_timeout would."""
    for attempt in range(tries):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(0.1)


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

_INS_INVOCATION = t.invocations.insert()
# queued -> running (bound parameters: a statement given its values is analysed again on
# every call, its cache key covering them)
_START_INVOCATION = (
    sa.update(t.invocations)
    .where(
        t.invocations.c.id == sa.bindparam("_id"),
        t.invocations.c.status == str(Status.QUEUED),
    )
    .values(status=str(Status.RUNNING), started_at=sa.bindparam("started_at"))
    .returning(*t.invocations.columns)
)
_UPD_INVOCATION = (
    t.invocations.update()
    .where(t.invocations.c.id == sa.bindparam("_id"))
    # The payload is written once, by the insert: an update never rewrites its bytes.
    .values({name: sa.bindparam(name) for name in _INV_COLS if name not in ("id", "payload")})
)
# ... only while the stored attempt is the one the caller ran
_UPD_INVOCATION_AT = _UPD_INVOCATION.where(t.invocations.c.attempt == sa.bindparam("_attempt"))
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


class SqlStore(EventRows, AdminRows, JobRows, ImageRows, StatsRows, PayloadRows):
    """The `Store` (pratai.core.ports) for `sqlite:///path` and `postgresql://...` URLs."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.engine = create_engine(self.url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._executor: ThreadPoolExecutor | None = None
        self._committer: GroupCommitter | None = None
        self._local = threading.local()
        self._conns: list[Connection] = []
        self._conns_lock = threading.Lock()
        # a warm invocation's and a job's writes (compiled once on SQLite)
        self._hot = hot_statements(
            self.engine.dialect,
            _INS_INVOCATION,
            _UPD_INVOCATION,
            (t.audit.insert(), AUDIT_COLUMNS),
            t.jobs.insert(),
        )

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

    async def create_function(
        self,
        function: Function,
        version: FunctionVersion,
        triggers: Sequence[Trigger] = (),
        routes: Sequence[Route] = (),
    ) -> None:
        function_row, version_row = _function_row(function), _version_row(version)
        trigger_rows = [_trigger_row(trigger) for trigger in triggers]

        def work(c: Connection) -> None:
            taken = f"function {function.name!r} already exists"
            _insert_unique(c, t.functions.insert(), function_row, taken, function=function.name)
            c.execute(t.function_versions.insert(), version_row)
            if trigger_rows:
                c.execute(t.triggers.insert(), trigger_rows)
            for route in routes:
                _insert_route(c, route)

        await self._run(work)

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
                t.saved_payloads.delete().where(t.saved_payloads.c.function_id == function_id)
            )
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
        await self._run(lambda c: self._hot.insert_invocation.run(c, row))

    async def get_invocation(self, project_id: str, invocation_id: str) -> Invocation | None:
        inv = await self.get_invocation_by_id(invocation_id)
        return inv if inv is not None and inv.project_id == project_id else None

    async def get_invocation_by_id(self, invocation_id: str) -> Invocation | None:
        params = {"id": invocation_id}
        r = await self._run(lambda c: c.execute(_GET_INVOCATION, params).mappings().first())
        return _invocation(r) if r else None

    async def start_invocation(self, invocation_id: str, started_at: float) -> Invocation | None:
        """queued -> running in one statement, returning the row; None when it was not queued."""
        params = {"_id": invocation_id, "started_at": started_at}
        r = await self._run(lambda c: c.execute(_START_INVOCATION, params).mappings().first())
        return _invocation(r) if r else None

    async def update_invocation(
        self, invocation: Invocation, *, attempt: int | None = None
    ) -> bool:
        row = _invocation_row(invocation)
        row["_id"] = row.pop("id")
        del row["payload"]
        if attempt is None:
            return bool(await self._run(lambda c: self._hot.update_invocation.run(c, row).rowcount))
        row["_attempt"] = attempt
        return bool(await self._run(lambda c: c.execute(_UPD_INVOCATION_AT, row).rowcount))

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
        """Newest first by created_at (or oldest first). With `finished_after`: only those that
        finished strictly after it, oldest finish first (so a follower can page forward)."""
        i = t.invocations
        q = select_invocations(project_id, function_id, where, brief=brief)
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

    async def count_invocations(self, statuses: Sequence[Status]) -> dict[tuple[str, Status], int]:
        return await self._count(t.invocations, statuses)
