"""Which scheduler runs a cluster's connectors: the one that holds the `connectors` lease.

Every scheduler runs `ConnectorLease`: every `every_s` (2 s) it takes or renews the lease for
`ttl_s` (10 s). Holding it, it reconciles (starts what the apis stored, stops what they deleted);
not holding it, or unable to reach the database, it stops every connector it runs. Closing, it
stops them and drops the lease, so another scheduler takes over at its next round.

Failover bound: the connectors of a scheduler that dies (kill -9, a lost machine) restart in
another within `ttl_s + every_s` (12 s) of its last renewal, plus the time their sources take to
connect. Schedulers' clocks must agree to within a few seconds: the lease's expiry is wall time.
A holder that cannot renew stops its connectors within `every_s + renew_timeout_s` (4 s), well
before the lease expires, so two schedulers do not run them at once (a holder paused for longer
than the TTL, as by SIGSTOP, runs them beside the new one until its next round after it resumes).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

from nats.aio.msg import Msg

from pratai.cluster.link import Link
from pratai.connectors.base import ConnectorStatus
from pratai.core.connectors import Connectors, StatusSource
from pratai.core.ports import LeaseStore

log = logging.getLogger("pratai.connectors")

LEASE = "connectors"
LEASE_TTL_S = 10.0
EVERY_S = 2.0


def holder_id() -> str:
    """This process, unique in the cluster: host, pid and a random tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class ConnectorLease:
    def __init__(
        self,
        store: LeaseStore,
        connectors: Connectors,
        holder: str,
        *,
        ttl_s: float = LEASE_TTL_S,
        every_s: float = EVERY_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.connectors = connectors
        self.holder = holder
        self.ttl_s = ttl_s
        self.every_s = every_s
        self.renew_timeout_s = every_s  # a renewal slower than this counts as not held
        self.clock = clock
        self.held = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._forever(), name="connector-lease")

    async def step(self) -> bool:
        """One round: take or renew the lease, then reconcile or stop; returns whether held."""
        try:
            held = await asyncio.wait_for(
                self.store.take_lease(LEASE, self.holder, self.clock(), self.ttl_s),
                self.renew_timeout_s,
            )
        except Exception:
            log.exception("cannot renew the connectors lease; stopping the connectors here")
            held = False
        if held != self.held:
            log.info("%s the connectors lease (holder %s)", "took" if held else "lost", self.holder)
            self.held = held
        if held:
            await self.connectors.reconcile()
        else:
            await self.connectors.stop_all()
        return held

    async def _forever(self) -> None:
        while True:
            began = time.monotonic()
            try:
                await self.step()
            except Exception:
                log.exception("running the connectors failed; trying again")
            await asyncio.sleep(max(0.0, self.every_s - (time.monotonic() - began)))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.connectors.stop_all()
        if self.held:
            self.held = False
            try:
                await self.store.drop_lease(LEASE, self.holder)
            except Exception:
                log.exception("cannot drop the connectors lease; it expires by itself")


# The statuses of the connectors a scheduler runs, for the apis (`connector-show`): the ids
# asked for, answered by the scheduler that runs any (the lease's holder) within STATUS_S.
STATUS = "pratai.cluster.connectors.status"
STATUS_S = 1.0


async def answer_statuses(link: Link, connectors: Connectors) -> None:
    async def answer(msg: Msg) -> None:
        running = {record.id: record for record in connectors.running()}
        if not running:
            return  # not the holder: the holder answers
        try:
            asked = [str(i) for i in json.loads(msg.data)]
        except (ValueError, TypeError):
            return
        found = {
            i: dataclasses.asdict(connectors.status(running[i])) for i in asked if i in running
        }
        await msg.respond(json.dumps(found).encode())

    await link.nc.subscribe(STATUS, cb=answer)


def status_source(link: Link) -> StatusSource:
    """How an api asks; none running, or no answer in STATUS_S: every status unknown."""

    async def ask(ids: list[str]) -> dict[str, ConnectorStatus]:
        try:
            reply = await link.nc.request(STATUS, json.dumps(ids).encode(), timeout=STATUS_S)
            found = json.loads(reply.data)
            return {str(i): ConnectorStatus(**status) for i, status in found.items()}
        except Exception:  # no scheduler runs any, NATS away, an odd answer
            return {}

    return ask
