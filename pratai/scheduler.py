"""The timer loop: fires due ticks of timer triggers and scheduled jobs, at most once each
across schedulers."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from pratai.core.invocations import Invocations
from pratai.core.models import Trigger, TriggerKind
from pratai.core.ports import TickStore, TriggerStore
from pratai.core.saved_jobs import SavedJobs
from pratai.core.triggers import last_due_tick

log = logging.getLogger("pratai.scheduler")


class _Store(TriggerStore, TickStore, Protocol):
    """Timer triggers and the ticks they fired."""


class Scheduler:
    def __init__(
        self,
        store: _Store,
        invocations: Invocations,
        saved_jobs: SavedJobs | None = None,
        interval_s: float = 1.0,
    ) -> None:
        self.store = store
        self.invocations = invocations
        self.saved_jobs = saved_jobs
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._fired: dict[str, float] = {}  # trigger id -> last tick seen fired (by anyone)
        self.on_fired: Callable[[Trigger], Awaitable[None]] | None = None  # metrics

    async def tick(self, at: float | None = None) -> int:
        """One pass over the timers; returns how many ticks this scheduler fired."""
        at = time.time() if at is None else at
        fired = 0
        for trigger in await self.store.list_triggers(kind=TriggerKind.TIMER):
            due = last_due_tick(trigger, at)
            if due is None or self._fired.get(trigger.id, -1.0) >= due:
                continue
            self._fired[trigger.id] = due
            # The claim makes the tick fire once across schedulers; the invocation's id, made
            # of the trigger and the tick, makes it so as well. So a scheduler that sees the
            # tick claimed submits it too (a no-op when it exists): the claimer may have died
            # between its claim and its submit.
            claimed = await self.store.claim_tick(trigger.id, due, at)
            payload = {
                "trigger": trigger.id,
                "tick": dt.datetime.fromtimestamp(due, dt.UTC).isoformat(),
            }
            invocation_id = hashlib.sha256(f"{trigger.id}:{due}".encode()).hexdigest()[:32]
            await self.invocations.submit_for(
                trigger.function_id,
                json.dumps(payload).encode(),
                "application/json",
                invocation_id=invocation_id,
                timer_id=trigger.id,
            )
            fired += claimed
            if claimed and self.on_fired is not None:
                await self.on_fired(trigger)
        if self.saved_jobs is not None:
            fired += await self.saved_jobs.tick(at)
        return fired

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("timer pass failed; trying again")
            await asyncio.sleep(self.interval_s)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
