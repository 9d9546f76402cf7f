"""Triggers say when a function runs: a webhook, a message on a topic, or a timer.

Timer policy: a timer fires at most once per tick, even with several schedulers (each tick is
claimed with a row in the store). Ticks missed while no scheduler ran are coalesced: on restart
the most recent due tick fires once, older missed ticks are skipped.
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from pratai.core.events import Events, check_topic
from pratai.core.models import Function, Project, Trigger, TriggerKind, new_id
from pratai.core.ports import TriggerStore
from pratai.errors import InvalidInput, NotFound

MODES = ("async", "wait_for_response")


@dataclass(frozen=True, kw_only=True)
class TriggerSpec:
    kind: str
    mode: str = "async"
    topic: str | None = None
    frequency_minutes: float | None = None
    cron: str | None = None
    timezone: str | None = None


def validate(spec: TriggerSpec) -> None:
    kinds = [k.value for k in TriggerKind]
    if spec.kind not in kinds:
        raise InvalidInput(f"unknown event {spec.kind!r}: use one of {', '.join(kinds)}")
    if spec.mode not in MODES:
        raise InvalidInput(f"unknown type {spec.mode!r}: use async or wait_for_response")
    if spec.mode == "wait_for_response" and spec.kind != TriggerKind.WEBHOOK:
        raise InvalidInput("wait_for_response works with webhook events only")
    if spec.kind == TriggerKind.MESSAGE:
        if not spec.topic:
            raise InvalidInput("a message event needs --subscribe_to TOPIC")
        check_topic(spec.topic)
    if spec.kind == TriggerKind.TIMER:
        if (spec.frequency_minutes is None) == (spec.cron is None):
            raise InvalidInput("a timer needs exactly one of --frequency MINUTES or --cron EXPR")
        if spec.frequency_minutes is not None and not 0 < spec.frequency_minutes <= 525_600:
            raise InvalidInput("--frequency must be a positive number of minutes")
        if spec.cron is not None and not croniter.is_valid(spec.cron):
            raise InvalidInput(f"invalid cron expression {spec.cron!r}")
        if spec.timezone is not None:
            try:
                ZoneInfo(spec.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise InvalidInput(f"unknown time zone {spec.timezone!r}") from None


def new_trigger(project_id: str, function_id: str, spec: TriggerSpec) -> Trigger:
    """The function's trigger that `spec` describes, or InvalidInput."""
    validate(spec)
    return Trigger(
        id=new_id(),
        project_id=project_id,
        function_id=function_id,
        kind=TriggerKind(spec.kind),
        mode=spec.mode,
        topic=spec.topic,
        frequency_s=spec.frequency_minutes * 60 if spec.frequency_minutes else None,
        cron=spec.cron,
        timezone=spec.timezone,
        token=secrets.token_urlsafe(24) if spec.kind == TriggerKind.WEBHOOK else None,
    )


def last_due_tick(trigger: Trigger, at: float) -> float | None:
    """The latest tick at or before `at` (never before the trigger existed)."""
    if trigger.frequency_s:
        count = math.floor((at - trigger.created_at) / trigger.frequency_s)
        return trigger.created_at + count * trigger.frequency_s if count >= 1 else None
    if trigger.cron:
        return cron_tick(trigger.cron, trigger.timezone, trigger.created_at, at)
    return None


def cron_tick(cron: str, timezone: str | None, since: float, at: float) -> float | None:
    """The latest tick of `cron` at or before `at`, if it is not before `since`."""
    start = dt.datetime.fromtimestamp(at, ZoneInfo(timezone or "UTC"))
    tick = float(croniter(cron, start).get_prev(float))
    return tick if tick >= since else None


def next_ticks(trigger: Trigger, at: float, count: int = 5) -> list[float]:
    """The timer's next `count` ticks after `at`, as `last_due_tick` counts them."""
    if trigger.frequency_s:
        done = max(0, math.floor((at - trigger.created_at) / trigger.frequency_s))
        first = trigger.created_at + (done + 1) * trigger.frequency_s
        return [first + i * trigger.frequency_s for i in range(count)]
    if trigger.cron:
        start = dt.datetime.fromtimestamp(
            max(at, trigger.created_at), ZoneInfo(trigger.timezone or "UTC")
        )
        ticks = croniter(trigger.cron, start)
        return [float(ticks.get_next(float)) for _ in range(count)]
    return []


class Triggers:
    def __init__(self, store: TriggerStore, events: Events) -> None:
        self.store = store
        self.events = events

    def forget(self, trigger: Trigger) -> None:
        """A trigger was added or deleted: cached subscribers of its topic are stale."""
        self.events.forget_subscribers(trigger.project_id, trigger.topic)

    async def create(self, function: Function, spec: TriggerSpec) -> Trigger:
        trigger = new_trigger(function.project_id, function.id, spec)
        await self.store.create_trigger(trigger)
        self.forget(trigger)
        return trigger

    async def all(self, project: Project, function: Function | None = None) -> list[Trigger]:
        return await self.store.list_triggers(
            project.id, function_id=function.id if function else None
        )

    async def of_function(self, function: Function) -> list[Trigger]:
        return await self.store.list_triggers(function.project_id, function_id=function.id)

    async def delete(self, project: Project, trigger_id: str) -> None:
        trigger = await self.store.get_trigger(trigger_id)
        if trigger is None or trigger.project_id != project.id:
            raise NotFound(f"trigger {trigger_id!r} not found", trigger=trigger_id)
        await self.store.delete_trigger(trigger_id)
        self.forget(trigger)

    async def by_token(self, token: str) -> Trigger:
        trigger = await self.store.get_trigger_by_token(token)
        if trigger is None:
            raise NotFound("no webhook at this address")
        return trigger
