"""A node: runs invocations in warm pools and pulls queued work from the broker."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pratai.broker import Broker
from pratai.cluster.orders import warm_key
from pratai.core.images import engine_id_of
from pratai.core.invocations import INVOCATIONS_QUEUE, Invocations
from pratai.core.models import Function, FunctionVersion, Invocation
from pratai.core.secrets import Secrets, mask
from pratai.core.workspace import Workspace
from pratai.drivers import Driver, InstanceSpec
from pratai.errors import Conflict, SandboxError
from pratai.node.budget import MemoryBudget
from pratai.node.images import NodeImages
from pratai.node.pool import Pools, VersionPool
from pratai.node.records import fail, finish
from pratai.node.worker import Worker
from pratai.settings import Settings

# Longer than the longest function timeout, so a live node never loses its delivery.
LEASE_S = 960.0


class Node:
    def __init__(
        self,
        settings: Settings,
        driver: Driver,
        workspace: Workspace,
        secret_env: Callable[[Function], Awaitable[dict[str, str]]] | None = None,
        image_driver: Driver | None = None,
        budget: MemoryBudget | None = None,
        cluster: bool = False,
        images: NodeImages | None = None,
    ) -> None:
        """`budget` is shared with the node's job runner (default: one of this node's own).
        A node of a `cluster` is named by PRATAI_NODE_NAME; that of `pratai serve` is "local".
        `images` loads the images a node of a cluster lacks (`pratai serve`'s engine has
        them all)."""
        self.settings = settings
        self.budget = MemoryBudget(settings.node_memory_mb) if budget is None else budget
        self.driver = driver
        self.image_driver = image_driver  # runs functions of runtime "image"
        self.images = images
        self.workspace = workspace
        self.secret_env = secret_env
        self.started_at = time.time()
        self.name = settings.node_name if cluster else "local"
        # keyed by (function id, version, updated_at, secrets) so that a change of settings or
        # of the secrets an order brought gets fresh instances
        self._pools: Pools[tuple[str, int, float, str]] = Pools(settings.idle_timeout)
        self._worker = Worker(
            INVOCATIONS_QUEUE, lease_s=LEASE_S, what="invocation", pools=self._pools
        )
        self.ran_listeners: list[Callable[[Invocation], None]] = []  # metrics: each call's outcome

    async def _pool(
        self, function: Function, version: FunctionVersion, secrets: dict[str, str] | None
    ) -> VersionPool:
        held = "" if secrets is None else _digest(secrets)
        key = (function.id, version.version, function.updated_at, held)
        return await self._pools.get(key, lambda: self._new_pool(function, version, secrets))

    async def _new_pool(
        self, function: Function, version: FunctionVersion, secrets: dict[str, str] | None
    ) -> VersionPool:
        driver, image = self.driver, ""
        if function.runtime == "image":
            if self.image_driver is None:
                raise SandboxError("this node runs no container images (podman)")
            driver, image = self.image_driver, engine_id_of(version.package_digest)
            code_dir, env_dir = Path(), None
        else:
            code_dir, env_dir = await self.workspace.prepare(
                version.package_digest, version.handler, function.runtime
            )
        if secrets is None:
            secrets = await self.secret_env(function) if self.secret_env else {}
        secret_env, secret_files = Secrets.split(secrets)
        spec = InstanceSpec(
            key=f"{function.id}-{version.version}",
            name=function.name,
            code_dir=code_dir,
            env_dir=env_dir,
            handler=version.handler,
            memory_mb=function.memory_mb,
            network=function.network,
            runtime=function.runtime,
            files=secret_files,
            image=image,
            env={
                **secret_env,
                "PRATAI_FUNCTION": function.name,
                "PRATAI_VERSION": str(version.version),
                "PRATAI_NODE": self.name,
            },
        )
        pool = VersionPool(
            driver, spec, function.concurrency, budget=self.budget, fresh=function.fresh_per_call
        )
        pool.secret_values = sorted(secrets.values(), key=len, reverse=True)
        return pool

    async def execute(
        self,
        invocation: Invocation,
        function: Function,
        version: FunctionVersion,
        secrets: dict[str, str] | None = None,
        image_archive: str | None = None,
    ) -> Invocation:
        """Runs it in a warm instance of the version. `secrets` are the function's secret values
        when the caller brings them (a node of a cluster); else the node's `secret_env` reads
        them. `image_archive`: where a node of a cluster gets the version's image."""
        await self._execute(invocation, function, version, secrets, image_archive)
        for listener in self.ran_listeners:
            listener(invocation)
        return invocation

    async def _execute(
        self,
        invocation: Invocation,
        function: Function,
        version: FunctionVersion,
        secrets: dict[str, str] | None,
        image_archive: str | None,
    ) -> Invocation:
        if function.runtime == "image":
            try:
                await self._image_ready(version, image_archive)
            except SandboxError as exc:
                fail(invocation, exc)
                invocation.cold_start = True
                return invocation
        pool = await self._pool(function, version, secrets)
        try:
            outcome = await pool.call(
                invocation.payload, invocation.content_type, function.timeout_s
            )
        except SandboxError as exc:
            fail(invocation, exc)
            invocation.cold_start = True
            return invocation
        result = outcome.result
        hidden = pool.secret_values
        finish(invocation, result)
        invocation.result = result.result
        if hidden and result.error:
            invocation.error = {k: mask(str(v), hidden) for k, v in result.error.items()}
        invocation.stdout = mask(result.stdout, hidden) if hidden else result.stdout
        invocation.stderr = mask(result.stderr, hidden) if hidden else result.stderr
        invocation.cold_start = outcome.cold_start
        invocation.init_ms = outcome.init_ms
        return invocation

    async def _image_ready(self, version: FunctionVersion, archive: str | None) -> None:
        if self.image_driver is None:
            raise SandboxError(
                f"node {self.name} runs no container images: podman is missing or does not work "
                "here (`pratai doctor` says why)",
                type="PodmanMissing",
            )
        if self.images is not None:
            await self.images.ensure(engine_id_of(version.package_digest), archive)

    async def evict_all(self) -> None:
        await self._pools.evict(lambda key: True)

    async def evict(self, function_id: str) -> None:
        await self._pools.evict(lambda key: key[0] == function_id)

    def start_pools(self) -> None:
        """Reaps idle instances; for a node of a cluster, which takes no queue (`start` does
        this too)."""
        self._pools.start_reaping()

    def start(self, broker: Broker, invocations: Invocations, workers: int = 32) -> None:
        self._worker.start(broker, invocations.run_delivery, workers)

    async def close(self) -> None:
        await self._worker.stop()
        await self.driver.close()

    def warm(self) -> list[tuple[str, int]]:
        """(function id, version) of the warm instances."""
        return sorted({(key[0], key[1]) for key in self._pools.warm()})

    def nodes(self) -> list[dict[str, Any]]:
        """`NodeDirectory`: `pratai serve` has one node, this one."""
        memory = self.budget.stats()
        return [
            {
                "name": self.name,
                "state": "ready",
                "memory": {"budget_mb": memory["budget_mb"], "used_mb": memory["used_mb"]},
                "slots": None,
                "busy": self._pools.busy(),
                "load": os.getloadavg()[0],
                "warm": [warm_key(fid, version) for fid, version in self.warm()],
                "runtimes": None,
                "started_at": self.started_at,
                "last_heartbeat_s": 0.0,
            }
        ]

    async def drain(self, name: str, drain: bool) -> dict[str, Any]:
        raise Conflict("`pratai serve` runs one node, its own: drain the nodes of a cluster")

    def stats(self) -> dict[str, object]:
        return {
            "pools": self._pools.stats(),
            "memory": self.budget.stats(),
            "driver": json.loads(json.dumps(self.driver.features(), default=str)),
        }


def _digest(secrets: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(secrets, sort_keys=True).encode()).hexdigest()
