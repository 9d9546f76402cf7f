"""How a node runs jobs: commands in a one-shot sandbox, callables in warm Python instances."""

from __future__ import annotations

import asyncio
import base64
import codecs
import contextlib
import hashlib
import json
import logging
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import cloudpickle

from pratai.broker import Broker
from pratai.core.jobs import JOBS_QUEUE, PICKLE_TYPE, Jobs, Runtimes
from pratai.core.models import Job, JobKind, Status, now
from pratai.core.workspace import Workspace
from pratai.drivers import InstanceSpec
from pratai.drivers.commands import run_command
from pratai.drivers.process import ProcessDriver
from pratai.drivers.runtime_files import PACKAGED
from pratai.errors import SandboxError
from pratai.node.pool import VersionPool, pool_stats, shut_down
from pratai.settings import Settings

log = logging.getLogger("pratai.node.jobs")

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

    def __init__(self, settings: Settings, driver: ProcessDriver, workspace: Workspace) -> None:
        self.settings = settings
        self.driver = driver
        self.workspace = workspace
        self.root = settings.sandbox_dir / "jobcode"
        self._pools: dict[tuple[str | None, int, bool], VersionPool] = {}
        self._pool_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ code folders

    def _folder(self, name: str, fill: Callable[[Path], None]) -> Path:
        """A sandbox-readable folder, written once (atomically) and reused."""
        target = self.root / name
        if target.is_dir():
            return target
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        tmp = self.root / f".{name}.{uuid.uuid4().hex}"  # concurrent first jobs each write one
        tmp.mkdir()
        fill(tmp)
        for path in [tmp, *tmp.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        try:
            tmp.rename(target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another runner made it first
        return target

    def callable_code(self) -> Path:
        """The job handler plus the cloudpickle it unpickles with (pure Python, copied)."""
        source = Path(cloudpickle.__file__).parent
        digest = hashlib.sha256(_JOB_MODULE.read_bytes())
        digest.update(cloudpickle.__version__.encode())

        def fill(folder: Path) -> None:
            shutil.copy(_JOB_MODULE, folder / "pratai_job.py")
            shutil.copytree(source, folder / "cloudpickle", ignore=shutil.ignore_patterns("*.pyc"))

        return self._folder(f"callable-{digest.hexdigest()[:16]}", fill)

    def empty_code(self) -> Path:
        return self._folder("empty", lambda folder: None)

    # ------------------------------------------------------------------ running

    async def run_job(self, job: Job, progress: Callable[[Job], None]) -> Job:
        try:
            if job.kind == JobKind.COMMAND:
                return await self._command(job, progress)
            return await self._callable(job, progress)
        except SandboxError as exc:
            job.status = Status.FAILED
            job.error = {
                "type": str(exc.details.get("type", "SandboxError")),
                "message": exc.message,
                "traceback": str(exc.details.get("traceback", "")),
            }
            job.finished_at = now()
            return job

    async def _command(self, job: Job, progress: Callable[[Job], None]) -> Job:
        spec = InstanceSpec(
            key=f"job-{job.id}",
            code_dir=await asyncio.to_thread(self.empty_code),
            env_dir=None,
            handler="",
            memory_mb=job.memory_mb,
            network=job.network,
            env={**job.env, "PRATAI_JOB_ID": job.id},
            name=job.saved_name or job.id,
        )
        streams = {name: _Output(self.settings.max_output_bytes) for name in ("stdout", "stderr")}
        progress(job)  # it starts now

        def sink(name: str, chunk: bytes) -> None:
            streams[name].add(chunk)
            job.stdout, job.stderr = streams["stdout"].text(), streams["stderr"].text()
            progress(job)

        done = await run_command(self.driver, spec, job.command, job.stdin, job.timeout_s, sink)
        job.stdout, job.stderr = streams["stdout"].text(), streams["stderr"].text()
        job.status = Status(done.status)
        job.exit_code = done.exit_code
        job.error = done.error
        job.duration_ms = done.duration_ms
        job.peak_memory_kb = done.peak_memory_kb
        job.finished_at = now()
        return job

    async def _pool(self, job: Job) -> VersionPool:
        key = (job.requirements_hash, job.memory_mb, job.network)
        pool = self._pools.get(key)
        if pool is not None:
            return pool
        async with self._pool_lock:
            pool = self._pools.get(key)
            if pool is not None:
                return pool
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
            spec = InstanceSpec(
                key=f"jobs-{(job.requirements_hash or 'plain')[:12]}-{job.memory_mb}",
                code_dir=await asyncio.to_thread(self.callable_code),
                env_dir=env_dir,
                handler="pratai_job.main",
                memory_mb=job.memory_mb,
                network=job.network,
                name="job",
            )
            pool = VersionPool(self.driver, spec, self.settings.default_concurrency)
            self._pools[key] = pool
        return pool

    async def _callable(self, job: Job, progress: Callable[[Job], None]) -> Job:
        pool = await self._pool(job)
        outcome = await pool.call(
            job.stdin, PICKLE_TYPE, job.timeout_s, on_start=lambda: progress(job)
        )
        result = outcome.result
        job.stdout, job.stderr = result.stdout, result.stderr
        job.duration_ms = result.duration_ms
        job.peak_memory_kb = result.peak_memory_kb
        job.finished_at = now()
        if result.status != "succeeded" or result.result is None:
            job.status = Status(result.status)
            job.error = result.error
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

    def start(self, broker: Broker, jobs: Jobs, workers: int = 32) -> None:
        self._tasks.append(asyncio.create_task(self._reaper()))
        for _ in range(workers):
            self._tasks.append(asyncio.create_task(self._worker(broker, jobs)))

    async def _worker(self, broker: Broker, jobs: Jobs) -> None:
        async for delivery in broker.consume(JOBS_QUEUE, lease_s=LEASE_S):
            try:
                await jobs.run_queued(delivery.body.decode())
            except Exception:
                log.exception("job %s could not run; it will be retried", delivery.body)
                await broker.nack(delivery, delay_s=min(60.0, 2.0**delivery.attempts))
                continue
            await broker.ack(delivery)

    async def _reaper(self) -> None:
        interval = max(0.05, min(5.0, self.settings.idle_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            for key, pool in list(self._pools.items()):
                await pool.reap(self.settings.idle_timeout)
                idle_for = time.monotonic() - pool.last_used
                if pool.size == 0 and idle_for > self.settings.idle_timeout:
                    self._pools.pop(key, None)  # one pool per requirements set: don't keep all

    async def close(self) -> None:
        await shut_down(self._tasks, self._pools.values())
        self._pools.clear()

    def stats(self) -> list[dict[str, object]]:
        return pool_stats(self._pools.values())


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
