"""The SQL store's usage samples: the few columns of `invocations` that statistics read, from
the index ix_invocations_project_created (migration 0011) that holds them, never the rows."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from pratai.core.models import Status
from pratai.core.ports import InvocationSample
from pratai.store import tables as t
from pratai.store._rows import SqlBase

_STATUS = {str(s): s for s in Status}
_i = t.invocations
_COLUMNS = (
    _i.c.id,
    _i.c.function_id,
    _i.c.status,
    _i.c.created_at,
    _i.c.duration_ms,
    _i.c.cold_start,
)


class StatsRows(SqlBase):
    async def invocation_samples(
        self,
        project_id: str,
        *,
        since: float | None = None,
        function_id: str | None = None,
        statuses: Sequence[Status] | None = None,
        limit: int | None = None,
    ) -> list[InvocationSample]:
        q = sa.select(*_COLUMNS).where(_i.c.project_id == project_id)
        if since is not None:
            q = q.where(_i.c.created_at >= since)
        if function_id is not None:
            q = q.where(_i.c.function_id == function_id)
        if statuses is not None:
            q = q.where(_i.c.status.in_([str(s) for s in statuses]))
        q = q.order_by(_i.c.created_at.desc(), _i.c.id.desc())
        if limit is not None:
            q = q.limit(max(0, limit))
        rows = await self._run(lambda c: c.execute(q).all())
        return [InvocationSample(r[0], r[1], _STATUS[r[2]], r[3], r[4], _flag(r[5])) for r in rows]


def _flag(value: object) -> bool | None:
    return None if value is None else bool(value)
