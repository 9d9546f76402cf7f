"""Which node a call goes to, and when a node counts as lost: the registry on heartbeats."""

from __future__ import annotations

import pytest

from pratai.cluster.link import Link
from pratai.cluster.orders import Heartbeat, RunOrder, apply_outcome, encode_outcome, warm_key
from pratai.cluster.registry import Registry
from pratai.core.models import Function, FunctionVersion, Invocation, Status
from tests.helpers import Clock

GOOD = "nt_1.good"


async def _valid(token: str) -> bool:
    return token == GOOD


def beat(name: str, **changes: object) -> Heartbeat:
    values: dict[str, object] = {
        "name": name,
        "instance": f"{name}-1",
        "token": GOOD,
        "state": "ready",
        "memory_budget_mb": 1024,
        "memory_used_mb": 0,
        "slots": 4,
        "busy": 0,
        "warm": [],
        "load": 0.0,
        "runtimes": ["python"],
        "started_at": 0.0,
        "sent_at": 0.0,
    }
    return Heartbeat(**(values | changes))  # type: ignore[arg-type]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry(clock: Clock) -> Registry:
    return Registry(Link([], name="test"), _valid, lost_s=3.0, clock=clock)


async def test_a_warm_node_first_else_the_most_free_memory(registry: Registry) -> None:
    await registry.heard(beat("a", memory_used_mb=100))
    await registry.heard(beat("b", memory_used_mb=900))
    placed = registry.place("f1", 1, 128)
    assert placed is not None and placed.name == "a"
    await registry.heard(beat("b", memory_used_mb=900, warm=[warm_key("f1", 1)]))
    placed = registry.place("f1", 1, 128)
    assert placed is not None and placed.name == "b"
    placed = registry.place("f1", 2, 128)  # another version: not warm anywhere
    assert placed is not None and placed.name == "a"


async def test_calls_in_flight_spread_a_burst_and_full_nodes_take_none(
    registry: Registry,
) -> None:
    await registry.heard(beat("a", slots=2))
    await registry.heard(beat("b", slots=2))
    placed = []
    for _ in range(4):
        member = registry.place("f", 1, 128)
        assert member is not None
        member.sent += 1  # as the executor counts a call until its reply
        placed.append(member.name)
    assert sorted(placed) == ["a", "a", "b", "b"]
    assert registry.place("f", 1, 128) is None


async def test_memory_no_node_has_is_refused_and_none_fits_a_small_node(
    registry: Registry,
) -> None:
    assert registry.largest_budget_mb() > 10**6  # no node yet: nothing is refused for it
    await registry.heard(beat("small", memory_budget_mb=256))
    await registry.heard(beat("big", memory_budget_mb=2048))
    assert registry.largest_budget_mb() == 2048
    placed = registry.place("f", 1, 512)
    assert placed is not None and placed.name == "big"
    assert registry.place("f", 1, 4096) is None


async def test_the_most_cpus_of_a_ready_node_bound_what_instances_are_shown_to_get(
    registry: Registry,
) -> None:
    assert registry.largest_cpus() is None  # no node yet: the cap is memory's alone
    old = beat("old").encode().replace(b', "cpus": 0', b"")  # a node from before it told
    assert b"cpus" not in old
    await registry.heard(Heartbeat.decode(old))
    assert registry.largest_cpus() is None
    await registry.heard(beat("a", cpus=2))
    await registry.heard(beat("b", cpus=8, state="draining"))
    assert registry.largest_cpus() == 2  # a draining node takes no work


async def test_silent_nodes_are_lost_and_come_back(registry: Registry, clock: Clock) -> None:
    await registry.heard(beat("a"))
    member = registry.place("f", 1, 128)
    assert member is not None
    clock.advance(2.9)
    registry.check()
    assert not member.gone.is_set()
    clock.advance(0.2)
    registry.check()
    assert member.gone.is_set()  # a call waiting on it is sent elsewhere
    assert [n["state"] for n in registry.nodes()] == ["lost"]
    assert registry.place("f", 1, 128) is None
    await registry.heard(beat("a"))
    assert [n["state"] for n in registry.nodes()] == ["ready"]
    assert registry.place("f", 1, 128) is not None


async def test_a_bad_token_a_drained_or_a_restarted_node(registry: Registry) -> None:
    await registry.heard(beat("rogue", token="nt_1.wrong"))
    await registry.heard(beat("d", state="draining"))
    assert {n["name"]: n["state"] for n in registry.nodes()} == {
        "d": "draining",
        "rogue": "unauthorized",
    }
    assert registry.place("f", 1, 128) is None
    await registry.heard(beat("a"))
    first = registry.place("f", 1, 128)
    assert first is not None
    await registry.heard(beat("a", instance="a-2"))  # restarted: its calls are not coming back
    assert first.gone.is_set()
    await registry.heard(beat("a", instance="a-2", state="stopped"))
    assert {n["name"]: n["state"] for n in registry.nodes()}["a"] == "stopped"


def test_an_order_and_its_outcome_round_trip() -> None:
    invocation = Invocation("i1", "p1", "f1", "fn", 3, "async", payload=b'{"n": 1}\n', attempt=2)
    order = RunOrder(
        "d1",
        invocation,
        Function("f1", "p1", "fn", memory_mb=256, fresh_per_call=True),
        FunctionVersion("f1", 3, "ab" * 32, "main.main", None, build_log="long log"),
        {"TOKEN": "s3cret"},
    )
    got = RunOrder.decode(order.encode())
    assert got.invocation.payload == b'{"n": 1}\n' and got.invocation.attempt == 2
    assert (got.function, got.secrets) == (order.function, {"TOKEN": "s3cret"})
    assert got.function.fresh_per_call is True  # the node makes its pool fresh per call too
    assert got.version.build_log == ""  # not sent
    assert got.image_archive is None
    image = RunOrder("d2", invocation, order.function, order.version, image_archive="cd" * 32)
    assert RunOrder.decode(image.encode()).image_archive == "cd" * 32  # where a node gets it
    with pytest.raises(ValueError):
        RunOrder.decode(b'{"dispatch": "d1"}\n')

    got.invocation.status, got.invocation.result = Status.SUCCEEDED, '{"ok": true}'
    reply = encode_outcome("d1", got.invocation)
    assert not apply_outcome(reply, "d0", invocation)  # a reply to an earlier sending
    assert invocation.status == Status.QUEUED
    assert apply_outcome(reply, "d1", invocation)
    assert (invocation.status, invocation.result) == (Status.SUCCEEDED, '{"ok": true}')


async def test_an_order_a_node_does_not_hold_a_beat_after_its_sending_was_lost(
    registry: Registry,
) -> None:
    await registry.heard(beat("a", holding=[]))
    member = registry.place("f", 1, 128)
    assert member is not None
    sent_at = member.beats  # the order "d1" goes out now
    await registry.heard(beat("a", holding=[]))  # may have left before the order arrived
    assert not member.lacks("d1", sent_at)
    await registry.heard(beat("a", holding=["d1"]))
    assert not member.lacks("d1", sent_at)
    await registry.heard(beat("a", holding=[]))  # answered, or the order never came
    assert member.lacks("d1", sent_at)
    await registry.heard(beat("a"))  # a node that does not tell what it holds
    assert not member.lacks("d1", sent_at)
    assert Heartbeat.decode(beat("a").encode()).holding is None
