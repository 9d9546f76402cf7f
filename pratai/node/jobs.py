"""How a node runs jobs: commands in a one-shot sandbox, callables in warm Python instances."""

from __future__ import annotations

import asyncio
import base64
import codecs
import contextlib
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import cloudpickle

from pratai.broker import Broker
from pratai.core.jobs import JOBS_QUEUE, PICKLE_TYPE, Jobs, Runtimes
from pratai.core.models import Job, JobKind, Status
from pratai.core.workspace import Workspace
from pratai.drivers import Driver, InstanceSpec
from pratai.drivers.commands import run_command
from pratai.drivers.process import ProcessDriver
from pratai.drivers.runtime_files import PACKAGED, write_once
from pratai.errors import SandboxError
from pratai.node.budget import MemoryBudget
from pratai.node.pool import Pools, VersionPool
from pratai.node.records import fail, finish
from pratai.node.worker import Worker
from pratai.settings import Settings

LEASE_S = 90_000.0  # longer than the longest job
_JOB_MODULE = PACKAGED / "pyjob" / "pratai_job.py"  # copied into the sandbox folder


class _Output:
    """A stream's text so far, decoded incrementally and kept to `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.parts: list[str] = []
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def add(self, chunk: bytes) -> None:
        if self.size >= self.limit:
            return
        room = self.limit - self.size
        self.size += len(chunk)
        self.parts.append(self.decoder.decode(chunk[:room]))
        if self.size >= self.limit:
            self.parts.append(f"\n[output truncated at {self.limit} bytes]\n")

    def text(self) -> str:
        return "".join(self.parts)


class JobRunner:
    """The node's `JobExecutor`."""

    def __init__(
        self,
        settings: Settings,
        workspace: Workspace,
        *,
        commands: ProcessDriver,
        callables: Driver | None = None,
        budget: MemoryBudget | None = None,
    ) -> None:
        """`commands` runs command jobs (they need its sandbox's launcher); `callables`, the
        warm pools of SDK callables, may be any Driver (it defaults to `commands`). `budget`
        is shared with the node's functions (default: one of its own)."""
        self.settings = settings
        self.budget = MemoryBudget(settings.node_memory_mb) if budget is None else budget
        self.commands = commands
        self.callables: Driver = commands if callables is None else callables
        self.workspace = workspace
        self.root = settings.sandbox_dir / "jobcode"
        self._pools: Pools[tuple[str | None, int, bool]] = Pools(settings.idle_timeout)
        self._worker = Worker(JOBS_QUEUE, lease_s=LEASE_S, what="job", pools=self._pools)

    # ------------------------------------------------------------------ code folders

    def callable_code(self) -> Path:
        """The job handler plus the cloudpickle it unpickles with (pure Python, copied)."""
        source = Path(cloudpickle.__file__).parent
        digest = hashlib.sha256(_JOB_MODULE.read_bytes())
        digest.update(cloudpickle.__version__.encode())

        def fill(folder: Path) -> None:
            shutil.copy(_JOB_MODULE, folder / "pratai_job.py")
            shutil.copytree(source, folder / "cloudpickle", ignore=shutil.ignore_patterns("*.pyc"))

        return write_once(self.root / f"callable-{digest.hexdigest()[:16]}", fill)

    def empty_code(self) -> Path:
        return write_once(self.root / "empty", lambda folder: None)

    # ------------------------------------------------------------------ running

    async def run_job(self, job: Job, progress: Callable[[Job], None]) -> Job:
        try:
            if job.kind == JobKind.COMMAND:
                return await self._command(job, progress)
            return await self._callable(job, progress)
        except SandboxError as exc:
            fail(job, exc)
            return job

    async def _command(self, job: Job, progress: Callable[[Job], None]) -> Job:
        code_dir = await asyncio.to_thread(self.empty_code)
        env = {**job.env, "PRATAI_JOB_ID": job.id}
        spec = _sandbox(job, f"job-{job.id}", code_dir, name=job.saved_name or job.id, env=env)
        streams = {name: _Output(self.settings.max_output_bytes) for name in ("stdout", "stderr")}

        def sink(name: str, chunk: bytes) -> None:
            streams[name].add(chunk)
            job.stdout, job.stderr = streams["stdout"].text(), streams["stderr"].text()
            progress(job)

        async with self.budget.held(job.memory_mb, job.timeout_s):
            progress(job)  # it starts now, with room in the node's memory
            done = await run_command(
                self.commands, spec, job.command, job.stdin, job.timeout_s, sink
            )
        job.stdout, job.stderr = streams["stdout"].text(), streams["stderr"].text()
        finish(job, done)
        job.exit_code = done.exit_code
        return job

    async def _new_pool(self, job: Job) -> VersionPool:
        env_dir = None
        if job.requirements_hash is not None:
            text = "\n".join(job.requirements) + "\n"
            built = await self.workspace.environment(text, job.requirements_hash)
            if not built.ok:
                raise SandboxError(
                    f"installing {', '.join(job.requirements)} failed:\n{built.log[-4000:]}",
                    type="BuildFailed",
                )
            env_dir = built.env_dir
        key = f"jobs-{(job.requirements_hash or 'plain')[:12]}-{job.memory_mb}"
        code_dir = await asyncio.to_thread(self.callable_code)
        spec = _sandbox(job, key, code_dir, env_dir, handler="pratai_job.main")
        concurrency = self.settings.default_concurrency
        return VersionPool(self.callables, spec, concurrency, budget=self.budget)

    async def _callable(self, job: Job, progress: Callable[[Job], None]) -> Job:
        key = (job.requirements_hash, job.memory_mb, job.network)
        pool = await self._pools.get(key, lambda: self._new_pool(job))
        outcome = await pool.call(
            job.stdin, PICKLE_TYPE, job.timeout_s, on_start=lambda: progress(job)
        )
        result = outcome.result
        job.stdout, job.stderr = result.stdout, result.stderr
        finish(job, result)
        if result.status != "succeeded" or result.result is None:
            return job
        answer = json.loads(result.result)
        if answer["ok"]:
            job.status = Status.SUCCEEDED
            job.result = base64.b64decode(answer["value"])
        else:
            job.status = Status.FAILED
            job.error = {**answer["error"], "exception": answer.get("exception")}
        return job

    # ------------------------------------------------------------------ lifecycle

    def start_pools(self) -> None:
        """Reaps idle instances; for a node of a cluster, which takes no queue (`start` does
        this too)."""
        self._pools.start_reaping()

    def start(self, broker: Broker, jobs: Jobs, workers: int = 32) -> None:
        async def run(job_id: str) -> None:
            await jobs.run_queued(job_id)

        self._worker.start(broker, run, workers)

    async def close(self) -> None:
        await self._worker.stop()

    def stats(self) -> list[dict[str, object]]:
        return self._pools.stats()


def _sandbox(
    job: Job,
    key: str,
    code_dir: Path,
    env_dir: Path | None = None,
    handler: str = "",
    name: str = "job",
    env: dict[str, str] | None = None,
) -> InstanceSpec:
    """A job's sandbox: its limits and network are the job's."""
    return InstanceSpec(
        key=key,
        code_dir=code_dir,
        env_dir=env_dir,
        handler=handler,
        memory_mb=job.memory_mb,
        network=job.network,
        name=name,
        env=env or {},
    )


def detect_runtimes(settings: Settings) -> Runtimes:
    """What this machine's sandboxes run: the sandbox Python's minor version, Node's major."""
    import subprocess

    probe = "import sys; print('%d.%d' % sys.version_info[:2])"
    try:
        python = subprocess.run(
            [settings.sandbox_python, "-I", "-S", "-c", probe],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        raise SystemExit(f"cannot run the sandbox Python {settings.sandbox_python}: {exc}") from exc
    node = None
    node_bin = shutil.which("node", path="/usr/local/bin:/usr/bin:/bin")
    if node_bin is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            version = subprocess.run(
                [node_bin, "--version"], capture_output=True, text=True, timeout=30, check=True
            ).stdout.strip()
            node = version.lstrip("v").split(".")[0] or None
    return Runtimes(python=python, node=node)
