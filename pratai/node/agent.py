"""A node: runs invocations in warm pools and pulls queued work from the broker."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from pratai.broker import Broker
from pratai.core.images import engine_id_of
from pratai.core.invocations import INVOCATIONS_QUEUE, Invocations
from pratai.core.models import Function, FunctionVersion, Invocation, Status
from pratai.core.secrets import Secrets, mask
from pratai.core.workspace import Workspace
from pratai.drivers import Driver, InstanceSpec
from pratai.errors import SandboxError
from pratai.node.budget import MemoryBudget
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
    ) -> None:
        """`budget` is shared with the node's job runner (default: one of this node's own)."""
        self.settings = settings
        self.budget = MemoryBudget(settings.node_memory_mb) if budget is None else budget
        self.driver = driver
        self.image_driver = image_driver  # runs functions of runtime "image"
        self.workspace = workspace
        self.secret_env = secret_env
        # keyed by (function id, version, updated_at) so a settings change gets fresh instances
        self._pools: Pools[tuple[str, int, float]] = Pools(settings.idle_timeout)
        self._worker = Worker(
            INVOCATIONS_QUEUE, lease_s=LEASE_S, what="invocation", pools=self._pools
        )

    async def _pool(self, function: Function, version: FunctionVersion) -> VersionPool:
        key = (function.id, version.version, function.updated_at)
        return await self._pools.get(key, lambda: self._new_pool(function, version))

    async def _new_pool(self, function: Function, version: FunctionVersion) -> VersionPool:
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
            },
        )
        pool = VersionPool(driver, spec, function.concurrency, budget=self.budget)
        pool.secret_values = sorted(secrets.values(), key=len, reverse=True)
        return pool

    async def execute(
        self, invocation: Invocation, function: Function, version: FunctionVersion
    ) -> Invocation:
        pool = await self._pool(function, version)
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

    async def evict_all(self) -> None:
        await self._pools.evict(lambda key: True)

    async def evict(self, function_id: str) -> None:
        await self._pools.evict(lambda key: key[0] == function_id)

    def start(self, broker: Broker, invocations: Invocations, workers: int = 32) -> None:
        async def run(invocation_id: str) -> float | None:
            invocation = await invocations.run_queued(invocation_id)
            if invocation is not None and invocation.status == Status.QUEUED:  # a retry is due
                return invocations.retry_delay(invocation.attempt)
            return None

        self._worker.start(broker, run, workers)

    async def close(self) -> None:
        await self._worker.stop()

    def stats(self) -> dict[str, object]:
        return {
            "pools": self._pools.stats(),
            "memory": self.budget.stats(),
            "driver": json.loads(json.dumps(self.driver.features(), default=str)),
        }
