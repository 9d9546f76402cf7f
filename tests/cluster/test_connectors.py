"""Connectors in a cluster of real processes: they run in exactly one scheduler, the holder of the
`connectors` lease, and move to another within the lease's bound when it is killed.

Two connectors on one topic: NATS (the cluster's own server), whose core subscriptions would
deliver every message to each scheduler running it, so a second runner shows as a second
subscription and as duplicate invocations; and a Redis stream (the machine's Redis), which keeps
what is added while no scheduler reads it, so entries added right after the kill still arrive.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import psycopg
import pytest
import redis

from pratai.cluster.connector_lease import EVERY_S, LEASE, LEASE_TTL_S
from tests.cluster.harness import Cluster, Proc, can_make_namespaces, cluster
from tests.helpers import make_zip, wait_for

pytestmark = pytest.mark.skipif(
    not can_make_namespaces(), reason="the cluster tests make network namespaces: root and ip"
)

REDIS_URL = "redis://127.0.0.1:6379/0"
# The slowest a connector's first connection may be on a busy machine, beyond the lease's bound.
CONNECT_S = 8.0

# A NATS message's event data is the message; a Redis entry's is its fields, JSON in `data`.
ECHO = """
def main(payload):
    return payload.get("data", payload)
"""


@pytest.fixture
def made(tmp_path: Path) -> Iterator[Cluster]:
    """Two apis, two schedulers, one node."""
    with cluster(tmp_path) as made:
        made.start_api()
        made.start_api()
        made.start_scheduler()
        made.start_scheduler()
        made.start_node("a")
        yield made


@pytest.fixture
def stream() -> Iterator[str]:
    name = f"pratai-cluster-{uuid.uuid4().hex[:8]}"
    yield name
    with redis.Redis.from_url(REDIS_URL) as client:
        client.delete(name)


def subscriptions(made: Cluster, subject: str) -> int:
    """How many connections subscribe to `subject`, as the NATS server counts them."""
    server = made.nats[0]
    url = f"http://{server.host}:{server.monitor_port}/connz?subs=1&limit=1024"
    conns = httpx.get(url, timeout=5).json()["connections"] or []
    return sum(subject in (conn.get("subscriptions_list") or []) for conn in conns)


def holder(made: Cluster) -> Proc | None:
    """The scheduler that holds the connectors lease (its holder id names its pid)."""
    with psycopg.connect(made.database_url, autocommit=True, connect_timeout=5) as db:
        row = db.execute("SELECT holder, until FROM leases WHERE name = %s", (LEASE,)).fetchone()
    if row is None or row[1] <= time.time():
        return None
    pid = int(row[0].split(":")[-2])
    [proc] = [p for p in made.schedulers if p.process is not None and p.process.pid == pid]
    return proc


def publish_nats(made: Cluster, subject: str, numbers: range) -> None:
    async def send() -> None:
        nc = await nats.connect(made.nats[0].url, allow_reconnect=False, connect_timeout=5)
        try:
            for n in numbers:
                await nc.publish(subject, json.dumps({"via": "nats", "n": n}).encode())
            await nc.flush()
        finally:
            await nc.close()

    asyncio.run(send())


def add_entries(stream: str, numbers: range) -> None:
    with redis.Redis.from_url(REDIS_URL) as client:
        for n in numbers:
            client.xadd(stream, {"data": json.dumps({"via": "redis", "n": n})})


def results(made: Cluster, function: str, count: int, timeout: float) -> Counter[tuple[str, int]]:
    """(via, n) of each succeeded invocation, once at least `count` of them succeeded."""
    with made.http() as http:

        def enough() -> Counter[tuple[str, int]] | None:
            found = http.get("/v1/invocations", params={"function": function, "limit": 1000})
            done = [i["result"] for i in found.json() if i["status"] == "succeeded"]
            return Counter((r["via"], r["n"]) for r in done) if len(done) >= count else None

        return wait_for(enough, timeout=timeout, interval=0.2, what=f"{count} invocations")


def expected(numbers: range) -> Counter[tuple[str, int]]:
    return Counter((via, n) for via in ("nats", "redis") for n in numbers)


def test_connectors_run_in_one_scheduler_and_move_when_it_is_killed(
    made: Cluster, stream: str
) -> None:
    subject = f"ext.{uuid.uuid4().hex[:8]}.orders"
    package = made.tmp / "echo.zip"
    package.write_bytes(make_zip({"main.py": ECHO}))
    made.cli("function-create", "echo", "--file", str(package), "--event", "message",
             "--subscribe_to", "feed")  # fmt: skip

    # Created through different apis; neither api runs them.
    nats_source = {"kind": "nats", "url": made.nats[0].url, "options": {"subject": subject}}
    redis_source = {"kind": "redis", "url": REDIS_URL, "options": {"stream": stream}}
    for index, (name, source) in enumerate(
        (("from-nats", nats_source), ("from-redis", redis_source))
    ):
        body = {"name": name, "topic": "feed", **source}
        with made.http(index) as http:
            created = http.post("/v1/connectors", json=body)
            assert created.status_code == 201, created.text
            assert created.json()["connected"] is False  # stored; a scheduler runs it

    def running() -> Proc | None:
        """The lease's holder, once NATS counts one subscription and the stream a reader."""
        with redis.Redis.from_url(REDIS_URL) as client:
            reading = client.exists(stream) and any(
                g["consumers"] for g in client.xinfo_groups(stream)
            )
        return holder(made) if subscriptions(made, subject) == 1 and reading else None

    first = wait_for(
        lambda: all(p.alive() for p in made.schedulers) and running(),
        timeout=60,
        interval=0.2,
        what="the connectors to run",
    )
    add_entries(stream, range(5))
    publish_nats(made, subject, range(5))
    assert results(made, "echo", 10, timeout=60) == expected(range(5))
    assert subscriptions(made, subject) == 1  # one scheduler runs it, not two

    first.kill()  # kill -9 the holder
    killed_at = time.monotonic()
    add_entries(stream, range(5, 10))  # kept by Redis until the next holder reads them

    def moved() -> Proc | None:
        now = holder(made)
        if now is None or now is first:
            return None
        return now if now.alive() and running() is now else None

    bound = LEASE_TTL_S + EVERY_S + CONNECT_S
    second = wait_for(moved, timeout=bound + 30, interval=0.2, what="the connectors to move")
    took = time.monotonic() - killed_at
    assert took < bound, f"the connectors moved after {took:.1f} s; the bound is {bound} s"
    publish_nats(made, subject, range(5, 10))  # NATS keeps nothing: sent once it listens again
    got = results(made, "echo", 20, timeout=60)
    assert got == expected(range(10)), got  # each message once: none lost, none twice
    with made.http() as http:
        events = http.get("/v1/events/feed", params={"limit": 1000}).json()
    assert len(events) == 20
    assert subscriptions(made, subject) == 1
    # Any api shows what the scheduler running them says: connected, and what it forwarded.
    with made.http(1) as http:
        shown = {c["name"]: c for c in http.get("/v1/connectors").json()}
    assert (shown["from-nats"]["connected"], shown["from-nats"]["forwarded"]) == (True, 5)
    assert (shown["from-redis"]["connected"], shown["from-redis"]["forwarded"]) == (True, 5)

    # A delete through either api stops it in the scheduler that runs it, within a few rounds.
    with made.http(1) as http:
        assert http.delete("/v1/connectors/from-nats").status_code == 204
    wait_for(
        lambda: second.alive() and subscriptions(made, subject) == 0,
        timeout=4 * EVERY_S + 10,
        interval=0.2,
        what="the deleted connector to stop",
    )
