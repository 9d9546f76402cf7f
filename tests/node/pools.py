"""What the node's tests build pools with: a driver that remembers every instance it started
(to check which were stopped), the type of the `make_pool` fixture (conftest.py), and a call
with a JSON payload."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from pratai.drivers import Driver, Instance, InstanceSpec
from pratai.node.pool import Outcome, VersionPool

MakePool = Callable[..., Awaitable[VersionPool]]


class Recording:
    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.name = driver.name
        self.started: list[Instance] = []

    async def start(self, spec: InstanceSpec) -> Instance:
        instance = await self.driver.start(spec)
        self.started.append(instance)
        return instance

    def features(self) -> dict[str, Any]:
        return self.driver.features()

    async def close(self) -> None:
        await self.driver.close()


async def call(pool: VersionPool, payload: Any = None, timeout_s: float = 10.0) -> Outcome:
    return await pool.call(json.dumps(payload or {}).encode(), "application/json", timeout_s)
