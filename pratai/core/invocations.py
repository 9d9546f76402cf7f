"""Invoking functions: sync (the caller waits) and async (durable first, then queued)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pratai.broker import Broker
from pratai.core.models import (
    TRIGGERS,
    BuildState,
    Function,
    FunctionVersion,
    Invocation,
    InvocationFilter,
    Project,
    Status,
    new_id,
    now,
)
from pratai.core.ports import FunctionReader, InvocationStore, ProjectStore
from pratai.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from pratai.settings import Settings

log = logging.getLogger("pratai.invocations")

INVOCATIONS_QUEUE = "invocations"
# Another api process may change a function; this process notices within this many seconds.
FUNCTION_CACHE_SECONDS = 1.0
# A synchronous call is stored once, when it ends, if it ends within this many seconds (a
# warm call takes about a millisecond: one write instead of two). A longer one is stored as
# running at this point, so it shows among the running invocations (and a restart marks it
# failed) no later than this after its start.
SYNC_STORED_RUNNING_AFTER_S = 0.05


class Executor(Protocol):
    """Runs one invocation of a version on this machine and fills in its outcome."""

    async def execute(
        self, invocation: Invocation, function: Function, version: FunctionVersion
    ) -> Invocation: ...


def idempotent_id(project: Project, key: str | None) -> str | None:
    """The invocation id an Idempotency-Key stands for, within one project."""
    if not key:
        return None
    return hashlib.sha256(f"{project.id}:{key}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class LogLine:
    invocation_id: str
    time: float
    stream: str
    text: str


def decode_result(invocation: Invocation) -> Any:
    return None if invocation.result is None else json.loads(invocation.result)


class _Store(InvocationStore, FunctionReader, ProjectStore, Protocol):
    """What Invocations reads and writes: invocations, and the functions they run."""


class Invocations:
    def __init__(
        self, settings: Settings, store: _Store, broker: Broker, executor: Executor | None
    ) -> None:
        self.settings = settings
        self.store = store
        self.broker = broker
        self.executor = executor
        self._versions: dict[tuple[str, int], FunctionVersion] = {}
        self._functions: dict[tuple[str, str], tuple[float, Function]] = {}
        # told of every async invocation's final outcome (after its last retry)
        self.finished_listeners: list[Callable[[Invocation, Function], Awaitable[None]]] = []
        # told of every run's outcome, sync and async, each attempt (metrics)
        self.ran_listeners: list[Callable[[Invocation, Function], Awaitable[None]]] = []

    async def unfinished(self) -> dict[tuple[str, Status], int]:
        """How many are queued and running, by (project id, status), in every project
        (metrics: the queue's depth)."""
        return await self.store.count_invocations([Status.QUEUED, Status.RUNNING])

    def forget(self, function: Function) -> None:
        """Called when this process changes a function, so the change applies at once."""
        self._functions.pop((function.project_id, function.name), None)
        self._functions.pop(("", function.id), None)

    async def _function_by_id(self, function_id: str) -> Function | None:
        key = ("", function_id)  # ids and (project, name) pairs never collide
        cached = self._functions.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        function = await self.store.get_function_by_id(function_id)
        if function is not None:
            self._functions[key] = (time.monotonic() + FUNCTION_CACHE_SECONDS, function)
        return function

    async def _function(self, project: Project, name: str) -> Function | None:
        key = (project.id, name)
        cached = self._functions.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        function = await self.store.get_function(project.id, name)
        if function is not None:
            if len(self._functions) > 10_000:
                self._functions.clear()
            self._functions[key] = (time.monotonic() + FUNCTION_CACHE_SECONDS, function)
        return function

    async def _target(self, project: Project, name: str) -> tuple[Function, FunctionVersion]:
        function = await self._function(project, name)
        if function is None:
            raise NotFound(f"function {name!r} not found", function=name)
        if function.active_version is None:
            latest = await self.store.get_version(function.id, function.latest_version)
            state = latest.state if latest else BuildState.BUILDING
            raise Conflict(f"function {name!r} has no ready version yet (state: {state})")
        return function, await self._version(function.id, function.active_version)

    async def _version(self, function_id: str, number: int) -> FunctionVersion:
        # Ready versions are immutable, so they are cached for the hot path.
        key = (function_id, number)
        version = self._versions.get(key)
        if version is None:
            version = await self.store.get_version(function_id, number)
            if version is None:
                raise NotFound(f"version {number} not found")
            if version.state == BuildState.READY:
                self._versions[key] = version
        return version

    def _check_payload(self, payload: bytes) -> None:
        if len(payload) > self.settings.max_payload_bytes:
            raise PayloadTooLarge(
                f"payload is {len(payload)} bytes; the limit is "
                f"{self.settings.max_payload_bytes} bytes",
                limit=self.settings.max_payload_bytes,
            )

    async def _new(
        self,
        project: Project,
        name: str,
        payload: bytes,
        content_type: str,
        mode: str,
        invocation_id: str | None = None,
    ) -> tuple[Invocation, Function, FunctionVersion]:
        self._check_payload(payload)
        function, version = await self._target(project, name)
        invocation = Invocation(
            id=invocation_id or new_id(),
            project_id=project.id,
            function_id=function.id,
            function_name=function.name,
            version=version.version,
            mode=mode,
            content_type=content_type,
        )
        return invocation, function, version

    async def invoke(
        self,
        project: Project,
        name: str,
        payload: bytes,
        content_type: str = "application/json",
        idempotency_key: str | None = None,
    ) -> Invocation:
        """Run now and wait for the outcome. With an idempotency key, a repeat of the same key
        gets the first invocation back instead of running again."""
        if self.executor is None:
            raise Conflict("this process runs no node; use an async invocation")
        invocation_id = idempotent_id(project, idempotency_key)
        if invocation_id and (earlier := await self.store.get_invocation_by_id(invocation_id)):
            return earlier
        invocation, function, version = await self._new(
            project, name, payload, content_type, "sync", invocation_id
        )
        invocation.status, invocation.started_at = Status.RUNNING, now()
        # Stored with its payload (the console shows it and runs it again); the update after
        # the run does not write the payload twice.
        invocation.payload = payload
        if invocation_id is not None:
            # An idempotency key: stored before the run, so that a concurrent repeat of the key
            # finds this one instead of running again.
            if earlier := await self._create_once(invocation, idempotent=True):
                return earlier
            stored = True
            await self.executor.execute(invocation, function, version)
        else:
            stored = await self._execute_sync(invocation, function, version)
        await self._ran(invocation, function)
        if stored:
            await self.store.update_invocation(invocation)
        else:
            await self.store.create_invocation(invocation)
        return invocation

    async def _execute_sync(
        self, invocation: Invocation, function: Function, version: FunctionVersion
    ) -> bool:
        """Runs it; stores it as running only if the run lasts past SYNC_STORED_RUNNING_AFTER_S.
        True when it was stored so (its outcome is then an update)."""
        assert self.executor is not None
        stored: list[asyncio.Task[None]] = []

        def store_running() -> None:
            running = dataclasses.replace(invocation)  # as it is now, not as the run leaves it
            stored.append(asyncio.ensure_future(self.store.create_invocation(running)))

        timer = asyncio.get_running_loop().call_later(SYNC_STORED_RUNNING_AFTER_S, store_running)
        try:
            await self.executor.execute(invocation, function, version)
        finally:
            timer.cancel()
            if stored:
                await stored[0]
        return bool(stored)

    async def invoke_by_id(
        self,
        function_id: str,
        payload: bytes,
        content_type: str = "application/json",
        idempotency_key: str | None = None,
    ) -> Invocation:
        """`invoke` for callers that hold a function id (webhooks, gateway routes)."""
        function = await self._function_by_id(function_id)
        project = await self.store.get_project(function.project_id) if function else None
        if function is None or project is None:
            raise NotFound("function not found")
        return await self.invoke(project, function.name, payload, content_type, idempotency_key)

    async def tree(self, project: Project, invocation_id: str) -> list[tuple[int, Invocation]]:
        """The whole chain this invocation belongs to: (depth, invocation), root first."""
        node = await self.get(project, invocation_id)
        while node.parent_id is not None:
            parent = await self.store.get_invocation(project.id, node.parent_id)
            if parent is None:
                break
            node = parent
        found: list[tuple[int, Invocation]] = []
        stack = [(0, node)]
        while stack and len(found) < 1000:
            depth, current = stack.pop()
            found.append((depth, current))
            children = await self.store.child_invocations(current.id)
            stack.extend((depth + 1, child) for child in reversed(children))
        return found

    async def submit(
        self,
        project: Project,
        name: str,
        payload: bytes,
        content_type: str = "application/json",
        idempotency_key: str | None = None,
    ) -> Invocation:
        """Store and queue; when this returns the invocation survives a crash."""
        invocation_id = idempotent_id(project, idempotency_key)
        if invocation_id and (earlier := await self.store.get_invocation_by_id(invocation_id)):
            return earlier
        invocation, _, _ = await self._new(
            project, name, payload, content_type, "async", invocation_id
        )
        invocation.payload = payload
        if earlier := await self._create_once(invocation, idempotent=invocation_id is not None):
            return earlier
        await self.enqueue(invocation)
        return invocation

    async def _create_once(self, invocation: Invocation, *, idempotent: bool) -> Invocation | None:
        """Store it; for an idempotency key used concurrently, return the first one instead."""
        try:
            await self.store.create_invocation(invocation)
        except Conflict:
            if not idempotent:
                raise
            earlier = await self.store.get_invocation_by_id(invocation.id)
            assert earlier is not None
            return earlier
        return None

    async def prepare_for(
        self,
        function_id: str,
        payload: bytes,
        content_type: str,
        *,
        invocation_id: str,
        event_seq: int | None = None,
        parent_id: str | None = None,
        event_id: str | None = None,
        timer_id: str | None = None,
    ) -> Invocation | None:
        """A queued invocation caused by an event (or a timer's tick), not yet stored; None if
        the function is gone."""
        self._check_payload(payload)
        function = await self._function_by_id(function_id)
        if function is None:
            return None
        return Invocation(
            id=invocation_id,
            project_id=function.project_id,
            function_id=function.id,
            function_name=function.name,
            version=function.active_version or 0,
            mode="async",
            payload=payload,
            content_type=content_type,
            event_seq=event_seq,
            parent_id=parent_id,
            event_id=event_id,
            timer_id=timer_id,
        )

    async def enqueue(self, invocation: Invocation) -> None:
        """Hand a stored, queued invocation to the nodes (a repeat is harmless)."""
        await self.broker.publish(
            INVOCATIONS_QUEUE, invocation.id.encode(), message_id=invocation.id
        )

    async def submit_for(
        self,
        function_id: str,
        payload: bytes,
        content_type: str,
        *,
        invocation_id: str,
        event_seq: int | None = None,
        parent_id: str | None = None,
        event_id: str | None = None,
        timer_id: str | None = None,
    ) -> Invocation | None:
        """Queue an invocation caused by an event (or a timer's tick). Idempotent by
        `invocation_id`: a repeat publishes the id again (the broker ignores it while queued)
        and creates nothing."""
        invocation = await self.prepare_for(
            function_id,
            payload,
            content_type,
            invocation_id=invocation_id,
            event_seq=event_seq,
            parent_id=parent_id,
            event_id=event_id,
            timer_id=timer_id,
        )
        if invocation is not None:
            await self.store_and_enqueue(invocation)
        return invocation

    async def store_and_enqueue(self, invocation: Invocation) -> None:
        """Idempotent by id: a repeat publishes the id again (the broker ignores it while
        queued) and stores nothing twice."""
        with contextlib.suppress(Conflict):
            await self.store.create_invocation(invocation)
        await self.enqueue(invocation)

    async def run_queued(self, invocation_id: str) -> Invocation | None:
        """Called by a node for a queued invocation; idempotent for finished ones."""
        if self.executor is None:
            raise Conflict("this process runs no node")
        # The usual case in one statement: queued -> running, returning the row.
        invocation = await self.store.start_invocation(invocation_id, now())
        if invocation is None:
            invocation = await self.store.get_invocation_by_id(invocation_id)
            if invocation is None or invocation.status.finished:
                return invocation
            # Still "running": whoever ran it died, or lost its lease. This run takes it over
            # and moves the attempt on, so that the other, if it still runs, cannot store.
            invocation.attempt += 1
            if not await self.store.update_invocation(invocation, attempt=invocation.attempt - 1):
                return None  # another took it over first
        running = invocation.attempt
        function = await self._function_by_id(invocation.function_id)
        if function is None:
            invocation.status = Status.CANCELLED
            invocation.error = {"type": "FunctionDeleted", "message": "the function was deleted"}
            invocation.finished_at = now()
            await self.store.update_invocation(invocation)
            return invocation
        if invocation.version == 0:  # queued while the function had no ready version
            if function.active_version is None:
                invocation.status = Status.QUEUED
                await self.store.update_invocation(invocation)
                raise Conflict(f"function {function.name!r} has no ready version yet")
            invocation.version = function.active_version
        version = await self._version(function.id, invocation.version)
        await self.executor.execute(invocation, function, version)
        await self._ran(invocation, function)
        if invocation.status != Status.SUCCEEDED and invocation.attempt <= function.max_retries:
            # Back to the queue; the node redelivers it after retry_delay(attempt).
            invocation.status = Status.QUEUED
            invocation.attempt += 1
            await self.store.update_invocation(invocation, attempt=running)
            return invocation
        if not await self.store.update_invocation(invocation, attempt=running):
            return None  # taken over meanwhile: the newer run stores its outcome
        for listener in self.finished_listeners:
            await listener(invocation, function)
        return invocation

    async def _ran(self, invocation: Invocation, function: Function) -> None:
        for listener in self.ran_listeners:
            try:
                await listener(invocation, function)
            except Exception:  # a listener's fault must not lose the outcome
                log.exception("a listener of invocation %s failed", invocation.id)

    async def run_delivery(self, invocation_id: str) -> float | None:
        """`run_queued` for a worker of the invocations queue: None when the delivery is done,
        or in how many seconds it should come again (a retry is due)."""
        invocation = await self.run_queued(invocation_id)
        if invocation is not None and invocation.status == Status.QUEUED:
            return self.retry_delay(invocation.attempt)
        return None

    async def requeue_stale(self, older_than_s: float, grace_s: float) -> int:
        """For a cluster's scheduler, now and then: publish again invocations queued longer than
        `older_than_s` (a process that stored one may have died before publishing it; a
        repeat is a no-op), and fail synchronous ones running longer than their function's
        timeout plus `grace_s` (the api process that ran them is gone). Returns how many."""
        count, at = 0, now()
        for invocation in await self.store.invocations_with_status([Status.QUEUED, Status.RUNNING]):
            if invocation.status == Status.QUEUED:
                if at - invocation.created_at > older_than_s:
                    await self.enqueue(invocation)
                    count += 1
                continue
            if invocation.mode != "sync" or invocation.started_at is None:
                continue
            function = await self._function_by_id(invocation.function_id)
            timeout_s = function.timeout_s if function else 0.0
            if at - invocation.started_at > timeout_s + grace_s:
                invocation.status = Status.FAILED
                invocation.error = {
                    "type": "PlatformRestarted",
                    "message": "the api process running this synchronous invocation stopped",
                }
                invocation.finished_at = at
                if await self.store.update_invocation(invocation, attempt=invocation.attempt):
                    count += 1
        return count

    def retry_delay(self, attempt: int) -> float:
        """Exponential backoff before attempt number `attempt` (2, 3, ...)."""
        return float(min(300.0, self.settings.retry_base_s * 2 ** max(0, attempt - 2)))

    async def recover(self) -> int:
        """After a crash: requeue async work that was queued or running; sync callers are gone."""
        count = 0
        for invocation in await self.store.invocations_with_status([Status.QUEUED, Status.RUNNING]):
            if invocation.mode == "sync":
                invocation.status = Status.FAILED
                invocation.error = {
                    "type": "PlatformRestarted",
                    "message": "the platform stopped while this synchronous invocation ran",
                }
                invocation.finished_at = now()
                await self.store.update_invocation(invocation)
                continue
            if invocation.status == Status.RUNNING:
                invocation.status = Status.QUEUED
                invocation.attempt += 1
                await self.store.update_invocation(invocation)
            await self.enqueue(invocation)
            count += 1
        return count

    async def get(self, project: Project, invocation_id: str) -> Invocation:
        invocation = await self.store.get_invocation(project.id, invocation_id)
        if invocation is None:
            raise NotFound(f"invocation {invocation_id!r} not found", invocation=invocation_id)
        return invocation

    async def again(self, project: Project, invocation_id: str) -> Invocation:
        """Run again with the same input: a new async invocation of the same function (at its
        live version), queued as `submit` queues one."""
        earlier = await self.get(project, invocation_id)
        return await self.submit(
            project, earlier.function_name, earlier.payload, earlier.content_type
        )

    async def find(
        self,
        project: Project,
        function: Function | None = None,
        where: InvocationFilter | None = None,
        limit: int = 50,
    ) -> list[Invocation]:
        """A page of the project's invocations, newest first, without their large fields
        (payload, result, stdout, stderr): for lists."""
        if where is not None and where.trigger not in (None, *TRIGGERS):
            raise InvalidInput(
                f"unknown trigger {where.trigger!r}: use one of {', '.join(TRIGGERS)}"
            )
        return await self.store.list_invocations(
            project.id,
            function.id if function else None,
            limit=min(max(limit, 1), 1000),
            where=where,
            brief=True,
        )

    async def recent(
        self, project: Project, function: Function | None = None, limit: int = 50
    ) -> list[Invocation]:
        return await self.store.list_invocations(
            project.id, function.id if function else None, limit=min(max(limit, 1), 1000)
        )

    async def logs(
        self, project: Project, function: Function, after: float | None, limit: int = 200
    ) -> tuple[list[LogLine], float | None]:
        """Output of finished invocations, oldest first, and the cursor to pass as `after` to
        follow: the finish time of the newest invocation seen."""
        if after is None:
            recent = await self.store.list_invocations(project.id, function.id, limit=limit)
            invocations = sorted(
                (i for i in recent if i.finished_at is not None), key=lambda i: i.finished_at or 0
            )
        else:
            invocations = await self.store.list_invocations(
                project.id, function.id, limit=limit, finished_after=after
            )
        lines: list[LogLine] = []
        cursor = after
        for inv in invocations:
            cursor = max(cursor or 0.0, inv.finished_at or 0.0)
            at = inv.finished_at or time.time()
            for stream, text in (("stdout", inv.stdout), ("stderr", inv.stderr)):
                for line in text.splitlines():
                    lines.append(LogLine(inv.id, at, stream, line))
        return lines, cursor
