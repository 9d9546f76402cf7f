"""Consumers waiting for a queue's next message, for the brokers that wake them in-process."""

from __future__ import annotations

import asyncio
import collections
import contextlib


class Waiters:
    """A publish wakes one waiting consumer (`wake_one`), closing wakes them all."""

    def __init__(self) -> None:
        self._events: collections.deque[asyncio.Event] = collections.deque()

    def add(self) -> asyncio.Event:
        ev = asyncio.Event()
        self._events.append(ev)
        return ev

    def wake_one(self) -> None:
        while self._events:
            ev = self._events.popleft()
            if not ev.is_set():
                ev.set()
                return

    def wake_all(self) -> None:
        for ev in self._events:
            ev.set()

    def leave(self, ev: asyncio.Event, *, pass_on: bool = False) -> None:
        """A consumer stops waiting. Still listed, it would swallow the next wake-up; cancelled
        after its wake-up (`pass_on`), it hands that wake-up to another consumer."""
        if not ev.is_set():
            with contextlib.suppress(ValueError):
                self._events.remove(ev)
        elif pass_on:
            self.wake_one()
