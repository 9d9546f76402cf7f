"""A node as a member of a cluster: it tells its state, runs the orders sent to it, drains.

It holds no database credentials: an order brings what a run needs, the package comes from the
shared artifact store, and the outcome goes back as the reply to the order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid

from nats.aio.msg import Msg

from pratai.cluster.link import HEARTBEAT, Link, control_subject, run_subject
from pratai.cluster.orders import Heartbeat, RunOrder, encode_outcome, warm_key
from pratai.core.models import Status
from pratai.drivers.base import failure
from pratai.node.agent import Node
from pratai.settings import Settings

log = logging.getLogger("pratai.node")


class ClusterMember:
    def __init__(self, settings: Settings, link: Link, node: Node, runtimes: list[str]) -> None:
        self.settings = settings
        self.link = link
        self.node = node
        self.runtimes = runtimes
        self.name = settings.node_name
        self.instance = uuid.uuid4().hex
        self.state = "ready"
        self.started_at = time.time()
        self.busy = 0
        self.holding: set[str] = set()  # dispatch ids of the orders received, not answered
        self._slots = asyncio.Semaphore(settings.node_slots)
        self._runs: set[asyncio.Task[None]] = set()
        self._beating: asyncio.Task[None] | None = None

    async def start(self) -> None:
        nc = self.link.nc
        await nc.subscribe(run_subject(self.name), cb=self._on_order)
        await nc.subscribe(control_subject(self.name), cb=self._on_control)
        self._beating = asyncio.create_task(self._beat_forever())

    def heartbeat(self) -> Heartbeat:
        memory = self.node.budget.stats()
        return Heartbeat(
            name=self.name,
            instance=self.instance,
            token=self.settings.node_token,
            state=self.state,
            memory_budget_mb=memory["budget_mb"],
            memory_used_mb=memory["used_mb"],
            slots=self.settings.node_slots,
            busy=self.busy,
            warm=[warm_key(fid, version) for fid, version in self.node.warm()],
            load=os.getloadavg()[0],
            runtimes=self.runtimes,
            started_at=self.started_at,
            sent_at=time.time(),
            holding=sorted(self.holding),
        )

    async def beat(self) -> None:
        await self.link.nc.publish(HEARTBEAT, self.heartbeat().encode())

    async def _beat_forever(self) -> None:
        while True:
            try:
                await self.beat()
            except Exception as exc:  # NATS away: the next beat tries again
                log.warning("heartbeat not sent: %s", exc)
            await asyncio.sleep(self.settings.heartbeat_s)

    async def _on_order(self, msg: Msg) -> None:
        try:
            order = RunOrder.decode(msg.data)
        except ValueError as exc:
            log.warning("ignored a message that is no run order: %s", exc)
            return
        # Held from now until answered: the heartbeats tell the sender it arrived.
        self.holding.add(order.dispatch)
        # One task per order: the subscription's callbacks run one after another.
        task = asyncio.create_task(self._run(msg, order))
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)

    async def _run(self, msg: Msg, order: RunOrder) -> None:
        try:
            await self._answer(msg, order)
        finally:
            # After the reply (or its attempt): a heartbeat without it follows the reply.
            self.holding.discard(order.dispatch)

    async def _answer(self, msg: Msg, order: RunOrder) -> None:
        invocation = order.invocation
        async with self._slots:
            self.busy += 1
            try:
                await self.node.execute(invocation, order.function, order.version, order.secrets)
            except Exception as exc:  # a fault of this node, not of the function
                log.exception("invocation %s could not run", invocation.id)
                invocation.status = Status.FAILED
                invocation.error = failure("NodeError", f"node {self.name}: {exc}")
            finally:
                self.busy -= 1
        reply = encode_outcome(order.dispatch, invocation)
        if len(reply) > self.link.max_payload:
            invocation.result, invocation.stdout, invocation.stderr = None, "", ""
            invocation.status = Status.FAILED
            invocation.error = failure(
                "ResultTooLarge",
                f"the result and output are {len(reply)} bytes, more than the "
                f"{self.link.max_payload} bytes NATS carries (its max_payload)",
            )
            reply = encode_outcome(order.dispatch, invocation)
        with contextlib.suppress(Exception):  # the sender is gone: it sent the call elsewhere
            await msg.respond(reply)

    async def _on_control(self, msg: Msg) -> None:
        try:
            drain = bool(json.loads(msg.data)["drain"])
        except (ValueError, KeyError, TypeError):
            await msg.respond(json.dumps({"error": 'expected {"drain": true|false}'}).encode())
            return
        if self.state in ("ready", "draining"):
            self.state = "draining" if drain else "ready"
            log.info("node %s is %s", self.name, self.state)
        await self.beat()  # every process learns it now, not at the next beat
        await msg.respond(self.heartbeat().encode())

    async def close(self, grace_s: float = 30.0) -> None:
        """Stops taking orders, lets the running ones finish (for `grace_s`), says it stopped."""
        self.state = "stopping"
        with contextlib.suppress(Exception):
            await self.beat()
        if self._runs:
            await asyncio.wait(set(self._runs), timeout=grace_s)
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating
        self.state = "stopped"
        with contextlib.suppress(Exception):
            await self.beat()
            await self.link.nc.flush()
