"""Runs calls on the nodes of a cluster: the executors of invocations and jobs of the api and the
scheduler.

A call is one request to one node and its reply (one hop there and back, no polling). While it
waits, the sender watches the node: when the node is lost, stops or restarts, the call is sent
to another node at once (at least once: the lost one may have run it). A reply to an earlier
sending is never used: each sending has its own dispatch id and inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.msg import Msg

from pratai.cluster.link import Link, control_subject, job_subject, run_subject
from pratai.cluster.orders import (
    JobOrder,
    RunOrder,
    apply_job_outcome,
    apply_job_progress,
    apply_outcome,
)
from pratai.cluster.registry import Member, Registry
from pratai.core.images import engine_id_of
from pratai.core.models import Function, FunctionVersion, Invocation, Job, Status, new_id, now
from pratai.drivers.base import failure

log = logging.getLogger("pratai.cluster")

SecretValues = Callable[[Function], Awaitable[dict[str, str]]]
ImageArchive = Callable[[str], Awaitable[str | None]]  # ImageStore.image_archive


@dataclass(frozen=True)
class Failed:
    kind: str
    message: str


@dataclass(frozen=True)
class Call:
    """What a dispatcher needs of a call, of either kind."""

    what: str  # "invocation <id>", for the log
    subject: Callable[[str], str]  # the subject of a node's name
    memory_mb: int
    warm: tuple[str, int] | None  # (function id, version) a warm instance of which helps
    encode: Callable[[str], bytes]  # the order, for a dispatch id
    accept: Callable[[bytes, str], bool]  # takes in a reply to this dispatch id
    timeout_s: float


class Dispatcher:
    def __init__(
        self, link: Link, registry: Registry, *, start_s: float = 300.0, place_s: float = 60.0
    ) -> None:
        self.link = link
        self.registry = registry
        self.start_s = start_s  # beyond a call's timeout: a cold start, a first build
        self.place_s = place_s  # how long a call waits for a node with room

    async def send(
        self, call: Call, on_sent: Callable[[Member, str], None] | None = None
    ) -> Failed | None:
        """Sends the call until a node answers it (None), or gives up (why)."""
        deadline = time.monotonic() + call.timeout_s + self.start_s
        shunned: set[str] = set()  # nodes with no listener for this call
        while True:
            member = await self._place(call, shunned)
            if member is None:
                return self._no_node(call)
            dispatch = new_id()
            data = call.encode(dispatch)
            if len(data) > self.link.max_payload:
                return Failed(
                    "PayloadTooLarge",
                    f"the call is {len(data)} bytes with its settings, more than the "
                    f"{self.link.max_payload} bytes NATS carries (its max_payload)",
                )
            if on_sent is not None:
                on_sent(member, dispatch)
            reply = await self._ask(member, call.subject(member.name), dispatch, data, deadline)
            if isinstance(reply, bytes) and call.accept(reply, dispatch):
                return None
            if time.monotonic() >= deadline:
                return Failed(
                    "NodeTimeout",
                    f"node {member.name} did not answer within {call.timeout_s:g} s (the "
                    f"timeout) plus {self.start_s:g} s to start",
                )
            if reply is _Unanswered.DROPPED:  # the node is fine: it may take the call again
                log.warning(
                    "%s: node %s does not hold it and did not answer: the order or its reply "
                    "was lost on the way; sending it again",
                    call.what,
                    member.name,
                )
            elif reply is _Unanswered.GONE:
                # It gets no work until it beats again; then it may take this call too.
                log.warning(
                    "%s: node %s is lost, stopped or restarted; sending it again",
                    call.what,
                    member.name,
                )
            else:
                log.warning(
                    "%s: node %s did not answer; sending it elsewhere", call.what, member.name
                )
                shunned.add(member.name)  # listed ready, yet no listener: not again for this call

    async def _place(self, call: Call, shunned: set[str]) -> Member | None:
        function_id, version = call.warm or ("", 0)
        until = time.monotonic() + self.place_s
        while True:
            member = self.registry.place(function_id, version, call.memory_mb, exclude=shunned)
            if member is not None:
                return member
            if call.memory_mb > self.registry.largest_budget_mb() or time.monotonic() >= until:
                return None
            await self.registry.wait_for_change(min(1.0, until - time.monotonic()))

    def _no_node(self, call: Call) -> Failed:
        largest = self.registry.largest_budget_mb()
        if call.memory_mb > largest:
            return Failed(
                "NoNodeFits",
                f"it asks for {call.memory_mb} MB of memory; the largest node memory budget "
                f"is {largest} MB",
            )
        return Failed(
            "NoNodeAvailable",
            f"no node took the call within {self.place_s:g} s: start one (`pratai node`), or "
            "see `pratai node-list` for nodes lost, draining or full",
        )

    async def _ask(
        self, member: Member, subject: str, dispatch: str, data: bytes, deadline: float
    ) -> bytes | _Unanswered:
        """The node's reply; GONE when it is lost, stopped or restarted; SILENT when it has
        no listener or the deadline passed; DROPPED when two heartbeats in a row say it does
        not hold the order and no reply came: the order or its reply was lost on the way (a
        NATS server restarted, a connection broke). A reply is sent before the heartbeat that
        no longer lists its order, and has arrived by the next one."""
        member.sent += 1
        beats_at_send = member.beats
        lacking = 0  # heartbeats in a row that do not list the order
        wait_s = deadline - time.monotonic()
        request = asyncio.ensure_future(self.link.nc.request(subject, data, timeout=wait_s))
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
                        reply = request.result().data
                        member.answered += 1
                        return reply
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


class RemoteExecutor:
    """`Executor` of invocations: each on a node, with its function's secrets, and for a
    container image the archive a node lacking the image loads it from."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        secret_values: SecretValues,
        image_archive: ImageArchive | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.secret_values = secret_values
        self.image_archive = image_archive

    async def _archive(self, version: FunctionVersion) -> str | Failed:
        engine_id = engine_id_of(version.package_digest)
        found = None if self.image_archive is None else await self.image_archive(engine_id)
        if found is None:
            return Failed(
                "ImageNotShipped",
                f"the cluster keeps no archive of image {engine_id[:12]} for its nodes (it was "
                "loaded before nodes could run images, or its ref was deleted): load the image "
                "again with `pratai image-load ARCHIVE`",
            )
        return found

    async def execute(
        self, invocation: Invocation, function: Function, version: FunctionVersion
    ) -> Invocation:
        archive = None
        if function.runtime == "image":
            found = await self._archive(version)
            if isinstance(found, Failed):
                return _failed(invocation, found)
            archive = found
        secrets = await self.secret_values(function)
        call = Call(
            what=f"invocation {invocation.id}",
            subject=run_subject,
            memory_mb=function.memory_mb,
            warm=(function.id, version.version),
            encode=lambda d: RunOrder(
                d, invocation, function, version, secrets, image_archive=archive
            ).encode(),
            accept=lambda reply, d: apply_outcome(reply, d, invocation),
            timeout_s=function.timeout_s,
        )
        failed = await self.dispatcher.send(call)
        return invocation if failed is None else _failed(invocation, failed)


def _failed(invocation: Invocation, failed: Failed) -> Invocation:
    invocation.status = Status.FAILED
    invocation.error = failure(failed.kind, failed.message)
    invocation.finished_at = now()
    return invocation


class RemoteJobs:
    """`JobExecutor`: each job on a node. Its output comes back while it runs; cancelling the
    run (the job was cancelled) tells the node to stop it."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    async def run_job(self, job: Job, progress: Callable[[Job], None]) -> Job:
        inbox = self.dispatcher.link.nc.new_inbox()
        sent: list[tuple[Member, str]] = []

        async def on_progress(msg: Msg) -> None:
            if sent and apply_job_progress(msg.data, sent[-1][1], job):
                progress(job)

        listening = await self.dispatcher.link.nc.subscribe(inbox, cb=on_progress)
        call = Call(
            what=f"job {job.id}",
            subject=job_subject,
            memory_mb=job.memory_mb,
            warm=None,
            encode=lambda d: JobOrder(d, job, inbox).encode(),
            accept=lambda reply, d: apply_job_outcome(reply, d, job),
            timeout_s=job.timeout_s,
        )
        try:
            failed = await self.dispatcher.send(call, lambda m, d: sent.append((m, d)))
        except asyncio.CancelledError:
            if sent:
                member, dispatch = sent[-1]
                with contextlib.suppress(Exception):
                    stop = json.dumps({"cancel": dispatch}).encode()
                    await self.dispatcher.link.nc.publish(control_subject(member.name), stop)
            raise
        finally:
            with contextlib.suppress(Exception):
                await listening.unsubscribe()
        if failed is not None:
            job.status = Status.FAILED
            job.error = {**failure(failed.kind, failed.message), "traceback": ""}
            job.finished_at = now()
        return job
