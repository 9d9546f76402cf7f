"""Saved jobs: a named command, run on demand (`job-run`) or on a cron schedule.

Scheduled runs follow the timer policy of triggers (see core/triggers.py): at most one run per
tick across schedulers, missed ticks coalesced into one run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from pratai.core.jobs import Jobs, JobSpec
from pratai.core.models import Job, Project, SavedJob, check_name, new_id, now
from pratai.core.ports import ProjectStore, SavedJobStore, TickStore
from pratai.core.triggers import cron_tick
from pratai.errors import InvalidInput, NotFound


class _Store(SavedJobStore, TickStore, ProjectStore, Protocol):
    """Saved jobs, the ticks of their schedules, and the projects they run in."""


class SavedJobs:
    def __init__(self, store: _Store, jobs: Jobs) -> None:
        self.store = store
        self.jobs = jobs

    async def save(self, project: Project, name: str, spec: JobSpec) -> SavedJob:
        check_name(name, "job")
        saved = SavedJob(id=new_id(), project_id=project.id, name=name, **self.jobs.settle(spec))
        await self.store.create_saved_job(saved)
        return saved

    async def get(self, project: Project, name: str) -> SavedJob:
        saved = await self.store.get_saved_job(project.id, name)
        if saved is None:
            raise NotFound(f"saved job {name!r} not found", job=name)
        return saved

    async def all(self, project: Project) -> list[SavedJob]:
        return await self.store.list_saved_jobs(project.id)

    async def delete(self, project: Project, name: str) -> None:
        await self.store.delete_saved_job((await self.get(project, name)).id)

    async def run(self, project: Project, name: str, job_id: str | None = None) -> Job:
        saved = await self.get(project, name)
        return await self.jobs.submit_command(
            project, _spec(saved), saved_name=saved.name, job_id=job_id
        )

    async def schedule(
        self, project: Project, name: str, cron: str | None, timezone: str | None = None
    ) -> SavedJob:
        """Runs the job on `cron` from now on; None stops the schedule."""
        saved = await self.get(project, name)
        if cron is not None and not croniter.is_valid(cron):
            raise InvalidInput(f"invalid cron expression {cron!r}")
        if timezone is not None:
            try:
                ZoneInfo(timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise InvalidInput(f"unknown time zone {timezone!r}") from None
        saved.cron, saved.timezone = cron, timezone if cron else None
        saved.updated_at = now()  # ticks before a (re)schedule are not owed
        await self.store.update_saved_job(saved)
        return saved

    async def tick(self, at: float) -> int:
        """Starts the due runs of every scheduled job; returns how many this caller started."""
        started = 0
        for saved in await self.store.list_saved_jobs(None):
            assert saved.cron is not None
            due = cron_tick(saved.cron, saved.timezone, saved.updated_at, at)
            if due is None or not await self.store.claim_tick(f"job-{saved.id}", due, at):
                continue
            project = await self.store.get_project(saved.project_id)
            if project is None:
                continue
            job_id = hashlib.sha256(f"{saved.id}:{due}".encode()).hexdigest()[:32]
            await self.jobs.submit_command(
                project, _spec(saved), saved_name=saved.name, job_id=job_id
            )
            started += 1
        return started


def next_run(saved: SavedJob, at: float) -> float | None:
    if saved.cron is None:
        return None
    zone = ZoneInfo(saved.timezone or "UTC")
    return float(croniter(saved.cron, dt.datetime.fromtimestamp(at, zone)).get_next(float))


def _spec(saved: SavedJob) -> JobSpec:
    return JobSpec(
        command=saved.command,
        runtime=saved.runtime,
        env=saved.env,
        stdin=saved.stdin,
        memory_mb=saved.memory_mb,
        timeout_s=saved.timeout_s,
        network=saved.network,
    )
