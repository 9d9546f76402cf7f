"""`pratai node`: a machine that runs sandboxes for a cluster, with no database credentials."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pratai.artifacts import open_artifacts
from pratai.cluster.environments import ShippedEnvironments
from pratai.cluster.link import Link, servers_of
from pratai.core.workspace import Workspace
from pratai.drivers.podman import PodmanDriver, PodmanEngine
from pratai.drivers.process import ProcessDriver
from pratai.errors import SettingsError
from pratai.metrics import Metrics
from pratai.metrics_port import MetricsPort
from pratai.node.agent import Node
from pratai.node.budget import MemoryBudget
from pratai.node.images import NodeImages
from pratai.node.jobs import JobRunner, detect_runtimes
from pratai.node.member import ClusterMember
from pratai.settings import Settings


def check_node(settings: Settings) -> None:
    problems = []
    if not settings.broker_url.startswith("nats://"):
        problems.append("`pratai node` needs PRATAI_BROKER_URL=nats://host:port[,...]")
    if not settings.node_token:
        problems.append(
            "`pratai node` needs PRATAI_NODE_TOKEN: an admin makes one with "
            "`pratai node-token-create NAME`"
        )
    if problems:
        raise SettingsError("\n".join(problems))


@dataclass(kw_only=True)
class NodeProcess:
    link: Link
    node: Node
    jobs: JobRunner
    member: ClusterMember
    metrics_port: MetricsPort | None = None  # its own /metrics, on PRATAI_METRICS_PORT

    @classmethod
    def assemble(cls, settings: Settings) -> NodeProcess:
        check_node(settings)
        settings.home.mkdir(parents=True, exist_ok=True)
        artifacts = open_artifacts(  # packages, cached here by digest
            settings.broker_url, settings.artifacts_dir, replicas=settings.nats_replicas
        )
        link = Link(servers_of(settings.broker_url), name=f"pratai-node-{settings.node_name}")
        runtimes = detect_runtimes(settings)
        shipped = ShippedEnvironments(link, artifacts, f"python{runtimes.python}")
        workspace = Workspace(settings, artifacts, fetch=shipped.fetch)
        sandbox = ProcessDriver(settings, spares=settings.spare_sandboxes)
        budget = MemoryBudget(settings.node_memory_mb)  # of functions and jobs alike
        podman = PodmanDriver(settings)
        works = bool(podman.probe()["podman_works"])  # else image calls fail, saying why
        node = Node(
            settings,
            sandbox,
            workspace,
            budget=budget,
            cluster=True,
            image_driver=podman if works else None,
            images=NodeImages(PodmanEngine(), artifacts) if works else None,
        )
        jobs = JobRunner(settings, workspace, commands=sandbox, budget=budget)
        member = ClusterMember(settings, link, node, runtimes.names(), jobs)
        port = None
        if settings.metrics == "on":
            metrics = Metrics()
            metrics.watch_node(node.stats)
            node.ran_listeners.append(metrics.node_ran)
            port = MetricsPort(settings, metrics)
        return cls(link=link, node=node, jobs=jobs, member=member, metrics_port=port)

    async def start(self) -> None:
        await asyncio.to_thread(self.node.workspace.artifacts.open)
        await self.link.open()
        self.node.start_pools()
        self.jobs.start_pools()
        await self.member.start()
        if self.metrics_port is not None:
            await self.metrics_port.start()

    async def close(self) -> None:
        if self.metrics_port is not None:
            await self.metrics_port.close()
        await self.member.close()
        await self.node.close()
        await self.jobs.close()
        await self.link.close()
        await asyncio.to_thread(self.node.workspace.artifacts.close)
