"""Rows to records and back, and what the SQL store's parts share."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from pratai.core.models import (
    ApiKey,
    BuildState,
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
)
from pratai.errors import Conflict
from pratai.store import tables as t
from pratai.store.prepared import HotStatements

T = TypeVar("T")


class SqlBase:
    """What every part of the SQL store relies on (SqlStore provides it)."""

    is_sqlite: bool
    _hot: HotStatements  # a warm invocation's and a job's writes (see SqlStore)

    async def _run(self, fn: Callable[[Connection], T]) -> T:
        raise NotImplementedError

    async def _count(
        self, table: sa.Table, statuses: Sequence[Status]
    ) -> dict[tuple[str, Status], int]:
        """Rows of `table` by (project id, status), for these statuses (on its status index)."""
        if not statuses:
            return {}
        q = (
            sa.select(table.c.project_id, table.c.status, sa.func.count())
            .where(table.c.status.in_([str(s) for s in statuses]))
            .group_by(table.c.project_id, table.c.status)
        )
        rows = await self._run(lambda c: c.execute(q).all())
        return {(project_id, Status(status)): int(n) for project_id, status, n in rows}


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
    payload = d.get("payload")  # a brief row has none
    d["payload"] = bytes(payload) if payload is not None else b""
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


def _insert_unique(
    c: Connection, insert: sa.Insert, row: dict[str, Any], taken: str, **details: Any
) -> None:
    """Insert the row, or raise Conflict(taken) when it breaks a unique constraint (the
    transaction is then rolled back whole). Other integrity errors keep the generic message."""
    try:
        c.execute(insert, row)
    except sa.exc.IntegrityError as exc:
        if "unique" not in str(exc.orig).lower():  # SQLite and PostgreSQL both say so
            raise
        raise Conflict(taken, **details) from None


def _trigger_row(trigger: Trigger) -> dict[str, Any]:
    row = {c.name: getattr(trigger, c.name) for c in t.triggers.columns}
    row["kind"] = str(trigger.kind)
    return row


def _insert_route(c: Connection, route: Route) -> None:
    row = {col.name: getattr(route, col.name) for col in t.routes.columns}
    row["cors_origins"] = json.dumps(route.cors_origins)
    taken = f"the project already routes {route.method} {route.path}"
    _insert_unique(c, t.routes.insert(), row, taken)


def _trigger(r: RowMapping) -> Trigger:
    d = dict(r)
    d["kind"] = TriggerKind(d["kind"])
    return Trigger(**d)


# --- prepared statements (compiled once, cached by SQLAlchemy) --------------------------
