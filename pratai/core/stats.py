"""Usage statistics of a project's invocations: calls, errors, p50/p95 duration and cold starts
per time bucket over the last hour or day, for the console's plots.

They are computed here from the few columns the store's `invocation_samples` reads (never
payloads): a day is at most a few thousand small rows per project, which sort and count in
milliseconds, and the same code then serves SQLite, PostgreSQL and the memory store alike.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from pratai.core.models import Function, Invocation, Project, Status
from pratai.core.ports import InvocationSample, InvocationStore
from pratai.errors import InvalidInput

ERRORS = (Status.FAILED, Status.TIMED_OUT)


@dataclass(frozen=True)
class Window:
    name: str
    span_s: int
    step_s: int  # one bucket

    def starts(self, now: float) -> list[float]:
        """The buckets' start times, oldest first; the last bucket holds `now`."""
        end = (math.floor(now / self.step_s) + 1) * self.step_s
        return [float(end - self.span_s + k * self.step_s) for k in range(self.buckets)]

    @property
    def buckets(self) -> int:
        return self.span_s // self.step_s


HOUR = Window("hour", 3600, 60)
DAY = Window("day", 86400, 1800)
WINDOWS = {w.name: w for w in (HOUR, DAY)}


def window(name: str) -> Window:
    try:
        return WINDOWS[name]
    except KeyError:
        raise InvalidInput(f"unknown window {name!r}: use one of {', '.join(WINDOWS)}") from None


def percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """Nearest rank: the smallest value with at least `fraction` of the values at or below it."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass
class Figures:
    """A bucket's, or a whole window's, numbers."""

    calls: int = 0
    errors: int = 0
    cold_starts: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None

    @classmethod
    def of(cls, samples: Iterable[InvocationSample]) -> Figures:
        figures = cls()
        durations: list[float] = []
        for sample in samples:
            figures.calls += 1
            figures.errors += sample.status in ERRORS
            figures.cold_starts += bool(sample.cold_start)
            if sample.duration_ms is not None:
                durations.append(sample.duration_ms)
        durations.sort()
        figures.p50_ms, figures.p95_ms = percentile(durations, 0.5), percentile(durations, 0.95)
        return figures


@dataclass
class Usage:
    window: Window
    starts: list[float]  # each bucket's start (unix seconds), oldest first
    buckets: list[Figures]
    total: Figures


def summarize(samples: Sequence[InvocationSample], over: Window, now: float) -> Usage:
    """The samples (any order) that fall in the window ending at `now`, by bucket."""
    starts = over.starts(now)
    first = starts[0]
    grouped: list[list[InvocationSample]] = [[] for _ in starts]
    for sample in samples:
        k = int((sample.created_at - first) // over.step_s)
        if 0 <= k < len(grouped):
            grouped[k].append(sample)
    total = Figures.of(sample for group in grouped for sample in group)
    return Usage(over, starts, [Figures.of(group) for group in grouped], total)


@dataclass
class Activity:
    """Each function's calls per minute over the last hour and its newest invocation."""

    starts: list[float]
    calls: dict[str, list[int]] = field(default_factory=dict)  # function id -> per bucket
    last_run: dict[str, float] = field(default_factory=dict)  # function id -> created_at


@dataclass
class InFlight:
    queued: int
    running: int


class Stats:
    def __init__(self, store: InvocationStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    async def usage(
        self, project: Project, windows: Sequence[Window], function: Function | None = None
    ) -> dict[str, Usage]:
        """Each window's usage (of the project, or of one of its functions), from one read of
        the widest window."""
        now = self.clock()
        since = min(w.starts(now)[0] for w in windows)
        samples = await self.store.invocation_samples(
            project.id, since=since, function_id=function.id if function else None
        )
        return {w.name: summarize(samples, w, now) for w in windows}

    async def activity(self, project: Project, functions: Sequence[Function]) -> Activity:
        now = self.clock()
        found = Activity(HOUR.starts(now))
        samples = await self.store.invocation_samples(project.id, since=DAY.starts(now)[0])
        by_function: dict[str, list[InvocationSample]] = {}
        for sample in samples:  # newest first: the first seen is the last run
            by_function.setdefault(sample.function_id, []).append(sample)
            found.last_run.setdefault(sample.function_id, sample.created_at)
        for function in functions:
            hour = summarize(by_function.get(function.id, []), HOUR, now)
            found.calls[function.id] = [bucket.calls for bucket in hour.buckets]
            if function.id not in found.last_run:  # not run today: look further back
                newest = await self.store.invocation_samples(
                    project.id, function_id=function.id, limit=1
                )
                if newest:
                    found.last_run[function.id] = newest[0].created_at
        return found

    async def in_flight(self, project: Project) -> InFlight:
        samples = await self.store.invocation_samples(
            project.id, statuses=[Status.QUEUED, Status.RUNNING]
        )
        queued = sum(1 for s in samples if s.status == Status.QUEUED)
        return InFlight(queued=queued, running=len(samples) - queued)

    async def latest_failures(self, project: Project, limit: int = 10) -> list[Invocation]:
        """The newest failed or timed-out invocations, whole (their errors are shown)."""
        samples = await self.store.invocation_samples(project.id, statuses=ERRORS, limit=limit)
        found = [await self.store.get_invocation(project.id, s.id) for s in samples]
        return [invocation for invocation in found if invocation is not None]
