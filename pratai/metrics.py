"""Prometheus metrics of one Pratai process, in a registry of its own.

Labels stay bounded: project and function *names* (a function's series go when it is deleted),
statuses, trigger kinds, route templates and status classes; never ids, keys, users or raw
paths. What a process does not do (a node stores nothing, an api runs no timers) it leaves at
zero. `GET /metrics` serves them on the api; a scheduler or node run apart serves them on
PRATAI_METRICS_PORT (`pratai.metrics_port`). Some gauges are read when scraped (`refresh`): the
queue's depth from the store, the connectors' state, a node's pools.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from pratai.core.models import (
    BuildState,
    ConnectorRecord,
    Function,
    Invocation,
    Job,
    Status,
    Trigger,
    trigger_of,
)

# Every counter would carry a second series with its creation time: twice the lines per scrape
# for a value no dashboard uses.
disable_created_metrics()  # type: ignore[no-untyped-call]

if TYPE_CHECKING:
    from pratai.api.deps import Services

log = logging.getLogger("pratai.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
_MEGABYTES = tuple(mb * 1024 * 1024 for mb in (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096))

REFRESH_S = 5.0  # the most a scrape waits for one scrape-time reading (the store's)

ProjectName = Callable[[str], Awaitable[str]]
"""A project's name by its id."""
Labels = tuple[str, ...]


class NodeGauges(Collector):
    """Read at scrape time from a node's pools and memory budget."""

    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self.stats()
        warm = GaugeMetricFamily(
            "pratai_warm_instances", "Warm instances on this node", labels=["state"]
        )
        pools = stats.get("pools", [])
        busy = sum(int(pool["busy"]) for pool in pools)
        total = sum(int(pool["instances"]) for pool in pools)
        warm.add_metric(["busy"], busy)
        warm.add_metric(["idle"], max(0, total - busy))
        yield warm
        yield GaugeMetricFamily("pratai_calls_in_flight", "Calls running on this node", busy)
        memory = stats.get("memory", {})
        yield GaugeMetricFamily(
            "pratai_node_memory_budget_bytes",
            "PRATAI_NODE_MEMORY_MB of this node",
            int(memory.get("budget_mb", 0)) * 1024 * 1024,
        )
        yield GaugeMetricFamily(
            "pratai_node_memory_used_bytes",
            "Memory limits of this node's instances, added up",
            int(memory.get("used_mb", 0)) * 1024 * 1024,
        )


class Snapshot(Collector):
    """A gauge whose values each refresh replaces. With `sticky`, a label set once seen stays,
    at 0, when a refresh no longer has it (a queue that emptied reads 0, not nothing)."""

    def __init__(self, name: str, documentation: str, labels: list[str], *, sticky: bool) -> None:
        self.name, self.documentation, self.labels = name, documentation, labels
        self.sticky = sticky
        self.values: dict[Labels, float] = {}

    def set(self, values: dict[Labels, float]) -> None:
        self.values = {**dict.fromkeys(self.values, 0.0), **values} if self.sticky else values

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, value in sorted(self.values.items()):
            family.add_metric(list(labels), value)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        fn = ["project", "function"]
        self.invocations = Counter(
            "pratai_invocations", "Runs of functions, by outcome and by how they started",
            [*fn, "status", "trigger"], registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "pratai_invocation_duration_seconds", "How long a run took in its sandbox", fn,
            buckets=_SECONDS, registry=r,
        )  # fmt: skip
        self.queue_wait = Histogram(
            "pratai_invocation_queue_wait_seconds",
            "From accepted to started, of async invocations", fn, buckets=_SECONDS, registry=r,
        )  # fmt: skip
        self.cold_starts = Counter(
            "pratai_cold_starts", "Runs that started a new instance", fn, registry=r
        )
        self.init = Histogram(
            "pratai_cold_start_init_seconds", "Loading the handler of a new instance", fn,
            buckets=_SECONDS, registry=r,
        )  # fmt: skip
        self.peak_memory = Histogram(
            "pratai_invocation_peak_memory_bytes", "Peak memory of a run", fn,
            buckets=_MEGABYTES, registry=r,
        )  # fmt: skip
        self.builds = Counter(
            "pratai_builds", "Environment builds of function versions", ["state"], registry=r
        )
        self.jobs = Counter("pratai_jobs", "Jobs ended, by status", ["project", "status"],
                            registry=r)  # fmt: skip
        self.timer_firings = Counter(
            "pratai_timer_firings", "Timer ticks fired by this scheduler", ["project"], registry=r
        )
        self.connector_messages = Counter(
            "pratai_connector_messages", "Messages connectors turned into events",
            ["project", "connector"], registry=r,
        )  # fmt: skip
        self.http = Counter(
            "pratai_http_requests", "HTTP requests, by route template and status class",
            ["method", "route", "status"], registry=r,
        )  # fmt: skip
        self.node_calls = Counter(
            "pratai_node_calls", "Calls this node ran, by outcome", ["status"], registry=r
        )
        self._node_calls = functools.cache(self.node_calls.labels)  # a few statuses
        # bounded: methods, route templates, status classes
        self.http_requests = functools.cache(self.http.labels)
        queue = "the same in every api and scheduler of a cluster, from the database"
        self.queued = self._snapshot(
            "pratai_invocations_queued", f"Invocations waiting to run ({queue})", sticky=True
        )
        self.running = self._snapshot(
            "pratai_invocations_running", f"Invocations running ({queue})", sticky=True
        )
        self.jobs_queued = self._snapshot(
            "pratai_jobs_queued", f"Jobs waiting to run ({queue})", sticky=True
        )
        self.jobs_running = self._snapshot("pratai_jobs_running", f"Jobs running ({queue})",
                                           sticky=True)  # fmt: skip
        self.connector_up = self._snapshot(
            "pratai_connector_up", "1 while a connector this process runs is connected, else 0",
            ["project", "connector", "kind"], sticky=False,
        )  # fmt: skip
        self.samplers: list[Callable[[], Awaitable[None]]] = []  # what `refresh` reads
        # The labelled series of functions, by (metric, labels): `labels()` checks and locks on
        # every call, a third of a warm run's cost of metrics; a function's go when it is deleted.
        self._series: dict[tuple[int, Labels], tuple[MetricWrapperBase, Any]] = {}

    def _snapshot(
        self, name: str, documentation: str, labels: list[str] | None = None, *, sticky: bool
    ) -> Snapshot:
        gauge = Snapshot(name, documentation, labels or ["project"], sticky=sticky)
        self.registry.register(gauge)
        return gauge

    def watch_node(self, stats: Callable[[], dict[str, Any]]) -> None:
        self.registry.register(NodeGauges(stats))

    def node_ran(self, invocation: Invocation) -> None:
        self._node_calls(str(invocation.status)).inc()

    async def refresh(self) -> None:
        """Reads the scrape-time gauges; one that fails or is slow keeps its last values."""
        for sampler in self.samplers:
            try:
                await asyncio.wait_for(sampler(), REFRESH_S)
            except Exception:
                log.warning("a metrics reading failed; its gauges keep their values", exc_info=True)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def _of(self, metric: MetricWrapperBase, *labels: str) -> Any:
        """The series of a per-function metric (labels: project, function, ...)."""
        key = (id(metric), labels)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = (metric, metric.labels(*labels))
        return found[1]

    def ran(self, project: str, invocation: Invocation) -> None:
        """One run's outcome (each attempt counts)."""
        labels = (project, invocation.function_name)
        self._of(self.invocations, *labels, str(invocation.status), trigger_of(invocation)).inc()
        if invocation.duration_ms is not None:
            self._of(self.duration, *labels).observe(invocation.duration_ms / 1000)
        if invocation.mode == "async" and invocation.started_at is not None:
            wait = max(0.0, invocation.started_at - invocation.created_at)
            self._of(self.queue_wait, *labels).observe(wait)
        if invocation.cold_start:
            self._of(self.cold_starts, *labels).inc()
            if invocation.init_ms is not None:
                self._of(self.init, *labels).observe(invocation.init_ms / 1000)
        if invocation.peak_memory_kb is not None:
            self._of(self.peak_memory, *labels).observe(invocation.peak_memory_kb * 1024)

    def forget(self, project: str, function: str) -> None:
        """A deleted function's series go."""
        for key, (metric, _) in list(self._series.items()):
            if key[1][:2] == (project, function):
                del self._series[key]
                metric.remove(*key[1])


class Meter:
    """Records what the core services report, naming projects by name."""

    def __init__(self, metrics: Metrics, project_name: ProjectName) -> None:
        self.metrics = metrics
        self.project_name = project_name
        self._names: dict[str, str] = {}

    async def _name(self, project_id: str) -> str:
        name = self._names.get(project_id)
        if name is None:
            name = self._names[project_id] = await self.project_name(project_id)
        return name

    async def ran(self, invocation: Invocation, function: Function) -> None:
        self.metrics.ran(await self._name(function.project_id), invocation)

    async def deleted(self, function: Function) -> None:
        self.metrics.forget(await self._name(function.project_id), function.name)

    async def job_ended(self, job: Job) -> None:
        self.metrics.jobs.labels(await self._name(job.project_id), str(job.status)).inc()

    async def fired(self, trigger: Trigger) -> None:
        self.metrics.timer_firings.labels(await self._name(trigger.project_id)).inc()

    async def emitted(self, record: ConnectorRecord) -> None:
        project = await self._name(record.project_id)
        self.metrics.connector_messages.labels(project, record.name).inc()

    def built(self, state: BuildState) -> None:
        self.metrics.builds.labels(str(state)).inc()

    async def _by_project(
        self, counts: dict[tuple[str, Status], int], status: Status
    ) -> dict[Labels, float]:
        found: dict[Labels, float] = {}
        for (project_id, of), n in counts.items():
            if of == status:
                labels = (await self._name(project_id),)
                found[labels] = found.get(labels, 0.0) + n  # two deleted ones: one "deleted"
        return found

    async def _queues(self, services: Services) -> None:
        m = self.metrics
        invocations = await services.invocations.unfinished()
        jobs = await services.jobs.unfinished()
        m.queued.set(await self._by_project(invocations, Status.QUEUED))
        m.running.set(await self._by_project(invocations, Status.RUNNING))
        m.jobs_queued.set(await self._by_project(jobs, Status.QUEUED))
        m.jobs_running.set(await self._by_project(jobs, Status.RUNNING))

    async def _connectors(self, services: Services) -> None:
        up: dict[Labels, float] = {}
        for record, status in services.connectors.here():
            labels = (await self._name(record.project_id), record.name, record.kind)
            up[labels] = 1.0 if status.connected else 0.0
        self.metrics.connector_up.set(up)

    def attach(self, services: Services) -> None:
        """Listens to what the services report, and reads what they hold when scraped."""
        services.invocations.ran_listeners.append(self.ran)
        services.functions.delete_listeners.append(self.deleted)
        services.functions.build_listeners.append(self.built)
        services.jobs.ended_listeners.append(self.job_ended)
        services.connectors.emitted_listeners.append(self.emitted)
        self.metrics.samplers.append(lambda: self._queues(services))
        self.metrics.samplers.append(lambda: self._connectors(services))
