"""`Store` in the process's memory: the SQL store's rules without a database, for fast tests.

Every table is a `_Table` of copies: what goes in and what comes out is never an object the
caller holds, as with rows of a database. Each method runs without awaiting, so on one event
loop it is one atomic unit, like a transaction; a multi-row method checks every constraint
before it changes anything. Data outlive `close()`, as a database file does, until the
instance is dropped.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

from pratai.core.models import (
    ApiKey,
    AuditEntry,
    BuildState,
    ConnectorRecord,
    Event,
    Function,
    FunctionVersion,
    Image,
    Invocation,
    Job,
    Project,
    Role,
    Route,
    SavedJob,
    Status,
    Trigger,
    TriggerKind,
    User,
)
from pratai.errors import Conflict

R = TypeVar("R")
Key = Callable[[R], Hashable]

# What a finished or progressing job may change, as in the SQL store; the spec never changes.
_JOB_OUTCOME = (
    "status", "exit_code", "result", "error", "stdout", "stderr", "duration_ms",
    "peak_memory_kb", "started_at", "finished_at",
)  # fmt: skip


class _Table(Generic[R]):
    """Rows by primary key, in insertion order, with unique keys (a None part never clashes,
    as NULL in SQL)."""

    def __init__(
        self, name: str, key: Key[R], *unique: Key[R], taken: Callable[[R], str] | None = None
    ) -> None:
        self.name = name
        self.key = key
        self.unique = unique
        self.taken = taken  # what a Conflict on a unique key says, as the SQL store does
        self.rows: dict[Hashable, R] = {}

    def check(self, row: R, replacing: Hashable | None = None) -> None:
        """Raises Conflict when `row` would break a key (`replacing`: the row it updates)."""
        if replacing is None and self.key(row) in self.rows:
            raise Conflict(_generic(self.name, self.key(row)))
        for unique in self.unique:
            value = unique(row)
            if _has_none(value):
                continue
            for pk, other in self.rows.items():
                if pk != replacing and unique(other) == value:
                    raise Conflict(self.taken(row) if self.taken else _generic(self.name, value))

    def insert(self, row: R) -> None:
        self.check(row)
        self.rows[self.key(row)] = copy.deepcopy(row)

    def get(self, key: Hashable) -> R | None:
        row = self.rows.get(key)
        return copy.deepcopy(row) if row is not None else None

    def first(self, match: Callable[[R], bool]) -> R | None:
        return next(iter(self.select(match)), None)

    def select(
        self,
        match: Callable[[R], bool] = lambda _: True,
        order: Callable[[R], Any] | None = None,
        *,
        reverse: bool = False,
        limit: int | None = None,
    ) -> list[R]:
        found = [row for row in self.rows.values() if match(row)]
        if order is not None:
            found.sort(key=order, reverse=reverse)
        if limit is not None:
            found = found[: max(0, limit)]
        return copy.deepcopy(found)

    def replace(self, row: R) -> bool:
        """Overwrites the row of the same key; False (changing nothing) when there is none."""
        key = self.key(row)
        if key not in self.rows:
            return False
        self.check(row, replacing=key)
        self.rows[key] = copy.deepcopy(row)
        return True

    def delete(self, match: Callable[[R], bool]) -> None:
        for key in [k for k, row in self.rows.items() if match(row)]:
            del self.rows[key]


def _has_none(value: Hashable) -> bool:
    return value is None or (isinstance(value, tuple) and None in value)


def _generic(table: str, key: Hashable) -> str:
    return f"already exists or violates a constraint: {table} {key}"


def _missing(table: str, key: Hashable) -> Conflict:
    return Conflict(_generic(f"no {table}", key))


class _Tables:
    def __init__(self) -> None:
        self.projects = _Table[Project]("project", lambda p: p.id, lambda p: p.name)
        self.keys = _Table[ApiKey]("api key", lambda k: k.id)
        self.functions = _Table[Function](
            "function",
            lambda f: f.id,
            lambda f: (f.project_id, f.name),
            taken=lambda f: f"function {f.name!r} already exists",
        )
        self.versions = _Table[FunctionVersion](
            "function version", lambda v: (v.function_id, v.version)
        )
        self.invocations = _Table[Invocation]("invocation", lambda i: i.id)
        self.events = _Table[Event](
            "event", lambda e: e.seq, lambda e: (e.project_id, e.source, e.id)
        )
        self.event_seq = itertools.count(1)
        self.triggers = _Table[Trigger]("trigger", lambda t: t.id, lambda t: t.token)
        self.ticks: dict[tuple[str, float], float] = {}  # (trigger, tick) -> fired at
        self.connectors = _Table[ConnectorRecord](
            "connector", lambda c: c.id, lambda c: (c.project_id, c.name)
        )
        self.users = _Table[User]("user", lambda u: u.id, lambda u: u.name)
        self.audit = _Table[AuditEntry]("audit entry", lambda a: a.seq)
        self.audit_seq = itertools.count(1)
        self.secrets: dict[tuple[str, str], tuple[bytes, float]] = {}  # -> (ciphertext, at)
        self.routes = _Table[Route](
            "route",
            lambda r: r.id,
            lambda r: (r.project_id, r.method, r.path),
            taken=lambda r: f"the project already routes {r.method} {r.path}",
        )
        self.counters: dict[tuple[str, int], int] = {}  # (key, window) -> requests
        self.jobs = _Table[Job]("job", lambda j: j.id)
        self.saved_jobs = _Table[SavedJob](
            "saved job", lambda s: s.id, lambda s: (s.project_id, s.name)
        )
        self.images = _Table[Image]("image", lambda i: i.id, lambda i: (i.project_id, i.ref))


class MemoryStore:
    """The `Store` of `pratai.core.ports`, held in dicts."""

    def __init__(self) -> None:
        self._tables = _Tables()
        self._open = False

    @property
    def _t(self) -> _Tables:
        if not self._open:
            raise RuntimeError("MemoryStore is not open")
        return self._tables

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    # --- projects and keys ------------------------------------------------------------

    async def create_project(self, project: Project) -> None:
        self._t.projects.insert(project)

    async def get_project(self, project_id: str) -> Project | None:
        return self._t.projects.get(project_id)

    async def get_project_by_name(self, name: str) -> Project | None:
        return self._t.projects.first(lambda p: p.name == name)

    async def create_key(self, key: ApiKey) -> None:
        if key.project_id not in self._t.projects.rows:
            raise _missing("project", key.project_id)
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
            raise _missing("project", function.project_id)
        rows: list[tuple[_Table[Any], Any]] = [(t.functions, function), (t.versions, version)]
        rows += [(t.triggers, trigger) for trigger in triggers]
        rows += [(t.routes, route) for route in routes]
        done: list[tuple[_Table[Any], Hashable]] = []
        try:
            for table, row in rows:
                table.insert(row)
                done.append((table, table.key(row)))
        except Conflict:  # all of the deploy or nothing
            for table, key in done:
                del table.rows[key]
            raise

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
        t.versions.delete(lambda v: v.function_id == function_id)
        t.functions.delete(lambda f: f.id == function_id)

    async def add_version(self, version: FunctionVersion) -> None:
        if version.function_id not in self._t.functions.rows:
            raise _missing("function", version.function_id)
        self._t.versions.insert(version)

    async def get_version(self, function_id: str, version: int) -> FunctionVersion | None:
        return self._t.versions.get((function_id, version))

    async def list_versions(self, function_id: str) -> list[FunctionVersion]:
        return self._t.versions.select(lambda v: v.function_id == function_id, lambda v: v.version)

    async def update_version(self, version: FunctionVersion) -> None:
        self._t.versions.replace(version)

    async def versions_with_state(self, state: BuildState) -> list[FunctionVersion]:
        return self._t.versions.select(lambda v: v.state == state, lambda v: v.created_at)

    # --- invocations ------------------------------------------------------------------

    async def create_invocation(self, invocation: Invocation) -> None:
        self._t.invocations.insert(invocation)

    async def get_invocation(self, project_id: str, invocation_id: str) -> Invocation | None:
        inv = self._t.invocations.get(invocation_id)
        return inv if inv is not None and inv.project_id == project_id else None

    async def get_invocation_by_id(self, invocation_id: str) -> Invocation | None:
        return self._t.invocations.get(invocation_id)

    async def update_invocation(self, invocation: Invocation) -> None:
        self._t.invocations.replace(invocation)

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
    ) -> list[Invocation]:

        def match(i: Invocation) -> bool:
            if i.project_id != project_id or function_id not in (None, i.function_id):
                return False
            finished = i.finished_at
            return finished_after is None or (finished is not None and finished > finished_after)

        if finished_after is not None:
            return self._t.invocations.select(match, lambda i: (i.finished_at, i.id), limit=limit)
        newest = not oldest_first
        by_created = lambda i: (i.created_at, i.id)  # noqa: E731
        return self._t.invocations.select(match, by_created, reverse=newest, limit=limit)

    async def invocations_with_status(self, statuses: Sequence[Status]) -> list[Invocation]:
        return self._t.invocations.select(
            lambda i: i.status in statuses, lambda i: (i.created_at, i.id)
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

    # --- connectors -------------------------------------------------------------------

    async def create_connector(self, connector: ConnectorRecord) -> None:
        self._t.connectors.insert(connector)

    async def list_connectors(self, project_id: str | None = None) -> list[ConnectorRecord]:
        match = lambda c: project_id in (None, c.project_id)  # noqa: E731
        return self._t.connectors.select(match, lambda c: c.created_at)

    async def delete_connector(self, connector_id: str) -> None:
        self._t.connectors.delete(lambda c: c.id == connector_id)

    # --- tenancy ----------------------------------------------------------------------

    async def list_projects(self) -> list[Project]:
        return self._t.projects.select(order=lambda p: p.name)

    async def create_user(self, user: User) -> None:
        self._t.users.insert(user)

    async def get_user_by_name(self, name: str) -> User | None:
        return self._t.users.first(lambda u: u.name == name)

    async def revoke_key(self, key_id: str, at: float, *, keep_admin_in: str | None = None) -> bool:
        key = self._t.keys.rows.get(key_id)
        if key is None:
            return False
        if keep_admin_in is not None and not any(
            _lasting_admin(other, keep_admin_in) and other.id != key_id
            for other in self._t.keys.rows.values()
        ):
            return False
        key.revoked_at = at
        return True

    async def add_audit(self, entry: AuditEntry) -> None:
        stored = copy.copy(entry)
        stored.seq = next(self._t.audit_seq)
        self._t.audit.insert(stored)

    async def list_audit(self, project_id: str, limit: int = 100) -> list[AuditEntry]:
        match = lambda a: a.project_id == project_id  # noqa: E731
        return self._t.audit.select(match, lambda a: a.seq, reverse=True, limit=limit)

    # --- secrets ----------------------------------------------------------------------

    async def put_secret(self, project_id: str, name: str, ciphertext: bytes, at: float) -> None:
        if (project_id, name) in self._t.secrets:
            raise Conflict(f"already exists or violates a constraint: secret {name}")
        self._t.secrets[(project_id, name)] = (bytes(ciphertext), at)

    async def get_secret(self, project_id: str, name: str) -> bytes | None:
        found = self._t.secrets.get((project_id, name))
        return found[0] if found is not None else None

    async def list_secrets(self, project_id: str | None = None) -> list[tuple[str, str, float]]:
        found = [
            (pid, name, at)
            for (pid, name), (_, at) in self._t.secrets.items()
            if project_id in (None, pid)
        ]
        return sorted(found, key=lambda s: s[1])

    async def replace_secret_ciphertext(
        self, project_id: str, name: str, ciphertext: bytes
    ) -> None:
        found = self._t.secrets.get((project_id, name))
        if found is not None:
            self._t.secrets[(project_id, name)] = (bytes(ciphertext), found[1])

    async def delete_secret(self, project_id: str, name: str) -> None:
        self._t.secrets.pop((project_id, name), None)

    # --- gateway ----------------------------------------------------------------------

    async def create_route(self, route: Route) -> None:
        self._t.routes.insert(route)

    async def list_routes(self, project_id: str, function_id: str | None = None) -> list[Route]:
        match = lambda r: r.project_id == project_id and function_id in (None, r.function_id)  # noqa: E731
        return self._t.routes.select(match, lambda r: (r.path, r.method))

    async def delete_route(self, route_id: str) -> None:
        self._t.routes.delete(lambda r: r.id == route_id)

    async def hit(self, key: str, window: int) -> int:
        count = self._t.counters.get((key, window), 0) + 1
        self._t.counters[(key, window)] = count
        if count == 1:  # a new window: the key's older ones are over
            for old in [k for k in self._t.counters if k[0] == key and k[1] < window]:
                del self._t.counters[old]
        return count

    # --- jobs -------------------------------------------------------------------------

    async def create_job(self, job: Job) -> None:
        self._t.jobs.insert(job)

    async def get_job(self, job_id: str) -> Job | None:
        return self._t.jobs.get(job_id)

    async def update_job(self, job: Job, *, only_if: Status | None = None) -> bool:
        stored = self._t.jobs.rows.get(job.id)
        if stored is None or only_if not in (None, stored.status):
            return False
        for name in _JOB_OUTCOME:
            setattr(stored, name, copy.deepcopy(getattr(job, name)))
        return True

    async def list_jobs(
        self, project_id: str, limit: int = 50, status: Status | None = None
    ) -> list[Job]:
        match = lambda j: j.project_id == project_id and status in (None, j.status)  # noqa: E731
        return self._t.jobs.select(match, lambda j: j.created_at, reverse=True, limit=limit)

    async def unfinished_jobs(self) -> list[Job]:
        return self._t.jobs.select(lambda j: not j.status.finished)

    async def create_saved_job(self, saved: SavedJob) -> None:
        if self._t.saved_jobs.first(
            lambda s: (s.project_id, s.name) == (saved.project_id, saved.name)
        ):
            raise Conflict(f"saved job {saved.name!r} already exists", job=saved.name)
        self._t.saved_jobs.insert(saved)

    async def get_saved_job(self, project_id: str, name: str) -> SavedJob | None:
        return self._t.saved_jobs.first(lambda s: (s.project_id, s.name) == (project_id, name))

    async def update_saved_job(self, saved: SavedJob) -> None:
        self._t.saved_jobs.replace(saved)

    async def delete_saved_job(self, saved_id: str) -> None:
        self._t.saved_jobs.delete(lambda s: s.id == saved_id)

    async def list_saved_jobs(self, project_id: str | None = None) -> list[SavedJob]:
        if project_id is None:
            return self._t.saved_jobs.select(lambda s: s.cron is not None, lambda s: s.name)
        return self._t.saved_jobs.select(lambda s: s.project_id == project_id, lambda s: s.name)

    # --- container images -------------------------------------------------------------

    async def put_image(self, image: Image) -> None:
        found = self._t.images.first(
            lambda i: (i.project_id, i.ref) == (image.project_id, image.ref)
        )
        if found is None:
            self._t.images.insert(image)
            return
        image.id = found.id
        found.image_id, found.size_bytes = image.image_id, image.size_bytes
        found.created_at = image.created_at
        self._t.images.replace(found)

    async def get_image(self, project_id: str, ref: str) -> Image | None:
        return self._t.images.first(lambda i: (i.project_id, i.ref) == (project_id, ref))

    async def list_images(self, project_id: str) -> list[Image]:
        return self._t.images.select(lambda i: i.project_id == project_id, lambda i: i.ref)

    async def delete_image(self, image_id: str) -> None:
        self._t.images.delete(lambda i: i.id == image_id)

    async def image_in_use(self, engine_id: str, digest: str) -> bool:
        return self._t.images.first(lambda i: i.image_id == engine_id) is not None or (
            self._t.versions.first(lambda v: v.package_digest == digest) is not None
        )


def _lasting_admin(key: ApiKey, project_id: str) -> bool:
    """An admin key of the project that is neither revoked nor ever expires."""
    lasting = key.revoked_at is None and key.expires_at is None
    return key.project_id == project_id and key.role == Role.ADMIN and lasting
