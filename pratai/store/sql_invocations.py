"""The query behind `list_invocations`: a project's invocations, filtered as an
InvocationFilter says, in an order the indexes on (project, [function,] created_at) serve."""

from __future__ import annotations

import sqlalchemy as sa

from pratai.core.models import InvocationFilter
from pratai.store import tables as t

_i = t.invocations
# A list shows none of these, and they are the large ones (up to megabytes each).
_LARGE = ("payload", "result", "stdout", "stderr")
_BRIEF = [c for c in _i.columns if c.name not in _LARGE]


def _trigger(trigger: str) -> sa.ColumnElement[bool]:
    """trigger_of (pratai.core.models) as SQL."""
    if trigger == "sync":
        return _i.c.mode == "sync"
    queued = [_i.c.mode != "sync"]
    for kind, column in (("chain", _i.c.parent_id), ("event", _i.c.event_id)):
        if trigger == kind:
            return sa.and_(*queued, column.is_not(None))
        queued.append(column.is_(None))
    if trigger == "timer":
        return sa.and_(*queued, _i.c.timer_id.is_not(None))
    assert trigger == "async", trigger
    return sa.and_(*queued, _i.c.timer_id.is_(None))


def select_invocations(
    project_id: str,
    function_id: str | None,
    where: InvocationFilter | None,
    *,
    brief: bool,
) -> sa.Select[tuple[object, ...]]:
    q = sa.select(*(_BRIEF if brief else _i.columns)).where(_i.c.project_id == project_id)
    if function_id is not None:
        q = q.where(_i.c.function_id == function_id)
    if where is None:
        return q
    if where.statuses:
        q = q.where(_i.c.status.in_([str(s) for s in where.statuses]))
    if where.trigger is not None:
        q = q.where(_trigger(where.trigger))
    if where.created_after is not None:
        q = q.where(_i.c.created_at >= where.created_after)
    if where.created_before is not None:
        q = q.where(_i.c.created_at < where.created_before)
    if where.older_than is not None:
        at, last_id = where.older_than
        # Written so that the index serves the range on created_at; ties fall to the id.
        q = q.where(_i.c.created_at <= at, sa.or_(_i.c.created_at < at, _i.c.id < last_id))
    return q
