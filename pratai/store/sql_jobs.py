"""The SQL store's jobs and saved jobs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from pratai.core.models import JOB_OUTCOME, Job, JobKind, SavedJob, Status
from pratai.errors import Conflict
from pratai.store import tables as t
from pratai.store._rows import SqlBase

_JSON_FIELDS = ("command", "env", "requirements")


def _job(r: RowMapping) -> Job:
    d = dict(r)
    for name in _JSON_FIELDS:
        d[name] = json.loads(d[name])
    d["kind"] = JobKind(d["kind"])
    d["status"] = Status(d["status"])
    d["error"] = json.loads(d["error"]) if d["error"] else None
    return Job(**d)


def _job_row(job: Job) -> dict[str, Any]:
    d = {c.name: getattr(job, c.name) for c in t.jobs.columns}
    for name in _JSON_FIELDS:
        d[name] = json.dumps(d[name])
    d["kind"] = str(job.kind)
    d["status"] = str(job.status)
    d["error"] = json.dumps(job.error) if job.error is not None else None
    return d


def _saved(r: RowMapping) -> SavedJob:
    d = dict(r)
    d["command"] = json.loads(d["command"])
    d["env"] = json.loads(d["env"])
    return SavedJob(**d)


def _saved_row(saved: SavedJob) -> dict[str, Any]:
    d = {c.name: getattr(saved, c.name) for c in t.saved_jobs.columns}
    d["command"] = json.dumps(saved.command)
    d["env"] = json.dumps(saved.env)
    return d


# Built once with bound parameters: a statement given its values each time is analysed again
# on every call (its cache key covers the values), which cost an update half a millisecond.
_UPDATE_JOB = (
    t.jobs.update()
    .where(t.jobs.c.id == sa.bindparam("_id"))
    .values({name: sa.bindparam(name) for name in JOB_OUTCOME})
)
_UPDATE_JOB_IF = _UPDATE_JOB.where(t.jobs.c.status == sa.bindparam("_only_if"))


class JobRows(SqlBase):
    async def create_job(self, job: Job) -> None:
        row = _job_row(job)
        await self._run(lambda c: self._hot.insert_job.run(c, row))

    async def get_job(self, job_id: str) -> Job | None:
        q = sa.select(t.jobs).where(t.jobs.c.id == job_id)
        r = await self._run(lambda c: c.execute(q).mappings().first())
        return _job(r) if r else None

    async def update_job(self, job: Job, *, only_if: Status | None = None) -> bool:
        """Writes the job's outcome columns; with `only_if`, only while the stored status is
        that one (so a cancel is never overwritten by a late result). True if written."""
        row = _job_row(job)
        params = {name: row[name] for name in JOB_OUTCOME}
        params["_id"] = job.id
        statement = _UPDATE_JOB
        if only_if is not None:
            statement, params["_only_if"] = _UPDATE_JOB_IF, str(only_if)
        count = await self._run(lambda c: c.execute(statement, params).rowcount)
        return bool(count)

    async def list_jobs(
        self, project_id: str, limit: int = 50, status: Status | None = None
    ) -> list[Job]:
        j = t.jobs
        q = sa.select(j).where(j.c.project_id == project_id)
        if status is not None:
            q = q.where(j.c.status == str(status))
        q = q.order_by(j.c.created_at.desc()).limit(limit)
        rows = await self._run(lambda c: c.execute(q).mappings().all())
        return [_job(r) for r in rows]

    async def unfinished_jobs(self) -> list[Job]:
        q = sa.select(t.jobs).where(t.jobs.c.status.in_([str(Status.QUEUED), str(Status.RUNNING)]))
        rows = await self._run(lambda c: c.execute(q).mappings().all())
        return [_job(r) for r in rows]

    async def count_jobs(self, statuses: Sequence[Status]) -> dict[tuple[str, Status], int]:
        return await self._count(t.jobs, statuses)

    async def create_saved_job(self, saved: SavedJob) -> None:
        row = _saved_row(saved)
        s = t.saved_jobs
        exists = sa.select(s.c.id).where(s.c.project_id == saved.project_id, s.c.name == saved.name)

        def insert(c: sa.Connection) -> bool:
            if c.execute(exists).first() is not None:
                return False
            c.execute(s.insert(), row)
            return True

        if not await self._run(insert):
            raise Conflict(f"saved job {saved.name!r} already exists", job=saved.name)

    async def get_saved_job(self, project_id: str, name: str) -> SavedJob | None:
        s = t.saved_jobs
        q = sa.select(s).where(s.c.project_id == project_id, s.c.name == name)
        r = await self._run(lambda c: c.execute(q).mappings().first())
        return _saved(r) if r else None

    async def update_saved_job(self, saved: SavedJob) -> None:
        row = _saved_row(saved)
        q = t.saved_jobs.update().where(t.saved_jobs.c.id == saved.id).values(row)
        await self._run(lambda c: c.execute(q))

    async def delete_saved_job(self, saved_id: str) -> None:
        q = t.saved_jobs.delete().where(t.saved_jobs.c.id == saved_id)
        await self._run(lambda c: c.execute(q))

    async def list_saved_jobs(self, project_id: str | None = None) -> list[SavedJob]:
        """One project's saved jobs by name, or (None) every scheduled one, for the scheduler."""
        s = t.saved_jobs
        q = sa.select(s)
        if project_id is None:
            q = q.where(s.c.cron.is_not(None))
        else:
            q = q.where(s.c.project_id == project_id)
        rows = await self._run(lambda c: c.execute(q.order_by(s.c.name)).mappings().all())
        return [_saved(r) for r in rows]
