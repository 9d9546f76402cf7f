"""`pratai api`, `pratai scheduler` and `pratai node`: Pratai on many machines.

- api: the HTTP API, gateway and webhooks, stateless; any number behind a load balancer. A sync
  invocation is one request to a node and its reply.
- scheduler: timers, event dispatch, and the collector: it takes async invocations from the
  queue, sends each to a node, stores the outcome (fenced by attempt), retries, dead letters,
  chains. Any number: a timer tick fires once, a queued invocation is taken by one. The
  connectors run in one scheduler at a time, the holder of a lease in the database; when it
  dies they restart in another within the lease's TTL plus one round (12 s; see
  `pratai.cluster.connector_lease`). An api only stores them.
- node: runs sandboxes. It reads only PRATAI_BROKER_URL and PRATAI_NODE_TOKEN: no database.

api and scheduler need PRATAI_DATABASE_URL (PostgreSQL) and PRATAI_BROKER_URL (nats://).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from nats.aio.msg import Msg

from pratai.api.app import create_app
from pratai.api.deps import Services
from pratai.artifacts import ArtifactStore, open_artifacts
from pratai.broker import Broker, open_broker
from pratai.cluster.connector_lease import (
    ConnectorLease,
    answer_statuses,
    holder_id,
    status_source,
)
from pratai.cluster.environments import EnvironmentServer
from pratai.cluster.executor import Dispatcher, RemoteExecutor, RemoteJobs
from pratai.cluster.link import JOB_ENDED, Evictor, Link, servers_of
from pratai.cluster.registry import Registry
from pratai.core.invocations import INVOCATIONS_QUEUE
from pratai.core.jobs import JOBS_QUEUE, MAX_JOB_TIMEOUT_S
from pratai.core.models import BuildState, Job
from pratai.core.node_tokens import NodeTokens
from pratai.core.ports import Store
from pratai.core.secrets import Secrets, load_keys
from pratai.core.workspace import Workspace
from pratai.errors import SettingsError, Unavailable
from pratai.metrics_port import MetricsPort
from pratai.node.worker import Worker
from pratai.scheduler import Scheduler
from pratai.server import (
    Execution,
    build_services,
    first_start,
    first_start_banner,
    make_meter,
)
from pratai.settings import Settings
from pratai.store import open_store

log = logging.getLogger("pratai")

# The scheduler's lease of a queued invocation: renewed while it runs; when a scheduler dies,
# what it held goes to another after this long.
DISPATCH_LEASE_S = 30.0
DISPATCH_CONSUMERS = 128  # invocations one scheduler has out on nodes at once
STALE_S = 60.0  # how often (and after how long) a scheduler looks for stalled invocations


def check_control_plane(settings: Settings, role: str) -> None:
    problems = []
    if not settings.broker_url.startswith("nats://"):
        problems.append(f"`pratai {role}` needs PRATAI_BROKER_URL=nats://host:port[,...]")
    if not settings.database_url.startswith(("postgresql", "postgres")):
        problems.append(
            f"`pratai {role}` needs PRATAI_DATABASE_URL=postgresql://...: the database every "
            "api and scheduler shares"
        )
    if not settings.secrets_key:
        problems.append(
            f"`pratai {role}` needs PRATAI_SECRETS_KEY, the same on every api and scheduler "
            "(make one: python3 -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())')"
        )
    if problems:
        raise SettingsError("\n".join(problems))


@dataclass(kw_only=True)
class ControlPlane:
    """An api or a scheduler: the core's services, with calls run on the cluster's nodes."""

    settings: Settings
    role: str
    store: Store
    broker: Broker
    link: Link
    registry: Registry
    services: Services
    environments: EnvironmentServer
    artifacts: ArtifactStore
    scheduler: Scheduler | None = None
    collector: Worker | None = None  # of invocations
    job_collector: Worker | None = None
    connector_lease: ConnectorLease | None = None
    metrics_port: MetricsPort | None = None
    _sweeper: asyncio.Task[None] | None = None

    @classmethod
    def assemble(cls, settings: Settings, role: str) -> ControlPlane:
        check_control_plane(settings, role)
        settings.home.mkdir(parents=True, exist_ok=True)
        store = open_store(settings.store_url)
        broker = open_broker(settings.broker_url, "", replicas=settings.nats_replicas)
        artifacts = open_artifacts(
            settings.broker_url, settings.artifacts_dir, replicas=settings.nats_replicas
        )
        workspace = Workspace(settings, artifacts)
        secrets = Secrets(store, load_keys(settings.secrets_key, settings.home / "secrets.key"))
        link = Link(servers_of(settings.broker_url), name=f"pratai-{role}")
        tokens = NodeTokens(store)

        async def valid(token: str) -> bool:
            return await tokens.verify(token) is not None

        registry = Registry(link, valid, lost_s=settings.node_lost_s)
        dispatcher = Dispatcher(link, registry)
        meter = make_meter(settings, store)
        execution = Execution(
            invocations=RemoteExecutor(dispatcher, secrets.environment, store.image_archive),
            jobs=RemoteJobs(dispatcher),
            evictor=Evictor(link),
            capacity=registry,
            node_stats=None,
            nodes=registry,
        )
        services = build_services(
            settings,
            store,
            broker,
            workspace,
            secrets=secrets,
            execution=execution,
            node_tokens=tokens,  # one cache: a revoke here applies at once
            meter=meter,
            # the apis store connectors; the holder of the lease among the schedulers runs them
            connectors_elsewhere=status_source(link) if role == "api" else None,
            keeps_image_archives=True,  # the nodes load images from their archives
        )
        python = f"python{services.jobs.runtimes.python}"
        plane = cls(
            settings=settings,
            role=role,
            environments=EnvironmentServer(link, workspace, python),
            artifacts=artifacts,
            store=store,
            broker=broker,
            link=link,
            registry=registry,
            services=services,
        )
        if role == "scheduler":
            plane.scheduler = Scheduler(store, services.invocations, services.saved_jobs)
            plane.scheduler.on_fired = meter.fired if meter is not None else None
            plane.collector = Worker(
                INVOCATIONS_QUEUE,
                lease_s=DISPATCH_LEASE_S,
                keep_s=dispatcher.start_s + 900.0 + DISPATCH_LEASE_S,  # the longest timeout
                what="invocation",
            )
            plane.job_collector = Worker(
                JOBS_QUEUE,
                lease_s=DISPATCH_LEASE_S,
                keep_s=dispatcher.start_s + MAX_JOB_TIMEOUT_S + DISPATCH_LEASE_S,
                what="job",
            )
            plane.connector_lease = ConnectorLease(store, services.connectors, holder_id())
        return plane

    async def start(self) -> str | None:
        await self.store.open()
        await self.broker.open()
        await asyncio.to_thread(self.artifacts.open)
        await self.link.open()
        await self.registry.start()
        await self.environments.start()
        if self.role == "api":
            # Two apis starting at once on an empty database: one makes the admin key.
            first = await self.store.take_lease("first-start", holder_id(), time.time(), 60.0)
            new_key = await first_start(self.services.tenants, self.settings) if first else None
            if len(self.settings.secrets_key.split(",")) > 1:  # a rotation is under way
                rotated = await self.services.secrets.rotate()
                log.info("re-encrypted %d secrets with the newest key", rotated)
            building = await self.store.versions_with_state(BuildState.BUILDING)
            await self.services.functions.resume_builds(building)
            await self.link.nc.subscribe(JOB_ENDED, cb=self._job_ended)
            return new_key
        assert self.scheduler is not None and self.collector is not None
        self.services.events.start()
        dispatched = await self.services.events.recover()
        if dispatched:
            log.info("dispatched %d events left undispatched", dispatched)
        run = self.services.invocations.run_delivery
        self.collector.start(self.broker, run, DISPATCH_CONSUMERS)
        assert self.job_collector is not None
        self.services.jobs.ended_listeners.append(self._tell_job_ended)
        self.job_collector.start(self.broker, self._run_job, DISPATCH_CONSUMERS)
        self.scheduler.start()
        self._sweeper = asyncio.create_task(self._sweep_forever())
        if self.services.metrics is not None:
            self.metrics_port = MetricsPort(self.settings, self.services.metrics)
            await self.metrics_port.start()
        assert self.connector_lease is not None
        self.connector_lease.start()
        await answer_statuses(self.link, self.services.connectors)
        return None

    async def _run_job(self, job_id: str) -> None:
        await self.services.jobs.run_queued(job_id)

    async def _tell_job_ended(self, job: Job) -> None:
        with contextlib.suppress(Exception):  # the api finds it in the store a little later
            await self.link.nc.publish(JOB_ENDED, job.id.encode())

    async def _job_ended(self, message: Msg) -> None:
        self.services.jobs.ended_elsewhere(message.data.decode())

    async def _sweep_forever(self) -> None:
        invocations = self.services.invocations
        while True:
            try:
                swept = await invocations.requeue_stale(STALE_S, grace_s=STALE_S)
                if swept:
                    log.info("requeued or failed %d stalled invocations", swept)
            except Exception:
                log.exception("looking for stalled invocations failed; trying again")
            await asyncio.sleep(STALE_S)

    async def close(self) -> None:
        if self.connector_lease is not None:  # first: another scheduler takes over in a round
            await self.connector_lease.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self.scheduler is not None:
            await self.scheduler.close()
        if self.metrics_port is not None:
            await self.metrics_port.close()
        for worker in (self.collector, self.job_collector):
            if worker is not None:
                await worker.stop()
        await self.services.events.close()
        await self.services.functions.wait_built()
        await self.registry.close()
        await self.link.close()
        await asyncio.to_thread(self.artifacts.close)
        await self.broker.close()
        await self.store.close()


def serve_api(settings: Settings) -> None:
    import uvicorn

    plane = ControlPlane.assemble(settings, "api")

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        token = await plane.start()
        if token:
            print(first_start_banner(settings, token), flush=True)
        print(f"Pratai api on {settings.url}", flush=True)
        try:
            yield
        finally:
            await plane.close()

    app = create_app(plane.services, lifespan=lifespan)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    plane.services.stopping = lambda: server.should_exit
    asyncio.run(server.serve())


def _run_until_stopped(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    try:
        asyncio.run(main())
    except (ConnectionError, Unavailable) as exc:  # NATS out of reach: say so, no traceback
        raise SystemExit(f"error: {exc}") from None


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def run_scheduler(settings: Settings) -> None:
    plane = ControlPlane.assemble(settings, "scheduler")

    async def main() -> None:
        await plane.start()
        print("Pratai scheduler running", flush=True)
        try:
            await _until_stopped()
        finally:
            await plane.close()

    _run_until_stopped(main)


def run_node(settings: Settings) -> None:
    from pratai.node.process import NodeProcess

    os.umask(0o077)
    node = NodeProcess.assemble(settings)

    async def main() -> None:
        await node.start()
        print(f"Pratai node {settings.node_name} running", flush=True)
        try:
            await _until_stopped()
        finally:
            await node.close()

    _run_until_stopped(main)
