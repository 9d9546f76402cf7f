"""Runs invocations on the nodes of a cluster: the `Executor` of the api and the scheduler.

A call is one request to one node and its reply (one hop there and back, no polling). While it
waits, the sender watches the node: when the node is lost, stops or restarts, the call is sent
again at once, to a node taking work (this one too, once it is back: at least once, it may have
run it); when the node's heartbeats say it does not hold the order, the order or its reply was
lost on the way, and the call is sent again too. A reply to an earlier
sending is never used: each sending has its own dispatch id and inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors

from pratai.cluster.link import Link, run_subject
from pratai.cluster.orders import RunOrder, apply_outcome
from pratai.cluster.registry import Member, Registry
from pratai.core.models import Function, FunctionVersion, Invocation, Status, new_id, now
from pratai.drivers.base import failure

log = logging.getLogger("pratai.cluster")

SecretValues = Callable[[Function], Awaitable[dict[str, str]]]


class RemoteExecutor:
    def __init__(
        self,
        link: Link,
        registry: Registry,
        secret_values: SecretValues,
        *,
        start_s: float = 300.0,
        place_s: float = 60.0,
    ) -> None:
        self.link = link
        self.registry = registry
        self.secret_values = secret_values
        self.start_s = start_s  # beyond the function's timeout: a cold start, a first build
        self.place_s = place_s  # how long a call waits for a node with room

    async def execute(
        self, invocation: Invocation, function: Function, version: FunctionVersion
    ) -> Invocation:
        secrets = await self.secret_values(function)
        deadline = time.monotonic() + function.timeout_s + self.start_s
        shunned: set[str] = set()  # nodes with no listener for this call
        while True:
            member = await self._place(function, version, shunned)
            if member is None:
                return self._fail(invocation, function)
            order = RunOrder(new_id(), invocation, function, version, secrets)
            data = order.encode()
            if len(data) > self.link.max_payload:
                return _failed(
                    invocation,
                    "PayloadTooLarge",
                    f"the call is {len(data)} bytes with its settings, more than the "
                    f"{self.link.max_payload} bytes NATS carries (its max_payload)",
                )
            reply = await self._send(member, order.dispatch, data, deadline)
            if isinstance(reply, bytes) and apply_outcome(reply, order.dispatch, invocation):
                return invocation
            if time.monotonic() >= deadline:
                return _failed(
                    invocation,
                    "NodeTimeout",
                    f"node {member.name} did not answer within {function.timeout_s:g} s "
                    f"(the function's timeout) plus {self.start_s:g} s to start",
                )
            if reply is _Unanswered.DROPPED:  # the node is fine: it may take the call again
                log.warning(
                    "invocation %s: node %s does not hold it and did not answer: the order or "
                    "its reply was lost on the way; sending it again",
                    invocation.id,
                    member.name,
                )
                continue
            if reply is _Unanswered.GONE:
                # It gets no work until it beats again; then it may take this call too.
                log.warning(
                    "invocation %s: node %s is lost, stopped or restarted; sending it again",
                    invocation.id,
                    member.name,
                )
                continue
            log.warning(
                "invocation %s: node %s did not answer; sending it elsewhere",
                invocation.id,
                member.name,
            )
            shunned.add(member.name)  # listed ready, yet no listener: not again for this call

    async def _place(
        self, function: Function, version: FunctionVersion, shunned: set[str]
    ) -> Member | None:
        until = time.monotonic() + self.place_s
        while True:
            member = self.registry.place(
                function.id, version.version, function.memory_mb, exclude=shunned
            )
            if member is not None:
                return member
            if not self._could_fit(function) or time.monotonic() >= until:
                return None
            await self.registry.wait_for_change(min(1.0, until - time.monotonic()))

    def _could_fit(self, function: Function) -> bool:
        largest = self.registry.largest_budget_mb()
        return function.memory_mb <= largest

    def _fail(self, invocation: Invocation, function: Function) -> Invocation:
        if not self._could_fit(function):
            return _failed(
                invocation,
                "NoNodeFits",
                f"the function asks for {function.memory_mb} MB of memory; the largest node "
                f"memory budget is {self.registry.largest_budget_mb()} MB",
            )
        return _failed(
            invocation,
            "NoNodeAvailable",
            f"no node took the call within {self.place_s:g} s: start one (`pratai node`), or "
            "see `pratai node-list` for nodes lost, draining or full",
        )

    async def _send(
        self, member: Member, dispatch: str, data: bytes, deadline: float
    ) -> bytes | _Unanswered:
        """The node's reply; GONE when it is lost, stopped or restarted; SILENT when it has
        no listener or the deadline passed; DROPPED when two heartbeats in a row say it does
        not hold the order and no reply came: the order or its reply was lost on the way (a
        NATS server restarted, a connection broke). A reply is sent before the heartbeat that
        no longer lists its order, and has arrived by the next one."""
        member.sent += 1
        beats_at_send = member.beats
        lacking = 0  # heartbeats in a row that do not list the order
        request = asyncio.ensure_future(
            self.link.nc.request(
                run_subject(member.name), data, timeout=deadline - time.monotonic()
            )
        )
        gone = asyncio.ensure_future(member.gone.wait())
        beaten: asyncio.Future[Any] | None = None
        try:
            while True:
                beaten = asyncio.ensure_future(member.beaten.wait())
                await asyncio.wait({request, gone, beaten}, return_when=asyncio.FIRST_COMPLETED)
                if request.done():
                    with contextlib.suppress(
                        nats.errors.NoRespondersError, nats.errors.TimeoutError
                    ):
                        return request.result().data
                    return _Unanswered.SILENT
                if gone.done():
                    return _Unanswered.GONE
                lacking = lacking + 1 if member.lacks(dispatch, beats_at_send) else 0
                if lacking >= 2:
                    return _Unanswered.DROPPED
                beaten.cancel()
        finally:
            for task in (request, gone, beaten):
                if task is not None:
                    task.cancel()
            member.sent -= 1
            self.registry.changed()


class _Unanswered(enum.Enum):
    GONE = "gone"
    SILENT = "silent"
    DROPPED = "dropped"


def _failed(invocation: Invocation, kind: str, message: str) -> Invocation:
    invocation.status = Status.FAILED
    invocation.error = failure(kind, message)
    invocation.finished_at = now()
    return invocation
