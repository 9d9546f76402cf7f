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
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from nats.aio.msg import Msg

from pratai.cluster.link import EVICT, HEARTBEAT, Link, control_subject, job_subject, run_subject
from pratai.cluster.orders import (
    Heartbeat,
    JobOrder,
    RunOrder,
    encode_job_outcome,
    encode_job_progress,
    encode_outcome,
    warm_key,
)
from pratai.core.models import Invocation, Job, Status
from pratai.core.provisioning import host_cpus
from pratai.drivers.base import failure
from pratai.node.agent import Node
from pratai.node.jobs import JobRunner
from pratai.settings import Settings

log = logging.getLogger("pratai.node")

PROGRESS_S = 0.5  # a running job's output goes back at most this often


class ClusterMember:
    def __init__(
        self,
        settings: Settings,
        link: Link,
        node: Node,
        runtimes: list[str],
        jobs: JobRunner | None = None,
    ) -> None:
        self.settings = settings
        self.link = link
        self.node = node
        self.jobs = jobs
        self.runtimes = runtimes
        self.name = settings.node_name
        self.instance = uuid.uuid4().hex
        self.state = "ready"
        self.started_at = time.time()
        self.busy = 0
        self.holding: set[str] = set()  # dispatch ids of the orders received, not answered
        self._slots = asyncio.Semaphore(settings.node_slots)
        self._runs: dict[str, asyncio.Task[None]] = {}  # by dispatch id
        self._beating: asyncio.Task[None] | None = None

    async def start(self) -> None:
        nc = self.link.nc
        await nc.subscribe(run_subject(self.name), cb=self._on_order)
        if self.jobs is not None:
            await nc.subscribe(job_subject(self.name), cb=self._on_job)
        await nc.subscribe(control_subject(self.name), cb=self._on_control)
        await nc.subscribe(EVICT, cb=self._on_evict)
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
            cpus=host_cpus(),
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
        self._track(order.dispatch, self._run(msg, order))

    async def _on_job(self, msg: Msg) -> None:
        try:
            order = JobOrder.decode(msg.data)
        except ValueError as exc:
            log.warning("ignored a message that is no job order: %s", exc)
            return
        self._track(order.dispatch, self._run_job(msg, order))

    def _track(self, dispatch: str, run: Coroutine[Any, Any, None]) -> None:
        # Held from now until answered: the heartbeats tell the sender it arrived, and a
        # heartbeat without it follows the reply (or its attempt).
        self.holding.add(dispatch)
        # One task per order: the subscription's callbacks run one after another.
        task = asyncio.create_task(run)
        self._runs[dispatch] = task

        def done(_: asyncio.Task[None]) -> None:
            self._runs.pop(dispatch, None)
            self.holding.discard(dispatch)

        task.add_done_callback(done)

    async def _run_job(self, msg: Msg, order: JobOrder) -> None:
        assert self.jobs is not None
        changed = asyncio.Event()
        sender = asyncio.create_task(self._send_progress(order, changed))
        try:
            run = self.jobs.run_job(order.job, lambda _: changed.set())
            await self._answer(
                msg, order.job, run, lambda: encode_job_outcome(order.dispatch, order.job)
            )
        finally:
            sender.cancel()

    async def _send_progress(self, order: JobOrder, changed: asyncio.Event) -> None:
        """The job's output so far, when it changed, at most every PROGRESS_S."""
        while True:
            await changed.wait()
            changed.clear()
            update = encode_job_progress(order.dispatch, order.job)
            with contextlib.suppress(Exception):
                await self.link.nc.publish(order.progress, update[: self.link.max_payload])
            await asyncio.sleep(PROGRESS_S)

    async def _run(self, msg: Msg, order: RunOrder) -> None:
        run = self.node.execute(
            order.invocation,
            order.function,
            order.version,
            order.secrets,
            image_archive=order.image_archive,
        )
        await self._answer(
            msg, order.invocation, run, lambda: encode_outcome(order.dispatch, order.invocation)
        )

    async def _answer(
        self,
        msg: Msg,
        record: Invocation | Job,
        run: Awaitable[object],
        encode: Callable[[], bytes],
    ) -> None:
        """Runs it in a slot, then replies with what it came to: failed if the node itself
        failed, or if the reply would not fit in a NATS message."""
        async with self._slots:
            self.busy += 1
            try:
                await run
            except Exception as exc:  # a fault of this node, not of the user's code
                log.exception("%s could not run", record.id)
                record.status = Status.FAILED
                record.error = failure("NodeError", f"node {self.name}: {exc}")
            finally:
                self.busy -= 1
        reply = encode()
        if len(reply) > self.link.max_payload:
            record.result, record.stdout, record.stderr = None, "", ""
            record.status = Status.FAILED
            record.error = failure(
                "ResultTooLarge",
                f"the result and output are {len(reply)} bytes, more than the "
                f"{self.link.max_payload} bytes NATS carries (its max_payload)",
            )
            reply = encode()
        with contextlib.suppress(Exception):  # the sender is gone: it sent the call elsewhere
            await msg.respond(reply)

    async def _on_evict(self, msg: Msg) -> None:
        try:
            function_id = str(json.loads(msg.data)["function"])
        except (ValueError, KeyError, TypeError):
            return
        await self.node.evict(function_id)

    async def _on_control(self, msg: Msg) -> None:
        try:
            command = json.loads(msg.data)
            if "cancel" in command:  # a job was cancelled: stop its run (no answer)
                task = self._runs.get(str(command["cancel"]))
                if task is not None:
                    task.cancel()
                return
            drain = bool(command["drain"])
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
            await asyncio.wait(set(self._runs.values()), timeout=grace_s)
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating
        self.state = "stopped"
        with contextlib.suppress(Exception):
            await self.beat()
            await self.link.nc.flush()
