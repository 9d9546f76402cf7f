"""Prometheus metrics of one Pratai process, in a registry of its own.

Labels stay bounded: project and function *names* (a function's series go when it is deleted),
statuses, trigger kinds, route templates and status classes; never ids, keys, users or raw
paths. What a process does not do (a node stores nothing, an api runs no timers) it leaves at
zero. `GET /metrics` serves them on the api; a scheduler or node run apart serves them on
PRATAI_METRICS_PORT.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pratai.core.models import (
    BuildState,
    ConnectorRecord,
    Function,
    Invocation,
    Job,
    Trigger,
    trigger_of,
)

if TYPE_CHECKING:
    from pratai.api.deps import Services
    from pratai.settings import Settings

log = logging.getLogger("pratai.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
_MEGABYTES = tuple(mb * 1024 * 1024 for mb in (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096))

ProjectName = Callable[[str], Awaitable[str]]
"""A project's name by its id."""


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
        self._functions: dict[tuple[str, str], set[tuple[str, ...]]] = {}  # their label sets

    def watch_node(self, stats: Callable[[], dict[str, Any]]) -> None:
        self.registry.register(NodeGauges(stats))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def ran(self, project: str, invocation: Invocation) -> None:
        """One run's outcome (each attempt counts)."""
        labels = (project, invocation.function_name)
        status, trigger = str(invocation.status), trigger_of(invocation)
        self._functions.setdefault(labels, set()).add((status, trigger))
        self.invocations.labels(*labels, status, trigger).inc()
        if invocation.duration_ms is not None:
            self.duration.labels(*labels).observe(invocation.duration_ms / 1000)
        if invocation.mode == "async" and invocation.started_at is not None:
            wait = max(0.0, invocation.started_at - invocation.created_at)
            self.queue_wait.labels(*labels).observe(wait)
        if invocation.cold_start:
            self.cold_starts.labels(*labels).inc()
            if invocation.init_ms is not None:
                self.init.labels(*labels).observe(invocation.init_ms / 1000)
        if invocation.peak_memory_kb is not None:
            self.peak_memory.labels(*labels).observe(invocation.peak_memory_kb * 1024)

    def forget(self, project: str, function: str) -> None:
        """A deleted function's series go."""
        labels = (project, function)
        for status, trigger in self._functions.pop(labels, set()):
            self.invocations.remove(*labels, status, trigger)
        for metric in (self.duration, self.queue_wait, self.cold_starts, self.init,
                       self.peak_memory):  # fmt: skip
            with contextlib.suppress(KeyError):  # never observed
                metric.remove(*labels)


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

    def attach(self, services: Services) -> None:
        """Listens to what the services report."""
        services.invocations.ran_listeners.append(self.ran)
        services.functions.delete_listeners.append(self.deleted)
        services.functions.build_listeners.append(self.built)
        services.jobs.ended_listeners.append(self.job_ended)
        services.connectors.emitted_listeners.append(self.emitted)


def serve_metrics(settings: Settings, metrics: Metrics) -> None:
    """For a scheduler or node run apart: /metrics on PRATAI_HOST:PRATAI_METRICS_PORT (if
    set), in a thread. Without PRATAI_METRICS_TOKEN it answers anyone who can reach it: keep
    PRATAI_HOST on loopback, or the port behind a firewall."""
    if not settings.metrics_port:
        return
    from prometheus_client import start_http_server

    try:
        start_http_server(settings.metrics_port, settings.host, registry=metrics.registry)
    except OSError as exc:
        log.warning("metrics not served on port %d: %s", settings.metrics_port, exc)
