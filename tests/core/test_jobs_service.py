"""The Jobs service's bookkeeping with a real store and broker: a job always ends finished in
the store, whenever it ends relative to the write that marks it running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from pratai.broker.memory import MemoryBroker
from pratai.core.jobs import JOBS_QUEUE, Jobs, JobSpec, Runtimes
from pratai.core.models import Job, Project, Status, new_id
from pratai.core.ports import Store
from pratai.settings import Settings
from pratai.store.sql import SqlStore

pytestmark = pytest.mark.asyncio(loop_scope="function")


class StoreTellingStarts(SqlStore):
    """The real SQL store, which also says when a write marking a job running begins."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.start_writes: dict[str, asyncio.Event] = {}

    async def update_job(self, job: Job, *, only_if: Status | None = None) -> bool:
        if job.status == Status.RUNNING:
            self.start_writes.setdefault(job.id, asyncio.Event()).set()
        return await super().update_job(job, only_if=only_if)


class FinishWhileStartIsStored:
    """An executor whose job ends while the write marking it running is under way: the window
    in which a job once stayed running forever."""

    def __init__(self, store: StoreTellingStarts) -> None:
        self.store = store

    async def run_job(self, job: Job, progress: Callable[[Job], None]) -> Job:
        progress(job)
        started = self.store.start_writes.setdefault(job.id, asyncio.Event())
        await asyncio.wait_for(started.wait(), 10)
        job.status, job.exit_code = Status.SUCCEEDED, 0
        return job


@pytest_asyncio.fixture(loop_scope="function")
async def parts(tmp_path: Path) -> AsyncIterator[tuple[Store, Jobs, MemoryBroker]]:
    store = StoreTellingStarts(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    broker = MemoryBroker()
    await store.open()
    await broker.open()
    jobs = Jobs(
        Settings(home=tmp_path), store, broker, Runtimes("3.11"), FinishWhileStartIsStored(store)
    )
    try:
        yield store, jobs, broker
    finally:
        await broker.close()
        await store.close()


async def test_a_job_ending_while_its_start_is_stored_still_ends_finished(parts) -> None:
    store, jobs, broker = parts
    project = Project(id=new_id(), name="p")
    await store.create_project(project)
    submitted = [await jobs.submit_command(project, JobSpec(command=["true"])) for _ in range(20)]
    deliveries = broker.consume(JOBS_QUEUE)
    runs = []
    for _ in submitted:
        delivery = await anext(deliveries)
        runs.append(asyncio.create_task(jobs.run_queued(delivery.body.decode())))
    await asyncio.gather(*runs)
    for job in submitted:
        stored = await store.get_job(job.id)
        assert stored is not None
        assert (stored.status, stored.exit_code) == (Status.SUCCEEDED, 0)
        assert stored.finished_at is not None and stored.started_at is not None
        assert (await jobs.wait(project, job.id, 0)).status == Status.SUCCEEDED
