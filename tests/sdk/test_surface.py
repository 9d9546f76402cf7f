"""The blocking and asyncio twins of the SDK have one public surface: the same names, and the
same parameters for each (async-ness aside). No server needed."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from typing import Any

import pytest

import pratai
from pratai.sdk import aio, client

TWINS = [
    (client.Client, aio.AsyncClient),
    (client.Functions, aio.AsyncFunctions),
    (client.Events, aio.AsyncEvents),
    (client.Invocation, aio.AsyncInvocation),
    (client.Job, aio.AsyncJob),
]
# asyncio's own names for the same thing (as httpx's AsyncClient has them)
RENAMED = {"close": "aclose", "__enter__": "__aenter__", "__exit__": "__aexit__"}
PROTOCOLS = {*RENAMED, *RENAMED.values()} - {"close", "aclose"}
# a concurrent.futures.Executor is a pool of threads; asyncio code awaits submit() or map()
SYNC_ONLY = {(client.Client, "executor")}


def surface(cls: type) -> dict[str, Any]:
    """Public name -> its parameters (name, kind, default, annotation), or "property"."""
    out: dict[str, Any] = {}
    for name in dir(cls):
        if (name.startswith("_") and name not in PROTOCOLS) or (cls, name) in SYNC_ONLY:
            continue
        member = inspect.getattr_static(cls, name)
        if isinstance(member, property):
            out[name] = "property"
        elif callable(getattr(cls, name)):
            out[name] = [
                (p.name, p.kind, p.default, p.annotation)
                for p in inspect.signature(getattr(cls, name)).parameters.values()
            ]
    return out


def differences(sync: type, asynchronous: type) -> list[str]:
    ours = {RENAMED.get(name, name): shape for name, shape in surface(sync).items()}
    theirs = surface(asynchronous)
    found = [f"{sync.__name__} only: {n}" for n in sorted(ours.keys() - theirs.keys())]
    found += [f"{asynchronous.__name__} only: {n}" for n in sorted(theirs.keys() - ours.keys())]
    found += [
        f"{n}: {ours[n]} != {theirs[n]}"
        for n in sorted(ours.keys() & theirs.keys())
        if ours[n] != theirs[n]
    ]
    return found


@pytest.mark.parametrize(("sync", "asynchronous"), TWINS, ids=lambda c: c.__name__)
def test_twins_have_one_surface(sync: type, asynchronous: type) -> None:
    assert differences(sync, asynchronous) == []


def test_a_difference_is_found() -> None:
    class Sync:
        def get(self, name: str, timeout: float = 1) -> None: ...
        def extra(self) -> None: ...

    class Async:
        async def get(self, name: str, timeout: float = 2) -> None: ...

    found = differences(Sync, Async)
    assert found[0] == "Sync only: extra"
    assert found[1].startswith("get: ")
    assert len(found) == 2


def test_the_async_twin_awaits_what_the_sync_one_returns() -> None:
    for sync, asynchronous in TWINS:
        for name in surface(sync).keys() - {"__enter__", "__exit__", "close", "map"}:
            member = getattr(asynchronous, RENAMED.get(name, name))
            if surface(sync)[name] != "property":
                assert inspect.iscoroutinefunction(member), f"{asynchronous.__name__}.{name}"
                assert not inspect.iscoroutinefunction(getattr(sync, name))


@pytest.fixture
def pair() -> Iterator[tuple[pratai.Client, pratai.AsyncClient]]:
    # nothing is sent: the surface is there before any connection is opened
    sync = pratai.Client("http://127.0.0.1:9", "pk_x.y")
    asynchronous = pratai.AsyncClient("http://127.0.0.1:9", "pk_x.y")
    yield sync, asynchronous
    sync.close()
    asyncio.run(asynchronous.aclose())


def public(obj: object) -> set[str]:
    return {name for name in vars(obj) if not name.startswith("_")}


def test_twin_instances_have_the_same_attributes(
    pair: tuple[pratai.Client, pratai.AsyncClient],
) -> None:
    sync, asynchronous = pair
    assert public(sync) == public(asynchronous) == {"url", "python", "functions", "events"}
    view = {"id": "j-1", "status": "queued"}
    assert public(client.Job(sync, view)) == public(aio.AsyncJob(asynchronous, view))
    assert public(client.Invocation(sync, view)) == public(aio.AsyncInvocation(asynchronous, view))
