"""The nodes of a cluster as one control-plane process sees them, from their heartbeats.

A node takes work while its heartbeats come, its token verifies and it is not draining. One
silent for PRATAI_NODE_LOST_S is lost: the calls sent to it are sent elsewhere. Placement of a
call: a node with a warm instance of that version first; else the node with the most free
memory; among those, the one with the fewest calls from this process not yet answered (a
heartbeat is up to PRATAI_HEARTBEAT_S old, so a burst would otherwise all go to one node).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import nats.errors
from nats.aio.msg import Msg

from pratai.cluster.link import HEARTBEAT, Link, control_subject
from pratai.cluster.orders import Heartbeat, warm_key
from pratai.errors import Conflict, NotFound

log = logging.getLogger("pratai.cluster")

Verify = Callable[[str], Awaitable[bool]]
"""Whether a node token is valid (made by an admin and not revoked)."""

FORGET_LOST_S = 600.0  # a lost node stays listed this long
_REVERIFY_S = 10.0  # a verified token is checked again after this long (a revoke applies)


@dataclass
class Member:
    beat: Heartbeat
    seen: float  # monotonic time of its last heartbeat
    authorized: bool = False
    verified_at: float = 0.0
    sent: int = 0  # this process's calls to it, not yet answered
    answered: int = 0  # this process's calls to it answered since its last heartbeat
    gone: asyncio.Event = field(default_factory=asyncio.Event)  # lost, stopped or restarted
    beats: int = 0  # heartbeats heard from this instance
    beaten: asyncio.Event = field(default_factory=asyncio.Event)  # set at the next heartbeat

    @property
    def name(self) -> str:
        return self.beat.name

    @property
    def free_mb(self) -> int:
        return self.beat.memory_budget_mb - self.beat.memory_used_mb

    def free_slots(self) -> int:
        """Its slots less those busy: by its last heartbeat, less the calls answered since (a
        heartbeat is up to PRATAI_HEARTBEAT_S old), and at least this process's own."""
        return self.beat.slots - max(self.beat.busy - self.answered, self.sent)

    def lacks(self, dispatch: str, beats_at_send: int) -> bool:
        """Whether its last heartbeat, a whole beat or more after the order `dispatch` was sent
        to it (when it had beaten `beats_at_send` times), says it does not hold that order:
        it has answered it, or never got it."""
        holding = self.beat.holding
        return holding is not None and self.beats - beats_at_send >= 2 and dispatch not in holding


class Registry:
    def __init__(
        self,
        link: Link,
        verify: Verify,
        *,
        lost_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.link = link
        self.verify = verify
        self.lost_s = lost_s
        self.clock = clock
        self._members: dict[str, Member] = {}
        self._changed = asyncio.Event()
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.link.nc.subscribe(HEARTBEAT, cb=self._on_heartbeat)
        self._watch = asyncio.create_task(self._watch_forever())

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch

    async def _on_heartbeat(self, msg: Msg) -> None:
        try:
            beat = Heartbeat.decode(msg.data)
        except ValueError:
            log.warning("ignored a message on %s that is no heartbeat", HEARTBEAT)
            return
        await self.heard(beat)

    async def heard(self, beat: Heartbeat) -> None:
        now = self.clock()
        member = self._members.get(beat.name)
        if member is None or member.beat.instance != beat.instance:
            if member is not None:
                member.gone.set()  # restarted: what was sent to it is not coming back
            member = self._members[beat.name] = Member(beat, now)
        if member.beat.token != beat.token or now - member.verified_at > _REVERIFY_S:
            member.authorized = await self.verify(beat.token)
            member.verified_at = now
            if not member.authorized:
                log.warning("node %s: its token is not valid; it gets no work", beat.name)
        member.beat, member.seen, member.answered = beat, now, 0
        member.beats += 1
        member.beaten.set()
        member.beaten = asyncio.Event()
        if beat.state == "stopped":
            member.gone.set()
        elif member.gone.is_set():  # back after being lost: what was sent then went elsewhere
            log.warning("node %s is back", beat.name)
            member.gone = asyncio.Event()
        self.changed()

    def changed(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for_change(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._changed.wait()

    async def _watch_forever(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.lost_s / 4))
            self.check()

    def check(self) -> None:
        """Marks the silent members lost; forgets the long lost."""
        now = self.clock()
        for name, member in list(self._members.items()):
            silent = now - member.seen
            if silent > self.lost_s and not member.gone.is_set():
                log.warning("node %s is lost: no heartbeat for %.1f s", name, silent)
                member.gone.set()
                self.changed()
            if silent > FORGET_LOST_S:
                del self._members[name]

    def state(self, member: Member) -> str:
        if member.beat.state == "stopped":
            return "stopped"
        if self.clock() - member.seen > self.lost_s:
            return "lost"
        if not member.authorized:
            return "unauthorized"
        return member.beat.state

    def ready(self) -> list[Member]:
        return [m for m in self._members.values() if self.state(m) == "ready"]

    def place(
        self, function_id: str, version: int, memory_mb: int, exclude: set[str] | None = None
    ) -> Member | None:
        """The node to send a call to, or None if every node that could take it is full."""
        fits = [
            m
            for m in self.ready()
            if m.beat.memory_budget_mb >= memory_mb and m.name not in (exclude or ())
        ]
        open_ = [m for m in fits if m.free_slots() > 0]
        if not open_:
            return None
        key = warm_key(function_id, version)
        return max(
            open_,
            key=lambda m: (key in m.beat.warm, m.free_mb >= memory_mb, -m.sent, m.free_mb),
        )

    def largest_budget_mb(self) -> int:
        """The largest memory budget of a node taking work (`NodeCapacity`). While none is, any
        memory may fit the node that comes: nothing is refused for it."""
        budgets = [m.beat.memory_budget_mb for m in self.ready()]
        return max(budgets) if budgets else sys.maxsize

    def largest_cpus(self) -> int | None:
        """The most CPUs of a node taking work (`NodeCapacity`); None while none tells."""
        cpus = [m.beat.cpus for m in self.ready() if m.beat.cpus > 0]
        return max(cpus) if cpus else None

    def nodes(self) -> list[dict[str, Any]]:
        return [self._view(m) for m in sorted(self._members.values(), key=lambda m: m.name)]

    def _view(self, m: Member) -> dict[str, Any]:
        return {
            "name": m.name,
            "state": self.state(m),
            "memory": {
                "budget_mb": m.beat.memory_budget_mb,
                "used_mb": m.beat.memory_used_mb,
            },
            "slots": m.beat.slots,
            "busy": m.beat.busy,
            "load": m.beat.load,
            "warm": m.beat.warm,
            "runtimes": m.beat.runtimes,
            "started_at": m.beat.started_at,
            "last_heartbeat_s": round(self.clock() - m.seen, 3),
        }

    async def drain(self, name: str, drain: bool) -> dict[str, Any]:
        member = self._members.get(name)
        if member is None:
            raise NotFound(f"no node {name!r} (see `pratai node-list`)", node=name)
        request = json.dumps({"drain": drain}).encode()
        try:
            answer = await self.link.nc.request(control_subject(name), request, timeout=5)
            beat = Heartbeat.decode(answer.data)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError, ValueError):
            raise Conflict(
                f"node {name} did not answer (it is {self.state(member)})", node=name
            ) from None
        await self.heard(beat)
        return self._view(self._members[name])
