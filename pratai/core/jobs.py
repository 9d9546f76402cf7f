"""Jobs: a command, or a Python callable from the SDK, run once in the sandbox.

A job is stored first (queued), then its id goes to the broker's `jobs` queue; a node runs it
and writes its outcome. Command jobs store their stdout/stderr while they run, a few times a
second, so `job-show --follow` streams them from any api process. A cancel marks the stored
job cancelled; a queued job then never runs, a running one is killed (at once in this process,
within a flush interval on another node).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from pratai.broker import Broker
from pratai.core.capacity import NodeCapacity, check_fits
from pratai.core.models import Job, JobKind, Project, Status, new_id, now
from pratai.core.ports import JobStore
from pratai.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge, RuntimeMismatch
from pratai.settings import Settings

log = logging.getLogger("pratai.jobs")

JOBS_QUEUE = "jobs"
PICKLE_TYPE = "application/vnd.pratai.pickle"
MAX_JOB_TIMEOUT_S = 86_400.0
MIN_JOB_MEMORY_MB, MAX_JOB_MEMORY_MB = 16, 8192
DEFAULT_JOB_MEMORY_MB = 256
DONE_CACHE = 4096  # finished jobs kept in memory for waiting callers
PENDING_CACHE = 65536
MARK_DELAY_S = 0.05  # a job that ends sooner is never stored as running
FLUSH_INTERVAL_S = 0.25  # how often a running command's output reaches the store
CANCEL_CHECK_S = 1.0  # how often a job with no new output looks whether it was cancelled
_REQUIREMENT_CHARS = set(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.[],<>=!~ "
)


@dataclass(frozen=True)
class Runtimes:
    """The runtimes this platform runs jobs in, e.g. {"python3.11": "3.11", "node20": "20"}."""

    python: str  # major.minor of the sandbox Python
    node: str | None = None  # major version of Node.js, if installed

    def names(self) -> list[str]:
        return [f"python{self.python}", *([f"node{self.node}"] if self.node else [])]

    def _aliases(self) -> dict[str, str]:
        """Each name a user may type -> the canonical runtime name."""
        python = f"python{self.python}"
        aliases = dict.fromkeys(("python", "python3", python), python)
        if self.node:
            node = f"node{self.node}"
            aliases.update(dict.fromkeys(("node", "nodejs", node), node))
        return aliases

    def accepted(self) -> list[str]:
        """Every name `resolve` takes (besides none at all)."""
        return list(self._aliases())

    def resolve(self, name: str | None) -> str:
        """The canonical runtime name for what a user typed ("python", "python3.11", "node")."""
        if not name:
            return f"python{self.python}"
        if name in (aliases := self._aliases()):
            return aliases[name]
        raise RuntimeMismatch(
            f"no runtime {name!r} here: this platform runs jobs in {', '.join(self.names())}",
            runtime=name,
            available=self.names(),
        )


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """What a user asks to run; None means the default."""

    command: list[str] = field(default_factory=list)
    runtime: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    stdin: bytes = b""
    memory_mb: int | None = None
    timeout_s: float | None = None
    network: bool = False


class JobExecutor(Protocol):
    """Runs one job on this machine and fills in its outcome. It calls `progress(job)` when
    the job really starts (it may first wait for a free instance) and on new output."""

    async def run_job(self, job: Job, progress: Callable[[Job], None]) -> Job: ...


def requirements_hash(requirements: list[str]) -> str | None:
    if not requirements:
        return None
    text = "\n".join(sorted(r.strip() for r in requirements)) + "\n"
    return hashlib.sha256(text.encode()).hexdigest()  # as functions hash requirements.txt


def check_limits(memory_mb: int | None, timeout_s: float | None) -> None:
    if memory_mb is not None and not MIN_JOB_MEMORY_MB <= memory_mb <= MAX_JOB_MEMORY_MB:
        raise InvalidInput(f"memory must be between {MIN_JOB_MEMORY_MB} and {MAX_JOB_MEMORY_MB} MB")
    if timeout_s is not None and not 0 < timeout_s <= MAX_JOB_TIMEOUT_S:
        raise InvalidInput(f"timeout must be between 0 and {MAX_JOB_TIMEOUT_S:g} seconds")


def check_env(env: dict[str, str]) -> None:
    for key in env:
        if not (key.isascii() and key.replace("_", "a").isalnum()):  # as the API documents
            raise InvalidInput(f"invalid environment variable name {key!r}")


class Jobs:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        broker: Broker,
        runtimes: Runtimes,
        executor: JobExecutor | None = None,
        capacity: NodeCapacity | None = None,
    ) -> None:
        self.settings = settings
        self.capacity = capacity  # None: no node's budget is known, nothing is refused
        self.store = store
        self.broker = broker
        self.runtimes = runtimes
        self.executor = executor
        self.ended_listeners: list[Callable[[Job], Awaitable[None]]] = []  # metrics
        # In-process fast paths (each also works through the store alone, across processes):
        # jobs submitted here and not yet picked up, the event set when one ends here, and the
        # last jobs that ended here, so a waiting caller needs no store read.
        self._submitted: dict[str, Job] = {}
        self._finished: dict[str, tuple[str, asyncio.Event]] = {}  # id -> (project, event)
        self._done: OrderedDict[str, Job] = OrderedDict()
        self._running: dict[str, asyncio.Task[Job | None]] = {}  # id -> its run here

    async def unfinished(self) -> dict[tuple[str, Status], int]:
        """How many are queued and running, by (project id, status), in every project."""
        return await self.store.count_jobs([Status.QUEUED, Status.RUNNING])

    # ------------------------------------------------------------------ submitting

    async def submit_command(
        self,
        project: Project,
        spec: JobSpec,
        *,
        saved_name: str | None = None,
        job_id: str | None = None,
    ) -> Job:
        fields = self.settle(spec)
        job = Job(
            id=job_id or new_id(),
            project_id=project.id,
            kind=JobKind.COMMAND,
            saved_name=saved_name,
            **fields,
        )
        return await self._enqueue(job)

    def settle(self, spec: JobSpec) -> dict[str, Any]:
        """The spec checked, with defaults filled in: the fields a Job and a SavedJob share."""
        if not spec.command or not all(isinstance(a, str) and a for a in spec.command):
            raise InvalidInput("a job needs a command: give it after --, e.g. `-- echo hi`")
        check_limits(spec.memory_mb, spec.timeout_s)
        check_env(spec.env)
        if len(spec.stdin) > self.settings.max_payload_bytes:
            raise PayloadTooLarge(
                f"stdin is {len(spec.stdin)} bytes; the limit is "
                f"{self.settings.max_payload_bytes} bytes",
                limit=self.settings.max_payload_bytes,
            )
        memory_mb = spec.memory_mb or DEFAULT_JOB_MEMORY_MB
        check_fits(self.capacity, "the job", memory_mb)
        return {
            "runtime": self.runtimes.resolve(spec.runtime),
            "command": list(spec.command),
            "env": dict(spec.env),
            "stdin": spec.stdin,
            "memory_mb": memory_mb,
            "timeout_s": spec.timeout_s or 300.0,
            "network": spec.network,
        }

    async def submit_callable(
        self,
        project: Project,
        payload: bytes,
        *,
        python: str,
        requirements: list[str],
        memory_mb: int | None = None,
        timeout_s: float | None = None,
        network: bool = False,
    ) -> Job:
        if python != self.runtimes.python:
            raise RuntimeMismatch(
                f"this platform runs Python {self.runtimes.python} jobs and your client is "
                f"Python {python}: pickled code only loads in the same minor version, so "
                f"submit from Python {self.runtimes.python}",
                client=python,
                server=self.runtimes.python,
            )
        check_limits(memory_mb, timeout_s)
        memory_mb = memory_mb or DEFAULT_JOB_MEMORY_MB
        check_fits(self.capacity, "the job", memory_mb)
        if not payload:
            raise InvalidInput("the job is empty: send a pickled callable")
        for requirement in requirements:
            if not requirement.strip() or not set(requirement) <= _REQUIREMENT_CHARS:
                raise InvalidInput(f"invalid requirement {requirement!r}")
        job = Job(
            id=new_id(),
            project_id=project.id,
            kind=JobKind.CALLABLE,
            runtime=f"python{self.runtimes.python}",
            stdin=payload,
            requirements=sorted(r.strip() for r in requirements),
            requirements_hash=requirements_hash(requirements),
            memory_mb=memory_mb,
            timeout_s=timeout_s or 300.0,
            network=network,
        )
        return await self._enqueue(job)

    async def _enqueue(self, job: Job) -> Job:
        try:
            await self.store.create_job(job)
        except Conflict:  # a repeated deterministic id (a scheduler tick): the first one stands
            existing = await self.store.get_job(job.id)
            assert existing is not None
            return existing
        if self.executor is not None:
            self._finished[job.id] = (job.project_id, asyncio.Event())
            self._submitted[job.id] = job
            for table in (self._finished, self._submitted):  # jobs other nodes took
                while len(table) > PENDING_CACHE:
                    del table[next(iter(table))]
        await self.broker.publish(JOBS_QUEUE, job.id.encode(), message_id=job.id)
        return job

    # ------------------------------------------------------------------ reading

    async def get(self, project: Project, job_id: str) -> Job:
        job = await self.store.get_job(job_id)
        if job is None or job.project_id != project.id:
            raise NotFound(f"job {job_id!r} not found", job=job_id)
        return job

    async def recent(
        self, project: Project, limit: int = 50, status: str | None = None
    ) -> list[Job]:
        wanted = None
        if status is not None:
            try:
                wanted = Status(status)
            except ValueError:
                names = ", ".join(s.value for s in Status)
                raise InvalidInput(f"unknown status {status!r}: use one of {names}") from None
        return await self.store.list_jobs(project.id, min(max(limit, 1), 1000), wanted)

    async def wait(self, project: Project, job_id: str, timeout_s: float) -> Job:
        """The job once it has finished, or as it is when `timeout_s` runs out."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        pause = 0.05
        while True:
            done = self._done.get(job_id)
            if done is not None and done.project_id == project.id:
                return done
            left = deadline - time.monotonic()
            local = self._finished.get(job_id)
            if local is not None and local[0] == project.id and left > 0:
                with contextlib.suppress(TimeoutError):
                    # Another process may run it (a scheduler of a cluster, another node):
                    # look in the store now and then, soon for a short job.
                    async with asyncio.timeout(min(left, pause)):
                        await local[1].wait()
                pause = min(1.0, pause * 2)
                if job_id in self._done:
                    continue
            job = await self.get(project, job_id)
            if job.status.finished or left <= 0:
                return job
            await asyncio.sleep(min(left, 0.05))

    async def cancel(self, project: Project, job_id: str) -> Job:
        job = await self.get(project, job_id)
        if job.status.finished:
            raise Conflict(f"job {job_id} already {job.status}", status=str(job.status))
        previous = job.status
        job.status = Status.CANCELLED
        job.finished_at = now()
        job.error = {"type": "Cancelled", "message": "the job was cancelled", "traceback": ""}
        if not await self.store.update_job(job, only_if=previous):
            return await self.cancel(project, job_id)  # it moved on meanwhile: look again
        self._submitted.pop(job_id, None)
        task = self._running.get(job_id)
        if task is not None:
            task.cancel()
        self._wake(job_id)
        return job

    def ended_elsewhere(self, job_id: str) -> None:
        """Another process stored the job's outcome: a caller waiting for it here reads it
        now, rather than at its next look in the store."""
        self._wake(job_id)

    def _wake(self, job_id: str, done: Job | None = None) -> None:
        if done is not None:
            self._done[job_id] = done
            while len(self._done) > DONE_CACHE:
                self._done.popitem(last=False)
        local = self._finished.pop(job_id, None)
        if local is not None:
            local[1].set()

    # ------------------------------------------------------------------ running (nodes)

    async def run_queued(self, job_id: str) -> None:
        """Called by a node for a queued job; does nothing for a finished or cancelled one."""
        if self.executor is None:
            raise Conflict("this process runs no node")
        job = self._submitted.pop(job_id, None) or await self.store.get_job(job_id)
        if job is None or job.status.finished:
            self._wake(job_id)
            return
        was = job.status  # running already means its node died (recovery requeued it)
        job.stdout = job.stderr = ""
        task = asyncio.create_task(self._run(job, was))
        self._running[job.id] = task
        done = None
        try:
            done = await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this worker itself is stopping (which cancelled the run too)
            # else only the run was cancelled: the job was cancelled
        finally:
            self._running.pop(job.id, None)
            self._wake(job.id, done)

    async def _run(self, job: Job, was: Status) -> Job | None:
        """Runs the job and stores its outcome; None if it was cancelled meanwhile. Jobs that
        end within MARK_DELAY_S of starting are stored once, finished; longer ones are marked
        running, then their output is stored every FLUSH_INTERVAL_S while it grows."""
        assert self.executor is not None
        started = asyncio.Event()
        snapshot = replace(job)
        writing = False
        dirty = False

        async def mark_running() -> bool:
            nonlocal writing
            await started.wait()
            await asyncio.sleep(MARK_DELAY_S)
            writing = True
            if await self.store.update_job(snapshot, only_if=was):
                return True
            self._cancel_run(job.id)  # cancelled before it started
            return False

        async def flush_output() -> None:
            nonlocal dirty
            # Shielded: cancelling this flusher must not cancel a start being stored.
            if not await asyncio.shield(marking):
                return
            quiet = 0.0
            while True:
                await asyncio.sleep(FLUSH_INTERVAL_S)
                if dirty:
                    dirty, quiet = False, 0.0
                    stored = await self.store.update_job(job, only_if=Status.RUNNING)
                elif (quiet := quiet + FLUSH_INTERVAL_S) >= CANCEL_CHECK_S:
                    # a quiet job: another process (an api of a cluster) may have cancelled it
                    quiet = 0.0
                    current = await self.store.get_job(job.id)
                    stored = current is not None and current.status == Status.RUNNING
                else:
                    stored = True
                if not stored:
                    self._cancel_run(job.id)  # cancelled by another process
                    return

        def progress(current: Job) -> None:
            nonlocal dirty
            dirty = True
            if not started.is_set():
                started.set()
                current.status = snapshot.status = Status.RUNNING
                current.started_at = snapshot.started_at = now()

        marking = asyncio.create_task(mark_running())
        flusher = asyncio.create_task(flush_output())
        try:
            done = await self.executor.run_job(job, progress)
        except Exception as exc:  # a job must always end in a state its owner can see
            log.exception("job %s failed to run", job.id)
            job.status = Status.FAILED
            job.error = {"type": "InternalError", "message": repr(exc), "traceback": ""}
            done = job
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher  # a store write under way ends first
            if not writing:
                marking.cancel()
        if writing:
            if not await marking:
                return None
            was = Status.RUNNING
        done.finished_at = done.finished_at or now()
        if not await self.store.update_job(done, only_if=was):
            return None  # cancelled meanwhile
        for listener in self.ended_listeners:
            await listener(done)
        return done

    def _cancel_run(self, job_id: str) -> None:
        task = self._running.get(job_id)
        if task is not None:
            task.cancel()

    async def recover(self) -> int:
        """After a restart: queue again what was queued or running."""
        jobs = await self.store.unfinished_jobs()
        for job in jobs:
            await self.broker.publish(JOBS_QUEUE, job.id.encode(), message_id=job.id)
        return len(jobs)
