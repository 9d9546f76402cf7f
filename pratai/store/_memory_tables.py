"""The tables of `MemoryStore`: each a `Table` of copies, so that what goes in and what comes
out is never an object the caller holds, as with rows of a database."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from pratai.core.models import (
    ApiKey,
    AuditEntry,
    ConnectorRecord,
    Event,
    Function,
    FunctionVersion,
    Image,
    Invocation,
    Job,
    NodeToken,
    Project,
    Route,
    SavedJob,
    SavedPayload,
    Trigger,
    User,
)
from pratai.errors import Conflict

R = TypeVar("R")
K = TypeVar("K", bound=Hashable)
Key = Callable[[R], Hashable]


class Table(Generic[R]):
    """Rows by primary key, in insertion order, with unique keys (a None part never clashes,
    as NULL in SQL)."""

    def __init__(
        self, name: str, key: Key[R], *unique: Key[R], taken: Callable[[R], Conflict] | None = None
    ) -> None:
        self.name = name
        self.key = key
        self.unique = unique
        self.taken = taken  # what a Conflict on a unique key says, as the SQL store does
        self.rows: dict[Hashable, R] = {}

    def check(self, row: R, replacing: Hashable | None = None) -> None:
        """Raises Conflict when `row` would break a key (`replacing`: the row it updates)."""
        if replacing is None and self.key(row) in self.rows:
            raise Conflict(generic(self.name, self.key(row)))
        for unique in self.unique:
            value = unique(row)
            if has_none(value):
                continue
            for pk, other in self.rows.items():
                if pk != replacing and unique(other) == value:
                    raise self.taken(row) if self.taken else Conflict(generic(self.name, value))

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

    def tally(self, match: Callable[[R], bool], by: Callable[[R], K]) -> dict[K, int]:
        """How many rows match, by `by(row)` (the rows are not copied)."""
        counts: dict[K, int] = {}
        for row in self.rows.values():
            if match(row):
                counts[by(row)] = counts.get(by(row), 0) + 1
        return counts

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


def has_none(value: Hashable) -> bool:
    return value is None or (isinstance(value, tuple) and None in value)


def generic(table: str, key: Hashable) -> str:
    return f"already exists or violates a constraint: {table} {key}"


def missing(table: str, key: Hashable) -> Conflict:
    return Conflict(generic(f"no {table}", key))


class Tables:
    def __init__(self) -> None:
        self.projects = Table[Project]("project", lambda p: p.id, lambda p: p.name)
        self.keys = Table[ApiKey]("api key", lambda k: k.id)
        self.node_tokens = Table[NodeToken]("node token", lambda n: n.id)
        self.functions = Table[Function](
            "function",
            lambda f: f.id,
            lambda f: (f.project_id, f.name),
            taken=lambda f: Conflict(f"function {f.name!r} already exists", function=f.name),
        )
        self.versions = Table[FunctionVersion](
            "function version", lambda v: (v.function_id, v.version)
        )
        self.invocations = Table[Invocation]("invocation", lambda i: i.id)
        self.events = Table[Event](
            "event", lambda e: e.seq, lambda e: (e.project_id, e.source, e.id)
        )
        self.event_seq = itertools.count(1)
        self.triggers = Table[Trigger]("trigger", lambda t: t.id, lambda t: t.token)
        self.ticks: dict[tuple[str, float], float] = {}  # (trigger, tick) -> fired at
        self.leases: dict[str, tuple[str, float]] = {}  # name -> (holder, until)
        self.connectors = Table[ConnectorRecord](
            "connector", lambda c: c.id, lambda c: (c.project_id, c.name)
        )
        self.users = Table[User]("user", lambda u: u.id, lambda u: u.name)
        self.audit = Table[AuditEntry]("audit entry", lambda a: a.seq)
        self.audit_seq = itertools.count(1)
        self.secrets: dict[tuple[str, str], tuple[bytes, float]] = {}  # -> (ciphertext, at)
        self.routes = Table[Route](
            "route",
            lambda r: r.id,
            lambda r: (r.project_id, r.method, r.path),
            taken=lambda r: Conflict(f"the project already routes {r.method} {r.path}"),
        )
        self.counters: dict[tuple[str, int], int] = {}  # (key, window) -> requests
        self.jobs = Table[Job]("job", lambda j: j.id)
        self.saved_jobs = Table[SavedJob](
            "saved job",
            lambda s: s.id,
            lambda s: (s.project_id, s.name),
            taken=lambda s: Conflict(f"saved job {s.name!r} already exists", job=s.name),
        )
        self.images = Table[Image]("image", lambda i: i.id, lambda i: (i.project_id, i.ref))
        self.saved_payloads = Table[SavedPayload](
            "saved payload", lambda s: s.id, lambda s: (s.function_id, s.name)
        )


class MemoryBase:
    """What every part of `MemoryStore` stands on: its tables, open or not."""

    def __init__(self) -> None:
        self._tables = Tables()
        self._open = False

    @property
    def _t(self) -> Tables:
        if not self._open:
            raise RuntimeError("MemoryStore is not open")
        return self._tables

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False
