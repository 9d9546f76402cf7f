"""`pratai serve`: api + node in one process, with the embedded defaults.

Assembles the backends named by the settings, recovers work left by a crash, and on the very
first start creates the `default` project and an admin key, which it prints once and writes to
the credentials file the CLI reads.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from pratai.api.app import create_app
from pratai.api.deps import Services
from pratai.artifacts.filesystem import FilesystemArtifacts
from pratai.auth import Authenticator, ChainAuthenticator
from pratai.auth.keystone import KeystoneAuthenticator
from pratai.broker import Broker, open_broker
from pratai.connectors.registry import make_connector
from pratai.core.capacity import NodeCapacity, NodeDirectory
from pratai.core.connectors import Connectors, StatusSource
from pratai.core.events import Events
from pratai.core.functions import Functions, InstanceEvictor
from pratai.core.gateway import Gateway
from pratai.core.images import Images
from pratai.core.invocations import Executor, Invocations
from pratai.core.jobs import JobExecutor, Jobs
from pratai.core.models import BuildState, Role
from pratai.core.node_tokens import NodeTokens
from pratai.core.ports import Store
from pratai.core.saved_jobs import SavedJobs
from pratai.core.saved_payloads import SavedPayloads
from pratai.core.secrets import Secrets, load_keys
from pratai.core.stats import Stats
from pratai.core.tenants import Tenants
from pratai.core.triggers import Triggers
from pratai.core.workspace import Workspace
from pratai.credentials import save_credentials
from pratai.drivers import Driver
from pratai.drivers.podman import PodmanDriver, PodmanEngine
from pratai.drivers.process import ProcessDriver
from pratai.errors import SettingsError
from pratai.metrics import Meter, Metrics
from pratai.node.agent import Node
from pratai.node.budget import MemoryBudget
from pratai.node.jobs import JobRunner, detect_runtimes
from pratai.scheduler import Scheduler
from pratai.settings import Settings
from pratai.store import open_store

log = logging.getLogger("pratai")


@dataclass(kw_only=True)
class Platform:
    settings: Settings
    store: Store
    broker: Broker
    services: Services
    node: Node
    job_runner: JobRunner
    scheduler: Scheduler

    @classmethod
    def assemble(
        cls, settings: Settings, *, store: Store | None = None, driver: Driver | None = None
    ) -> Platform:
        """`store`, and `driver` (of functions and SDK callables; command jobs keep the
        sandbox), replace those the settings name: tests pass in-process ones."""
        try:
            settings.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SettingsError(
                f"PRATAI_HOME='{settings.home}': cannot create the data folder ({exc.strerror})"
            ) from None
        store = open_store(settings.store_url) if store is None else store
        broker = open_broker(
            settings.broker_url,
            str(settings.home / "broker.sqlite3"),
            replicas=settings.nats_replicas,
        )
        artifacts = FilesystemArtifacts(settings.artifacts_dir)
        workspace = Workspace(settings, artifacts)
        secrets = Secrets(store, load_keys(settings.secrets_key, settings.home / "secrets.key"))
        sandbox = ProcessDriver(settings)
        driver = sandbox if driver is None else driver
        budget = MemoryBudget(settings.node_memory_mb)  # the node's: functions' and jobs'
        node = Node(
            settings,
            driver,
            workspace,
            secret_env=secrets.environment,
            image_driver=PodmanDriver(settings),
            budget=budget,
        )
        job_runner = JobRunner(
            settings, workspace, commands=sandbox, callables=driver, budget=budget
        )
        secrets.listeners.append(node.evict_all)
        execution = Execution(
            invocations=node,
            jobs=job_runner,
            evictor=node,
            capacity=node.budget,  # one node: the budget of `pratai serve`'s own
            node_stats=node.stats,
            nodes=node,
        )
        meter = make_meter(settings, store)
        if meter is not None:
            meter.metrics.watch_node(node.stats)
            node.ran_listeners.append(meter.metrics.node_ran)
        services = build_services(
            settings, store, broker, workspace, secrets=secrets, execution=execution,
            meter=meter,
        )  # fmt: skip
        scheduler = Scheduler(store, services.invocations, services.saved_jobs)
        scheduler.on_fired = meter.fired if meter is not None else None
        return cls(
            settings=settings,
            store=store,
            broker=broker,
            services=services,
            node=node,
            job_runner=job_runner,
            scheduler=scheduler,
        )

    async def start(self) -> str | None:
        """Open everything; returns a new admin key on the very first start."""
        await self.store.open()
        await self.broker.open()
        new_key = await first_start(self.services.tenants, self.settings)
        if len(self.settings.secrets_key.split(",")) > 1:  # a rotation is under way
            rotated = await self.services.secrets.rotate()
            log.info("re-encrypted %d secrets with the newest key", rotated)
        building = await self.store.versions_with_state(BuildState.BUILDING)
        await self.services.functions.resume_builds(building)
        recovered = await self.services.invocations.recover()
        if recovered:
            log.info("requeued %d invocations left by the previous run", recovered)
        self.services.events.start()
        dispatched = await self.services.events.recover()
        if dispatched:
            log.info("dispatched %d events left by the previous run", dispatched)
        requeued = await self.services.jobs.recover()
        if requeued:
            log.info("requeued %d jobs left by the previous run", requeued)
        self.node.start(self.broker, self.services.invocations)
        self.job_runner.start(self.broker, self.services.jobs)
        self.scheduler.start()
        await self.services.connectors.start_all()
        return new_key

    async def close(self) -> None:
        await self.services.connectors.close()
        await self.scheduler.close()
        await self.job_runner.close()
        await self.node.close()
        await self.services.events.close()
        await self.services.functions.wait_built()
        await self.broker.close()
        await self.store.close()

    def app(self) -> FastAPI:
        @asynccontextmanager
        async def lifespan(_: Any) -> AsyncIterator[None]:
            token = await self.start()
            if token:
                print(first_start_banner(self.settings, token), flush=True)
            else:
                print(
                    f"Pratai is serving on {self.settings.url} (data in {self.settings.home}; "
                    f"CLI credentials in {self.settings.credentials_file}; "
                    f"web console at {self.settings.url}/ui/)",
                    flush=True,
                )
            try:
                yield
            finally:
                await self.close()

        return create_app(self.services, lifespan=lifespan)


@dataclass(kw_only=True)
class Execution:
    """Where a process's calls run: on its own node (`pratai serve`), or on a cluster's."""

    invocations: Executor | None
    jobs: JobExecutor | None
    evictor: InstanceEvictor | None  # told when a function changes
    capacity: NodeCapacity  # the most memory a call may ask for
    node_stats: Callable[[], dict[str, Any]] | None  # GET /v1/node
    nodes: NodeDirectory  # GET /v1/nodes


def build_services(
    settings: Settings,
    store: Store,
    broker: Broker,
    workspace: Workspace,
    *,
    secrets: Secrets,
    execution: Execution,
    node_tokens: NodeTokens | None = None,
    connectors_elsewhere: StatusSource | None = None,
    keeps_image_archives: bool = False,
    meter: Meter | None = None,
) -> Services:
    """The core's services on these backends, wired to tell each other of changes.
    `connectors_elsewhere` (a cluster's api): connectors are stored here and run in another
    process, which this asks for their statuses.
    `keeps_image_archives` (a cluster): a loaded image's archive goes to the artifact store too,
    where the nodes get it."""
    runtimes = detect_runtimes(settings)
    jobs = Jobs(
        settings,
        store,
        broker,
        runtimes,
        executor=execution.jobs,
        capacity=execution.capacity,
    )
    tenants = Tenants(store)
    keep = workspace.artifacts if keeps_image_archives else None
    images = Images(store, PodmanEngine(), keep=keep)
    functions = Functions(
        settings,
        store,
        workspace,
        evictor=execution.evictor,
        images=images,
        secrets=secrets,
        capacity=execution.capacity,
    )
    invocations = Invocations(settings, store, broker, executor=execution.invocations)
    events = Events(settings, store, invocations)
    triggers = Triggers(store, events)
    gateway = Gateway(store, workspace)
    functions.listeners.append(invocations.forget)
    functions.trigger_listeners.append(triggers.forget)
    functions.route_listeners.append(gateway.forget)
    services = Services(
        settings=settings,
        tenants=tenants,
        functions=functions,
        invocations=invocations,
        events=events,
        triggers=triggers,
        connectors=Connectors(
            store,
            events,
            make_connector,
            runs_here=connectors_elsewhere is None,
            elsewhere=connectors_elsewhere,
        ),
        secrets=secrets,
        auth=_authenticator(settings, tenants, store),
        gateway=gateway,
        jobs=jobs,
        saved_jobs=SavedJobs(store, jobs),
        saved_payloads=SavedPayloads(store, functions),
        node_tokens=NodeTokens(store) if node_tokens is None else node_tokens,
        stats=Stats(store),
        node_stats=execution.node_stats,
        images=images,
        nodes=execution.nodes,
        metrics=meter.metrics if meter is not None else None,
    )
    if meter is not None:
        meter.attach(services)
    return services


def make_meter(settings: Settings, store: Store) -> Meter | None:
    """The process's metrics, unless PRATAI_METRICS=off."""
    return Meter(Metrics(), project_name_of(store)) if settings.metrics == "on" else None


def project_name_of(store: Store) -> Callable[[str], Awaitable[str]]:
    async def name(project_id: str) -> str:
        project = await store.get_project(project_id)
        return project.name if project is not None else "deleted"

    return name


async def first_start(tenants: Tenants, settings: Settings) -> str | None:
    """On an empty store: the `default` project and its first admin key, returned (to print
    once) and written to the credentials file. None otherwise."""
    project = await tenants.ensure_project()
    if await tenants.has_keys(project):
        return None
    token = await tenants.create_key(project, Role.ADMIN, name="admin (first start)")
    save_credentials(settings.credentials_file, settings.url, token)
    return token


def _authenticator(settings: Settings, tenants: Tenants, store: Store) -> Authenticator:
    if settings.auth == "keys":
        return tenants
    if settings.auth == "keystone":
        if not settings.keystone_url:
            raise SystemExit("PRATAI_AUTH=keystone needs PRATAI_KEYSTONE_URL")
        keystone = KeystoneAuthenticator(
            settings.keystone_url,
            store,
            service_token=settings.keystone_service_token or None,
        )
        return ChainAuthenticator(tenants, keystone)
    raise SystemExit(f"unknown PRATAI_AUTH {settings.auth!r}: use keys or keystone")


def first_start_banner(settings: Settings, token: str) -> str:
    return (
        "\n"
        f"  Pratai is serving on {settings.url}  (data in {settings.home})\n"
        f"  Admin API key (shown once): {token}\n"
        f"  Saved to {settings.credentials_file}; the `pratai` CLI and SDK use it when neither\n"
        "  PRATAI_URL/PRATAI_API_KEY nor a `pratai login` says otherwise (`pratai whoami`).\n"
        f"  Web console: {settings.url}/ui/ (sign in with that key, or a user's password)\n"
    )


def serve(settings: Settings) -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # The data folder must be traversable by the sandbox uid (to reach sandbox/), so everything
    # else in it is created private; sandbox code and environments are chmodded explicitly.
    os.umask(0o077)
    platform = Platform.assemble(settings)
    config = uvicorn.Config(
        platform.app(),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        loop="auto",
        http="auto",
    )
    server = uvicorn.Server(config)
    platform.services.stopping = lambda: server.should_exit
    asyncio.run(server.serve())
