"""A process's NATS connection for the cluster's own messages (core NATS, not JetStream).

Subjects, under `pratai.cluster.`:
- `heartbeat`: every node's `Heartbeat`, every PRATAI_HEARTBEAT_S;
- `node.<name>.run`: invocations to run on one node, each answered on the sender's inbox;
- `node.<name>.job`: jobs to run on it, likewise; their output while they run goes to an inbox
  the order names;
- `evict`: `{"function": id}` to every node: stop its warm instances (it changed or went);
- `node.<name>.control`: `{"drain": true|false}`, answered with the node's heartbeat, or
  `{"cancel": dispatch}` (a job was cancelled), not answered;
- `job-ended`: a job's id, from the scheduler that stored its outcome, to every api: one whose
  caller waits for that job reads it at once (else it looks in the store now and then).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import nats
import nats.errors
from nats.aio.client import Client

log = logging.getLogger("pratai.cluster")

HEARTBEAT = "pratai.cluster.heartbeat"
EVICT = "pratai.cluster.evict"  # {"function": id}: a function changed or went; to every node
JOB_ENDED = "pratai.cluster.job-ended"  # a job id: its outcome is stored; to every api


class Evictor:
    """`InstanceEvictor` of a control-plane process: tells every node to stop the warm
    instances of a function that changed or was deleted (they would idle on, holding memory:
    new calls get new instances anyway, by the function's update time)."""

    def __init__(self, link: Link) -> None:
        self.link = link

    async def evict(self, function_id: str) -> None:
        with contextlib.suppress(Exception):  # a node that misses it reaps them when idle
            await self.link.nc.publish(EVICT, json.dumps({"function": function_id}).encode())


def run_subject(node: str) -> str:
    return f"pratai.cluster.node.{node}.run"


def job_subject(node: str) -> str:
    return f"pratai.cluster.node.{node}.job"


def control_subject(node: str) -> str:
    return f"pratai.cluster.node.{node}.control"


def servers_of(broker_url: str) -> list[str]:
    return [server.strip() for server in broker_url.split(",") if server.strip()]


class Link:
    def __init__(self, servers: list[str], *, name: str, connect_s: float = 60.0) -> None:
        self.servers = servers
        self.name = name  # as the NATS server lists the connection
        self.connect_s = connect_s
        self._nc: Client | None = None

    async def open(self) -> None:
        nc = Client()
        try:
            async with asyncio.timeout(self.connect_s):
                await nc.connect(
                    self.servers,
                    name=self.name,
                    max_reconnect_attempts=-1,  # a member outlives any outage
                    reconnect_time_wait=1,
                    error_cb=self._error,
                )
        except TimeoutError:
            await nc.close()
            where = ", ".join(self.servers)
            raise ConnectionError(f"cannot reach NATS at {where} in {self.connect_s} s") from None
        self._nc = nc

    @staticmethod
    async def _error(exc: Exception) -> None:
        log.warning("NATS: %s", exc)

    @property
    def nc(self) -> Client:
        if self._nc is None:
            raise RuntimeError("the link is not open")
        return self._nc

    @property
    def max_payload(self) -> int:
        """The largest message the NATS servers take (their max_payload, 1 MB by default)."""
        return int(self.nc.max_payload)

    async def close(self) -> None:
        if self._nc is not None:
            nc, self._nc = self._nc, None
            try:
                await nc.drain()
            except (TimeoutError, nats.errors.Error):
                await nc.close()
