"""A node: runs invocations in warm pools and pulls queued work from the broker."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from pratai.broker import Broker, Delivery
from pratai.core.images import engine_id_of
from pratai.core.invocations import INVOCATIONS_QUEUE, Invocations
from pratai.core.models import Function, FunctionVersion, Invocation, Status, now
from pratai.core.secrets import Secrets, mask
from pratai.core.workspace import Workspace
from pratai.drivers import Driver, InstanceSpec
from pratai.errors import SandboxError
from pratai.node.pool import VersionPool, pool_stats, shut_down
from pratai.settings import Settings

log = logging.getLogger("pratai.node")

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
    ) -> None:
        self.settings = settings
        self.driver = driver
        self.image_driver = image_driver  # runs functions of runtime "image"
        self.workspace = workspace
        self.secret_env = secret_env
        # keyed by (function id, version, updated_at) so a settings change gets fresh instances
        self._pools: dict[tuple[str, int, float], VersionPool] = {}
        self._pool_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    async def _pool(self, function: Function, version: FunctionVersion) -> VersionPool:
        key = (function.id, version.version, function.updated_at)
        pool = self._pools.get(key)
        if pool is not None:
            return pool
        async with self._pool_lock:
            pool = self._pools.get(key)
            if pool is None:
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
                pool = VersionPool(driver, spec, function.concurrency)
                pool.secret_values = sorted(secrets.values(), key=len, reverse=True)
                self._pools[key] = pool
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
            invocation.status = Status.FAILED
            invocation.error = {
                "type": str(exc.details.get("type", "SandboxError")),
                "message": exc.message,
                "traceback": str(exc.details.get("traceback", "")),
            }
            invocation.cold_start = True
            invocation.finished_at = now()
            return invocation
        result = outcome.result
        hidden = pool.secret_values
        invocation.status = Status(result.status)
        invocation.result = result.result
        invocation.error = result.error
        if hidden and result.error:
            invocation.error = {k: mask(str(v), hidden) for k, v in result.error.items()}
        invocation.stdout = mask(result.stdout, hidden) if hidden else result.stdout
        invocation.stderr = mask(result.stderr, hidden) if hidden else result.stderr
        invocation.duration_ms = result.duration_ms
        invocation.peak_memory_kb = result.peak_memory_kb
        invocation.cold_start = outcome.cold_start
        invocation.init_ms = outcome.init_ms
        invocation.finished_at = now()
        return invocation

    async def evict_all(self) -> None:
        for key in list(self._pools):
            await self._pools.pop(key).close()

    async def evict(self, function_id: str) -> None:
        for key in [k for k in self._pools if k[0] == function_id]:
            await self._pools.pop(key).close()

    def start(self, broker: Broker, invocations: Invocations, workers: int = 32) -> None:
        self._tasks.append(asyncio.create_task(self._reaper()))
        for _ in range(workers):
            self._tasks.append(asyncio.create_task(self._worker(broker, invocations)))

    async def _worker(self, broker: Broker, invocations: Invocations) -> None:
        async for delivery in broker.consume(INVOCATIONS_QUEUE, lease_s=LEASE_S):
            await self._handle(broker, invocations, delivery)

    async def _handle(self, broker: Broker, invocations: Invocations, delivery: Delivery) -> None:
        invocation_id = delivery.body.decode()
        try:
            invocation = await invocations.run_queued(invocation_id)
        except Exception:
            log.exception("invocation %s could not run; it will be retried", invocation_id)
            await broker.nack(delivery, delay_s=min(60.0, 2.0**delivery.attempts))
            return
        if invocation is not None and invocation.status == Status.QUEUED:  # a retry is due
            await broker.nack(delivery, delay_s=invocations.retry_delay(invocation.attempt))
            return
        await broker.ack(delivery)

    async def _reaper(self) -> None:
        interval = max(0.05, min(5.0, self.settings.idle_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            for key, pool in list(self._pools.items()):
                await pool.reap(self.settings.idle_timeout)
                idle_for = time.monotonic() - pool.last_used
                if pool.size == 0 and idle_for > self.settings.idle_timeout:
                    self._pools.pop(key, None)

    async def close(self) -> None:
        await shut_down(self._tasks, self._pools.values())
        self._pools.clear()

    def stats(self) -> dict[str, object]:
        return {
            "pools": pool_stats(self._pools.values()),
            "driver": json.loads(json.dumps(self.driver.features(), default=str)),
        }
