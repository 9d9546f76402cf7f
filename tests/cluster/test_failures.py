"""Failures of a cluster's parts, as real processes: a NATS server killed in a cluster of three,
a single NATS server restarted (soon, and after its nodes were declared lost), an api replica
killed, a node joining mid-burst, and a scheduler killed while two share the timers and the
queue. Every invocation accepted (202) must end `succeeded`, once, without restarting any
pratai process."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster.harness import Cluster, can_make_namespaces, cluster
from tests.cluster.test_cluster import WHERE, deploy, nodes_of, submit_many
from tests.helpers import wait_for

pytestmark = pytest.mark.skipif(
    not can_make_namespaces(), reason="the cluster tests make network namespaces: root and ip"
)

# A timer's function: returns the tick it was fired for.
TICK = """
def main(payload):
    return payload["tick"]
"""

TICK_S = 3.0  # --frequency 0.05 (minutes): the CLI takes fractions of a minute


class Submitter:
    """A client submitting async invocations of `function` to one api, one after another, in a
    thread, until it has made `count` submissions, or is told to stop, or (with
    `stop_on_error`) fails once."""

    def __init__(
        self,
        made: Cluster,
        api: int,
        function: str,
        *,
        count: int = 10_000,
        payload: dict[str, Any] | None = None,
        stop_on_error: bool = False,
    ) -> None:
        self.made = made
        self.api = api
        self.function = function
        self.count = count
        self.payload = payload or {}
        self.stop_on_error = stop_on_error
        self.accepted: list[str] = []  # ids answered 202
        self.refused: list[str] = []  # what the others got
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with self.made.http(self.api, timeout=90) as http:
            for n in range(self.count):
                if self.halt.is_set():
                    return
                try:
                    answer = http.post(
                        f"/v1/functions/{self.function}/invoke?async=true",
                        json={"n": f"{self.api}-{n}", **self.payload},
                    )
                except httpx.HTTPError as exc:
                    self.refused.append(type(exc).__name__)
                else:
                    if answer.status_code == 202:
                        self.accepted.append(answer.json()["id"])
                        continue
                    self.refused.append(f"{answer.status_code} {answer.text[:200]}")
                if self.stop_on_error:
                    return

    def join(self, timeout: float = 180) -> None:
        """Waits for the client to have made its submissions."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the submitting client did not finish"

    def finish(self) -> None:
        self.halt.set()
        self.join()


def listed(made: Cluster, function: str, api: int = 0) -> list[dict[str, Any]]:
    """Every invocation of `function`, as `GET /v1/invocations?function=` lists them."""
    with made.http(api) as http:
        answer = http.get("/v1/invocations", params={"function": function, "limit": 1000})
        answer.raise_for_status()
        records: list[dict[str, Any]] = answer.json()
        return records


def count_succeeded(made: Cluster, function: str, api: int = 0) -> int:
    return sum(r["status"] == "succeeded" for r in listed(made, function, api))


def all_finished(
    made: Cluster, function: str, ids: list[str], api: int = 0, timeout: float = 120
) -> list[dict[str, Any]]:
    """The invocations `ids` once each of them finished; each is listed once."""
    wanted = set(ids)
    assert len(wanted) == len(ids), "an id was answered twice"

    def done() -> list[dict[str, Any]] | None:
        found = [r for r in listed(made, function, api) if r["id"] in wanted]
        counts = Counter(r["id"] for r in found)
        assert all(c == 1 for c in counts.values()), f"listed twice: {counts.most_common(3)}"
        if len(found) == len(ids) and all(r["status"] not in ("queued", "running") for r in found):
            return found
        return None

    try:
        return wait_for(done, timeout=timeout, interval=0.5, what=f"{len(ids)} invocations")
    except AssertionError:
        found = [r for r in listed(made, function, api) if r["id"] in wanted]
        states = Counter((r["status"], r["attempt"]) for r in found)
        raise AssertionError(
            f"{len(found)} of {len(ids)} listed, not all finished: {states}"
        ) from None


def assert_all_succeeded_once(records: list[dict[str, Any]], ids: list[str]) -> None:
    statuses = Counter(r["status"] for r in records)
    assert statuses == Counter({"succeeded": len(ids)}), (statuses, _failures(records))
    assert sorted(r["id"] for r in records) == sorted(ids)
    numbers = [r["result"]["n"] for r in records]  # each payload ran to a result, once
    assert len(set(numbers)) == len(ids)


def _failures(records: list[dict[str, Any]]) -> list[Any]:
    return [r["error"] for r in records if r["status"] != "succeeded"][:3]


def _all_alive(made: Cluster) -> None:
    for proc in [*made.apis, *made.schedulers, *made.nodes]:
        proc.alive()


def _busy(made: Cluster, node: str) -> int:
    with made.http() as http:
        return int(next(n["busy"] for n in http.get("/v1/nodes").json() if n["name"] == node))


def _stream_leader(made: Cluster) -> int:
    """The index of the NATS server leading the invocations queue's consumer."""
    for server in made.nats:
        try:
            url = f"http://{server.host}:{server.monitor_port}/jsz?consumers=true"
            report = httpx.get(url, timeout=2).json()
        except httpx.HTTPError:
            continue
        for account in report.get("account_details", []):
            for stream in account.get("stream_detail", []):
                for consumer in stream.get("consumer_detail") or []:
                    if consumer["name"] == "invocations":
                        leader = consumer["cluster"]["leader"]
                        return next(i for i, s in enumerate(made.nats) if s.name == leader)
    raise AssertionError("no NATS server leads the invocations queue")


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[Cluster]:
    with cluster(tmp_path) as made:
        made.start_api()
        made.start_scheduler()
        made.start_node("a")
        made.start_node("b")
        yield made


def test_a_nats_server_killed_in_a_cluster_of_three_loses_no_invocation(tmp_path: Path) -> None:
    with cluster(tmp_path, nats_count=3) as made:
        assert made.broker_url.count("nats://") == 3  # every process knows all three
        made.start_api()
        made.start_scheduler()
        made.start_node("a")
        made.start_node("b")
        deploy(made, "where", WHERE, "--concurrency", "8")
        client = Submitter(made, 0, "where", count=200, payload={"sleep": 0.05})
        wait_for(
            lambda: len(client.accepted) >= 60 and count_succeeded(made, "where") >= 20,
            timeout=60,
            what="the burst to be under way",
        )
        killed = _stream_leader(made)
        made.nats[killed].kill()
        client.join()
        # Two servers of three still make a quorum: no submission fails.
        assert client.refused == [] and len(client.accepted) == 200
        records = all_finished(made, "where", client.accepted)
        assert_all_succeeded_once(records, client.accepted)
        assert set(nodes_of(records)) == {"a", "b"}
        _all_alive(made)


def test_a_restarted_nats_server_loses_nothing_accepted_and_everyone_resumes(
    two_nodes: Cluster,
) -> None:
    made = two_nodes
    deploy(made, "where", WHERE, "--concurrency", "8")
    client = Submitter(made, 0, "where", count=150, payload={"sleep": 0.1})
    wait_for(
        lambda: len(client.accepted) >= 50 and count_succeeded(made, "where") >= 10,
        timeout=60,
        what="the burst to be under way",
    )
    nats = made.nats[0]
    nats.kill()
    # Up again on the same store and port, sooner than PRATAI_NODE_LOST_S (3 s): the nodes are
    # not lost, but the orders and replies on the way when it died are.
    nats.start()
    client.join()
    # While NATS was away a submission may wait or fail, as a server error, never as the
    # caller's.
    assert not [r for r in client.refused if r.startswith("4")], client.refused
    assert len(client.accepted) >= 100, client.refused
    records = all_finished(made, "where", client.accepted, timeout=150)
    assert_all_succeeded_once(records, client.accepted)

    with made.http() as http:
        answer = http.post("/v1/functions/where/invoke", json={"n": "after"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "succeeded"
    assert answer.json()["result"]["n"] == "after"
    assert made.node_states() == {"a": "ready", "b": "ready"}
    _all_alive(made)  # no pratai process was restarted


def test_a_lone_node_takes_its_calls_back_after_a_nats_outage_that_lost_it(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path) as made:
        made.start_api()
        made.start_scheduler()
        made.start_node("a")
        deploy(made, "where", WHERE, "--concurrency", "8")
        ids = submit_many(made, "where", 64, sleep=0.5)  # 4 s of work
        wait_for(lambda: _busy(made, "a") > 0, timeout=60, what="a to run calls")
        made.nats[0].kill()
        made.wait_node_state("a", "lost", timeout=30)  # what a had in hand is given up
        made.nats[0].start()
        # It is back: the calls given up go to it again, not to a node that never comes (a
        # call waited PRATAI's 60 s for a place, then failed NoNodeAvailable and was retried).
        records = all_finished(made, "where", ids, timeout=30)
        assert_all_succeeded_once(records, ids)
        assert made.node_states() == {"a": "ready"}


def test_an_api_replica_killed_while_clients_submit(tmp_path: Path) -> None:
    with cluster(tmp_path) as made:
        made.start_api()
        made.start_api()
        made.start_scheduler()
        made.start_node("a")
        made.start_node("b")
        deploy(made, "where", WHERE, "--concurrency", "8")
        doomed = Submitter(made, 0, "where", payload={"sleep": 0.05}, stop_on_error=True)
        other = Submitter(made, 1, "where", payload={"sleep": 0.05})
        wait_for(
            lambda: len(doomed.accepted) >= 30 and len(other.accepted) >= 30,
            timeout=60,
            what="both clients to submit",
        )
        made.apis[0].kill()
        doomed.join(timeout=30)
        assert doomed.refused, "the killed api still answers"
        before = len(other.accepted)
        wait_for(
            lambda: len(other.accepted) >= before + 50 or other.refused,
            timeout=60,
            what="the other api to go on answering",
        )
        other.finish()
        assert other.refused == []  # the other kept serving: each submission answered 202
        ids = doomed.accepted + other.accepted
        records = all_finished(made, "where", ids, api=1)
        assert_all_succeeded_once(records, ids)


def test_a_node_that_joins_mid_burst_takes_work(tmp_path: Path) -> None:
    with cluster(tmp_path) as made:
        made.start_api()
        made.start_scheduler()
        made.start_node("a", slots=4)
        deploy(made, "where", WHERE, "--concurrency", "4")
        ids = submit_many(made, "where", 160, sleep=0.25)  # 10 s of work for a alone
        wait_for(lambda: count_succeeded(made, "where") >= 8, timeout=60, what="a to be under way")
        made.start_node("b", slots=4)
        records = all_finished(made, "where", ids)
        assert_all_succeeded_once(records, ids)
        ran = nodes_of(records)
        assert ran["b"] > 0 and ran["a"] > 0, ran


def _ticks(made: Cluster) -> list[float]:
    """The ticks the timer's invocations ran for, from their results, in order."""
    records = listed(made, "tick")
    return sorted(
        dt.datetime.fromisoformat(r["result"]).timestamp()
        for r in records
        if r["status"] == "succeeded"
    )


def _assert_each_tick_once(made: Cluster) -> None:
    """No tick fired twice, none missed between the first and the last; none failed."""
    failed = [r["error"] for r in listed(made, "tick") if r["status"] == "failed"]
    assert failed == []
    ticks = _ticks(made)
    assert len(ticks) == len(set(ticks)), "a tick fired twice"
    gaps = [round(later - earlier, 3) for earlier, later in itertools.pairwise(ticks)]
    assert set(gaps) <= {TICK_S}, f"ticks missed: {gaps}"


def test_two_schedulers_fire_each_tick_once_and_survive_one_killed(tmp_path: Path) -> None:
    with cluster(tmp_path) as made:
        made.start_api()
        made.start_scheduler()
        made.start_scheduler()
        made.start_node("a")
        made.start_node("b")
        deploy(made, "where", WHERE, "--concurrency", "8")
        deploy(made, "tick", TICK, "--event", "timer", "--frequency", str(TICK_S / 60))

        wait_for(lambda: len(_ticks(made)) >= 3, timeout=30, what="three ticks")
        _assert_each_tick_once(made)

        # A burst that fills both schedulers' 128 dispatch consumers; then one dies holding its
        # deliveries, which come back to the other after the dispatch lease (30 s).
        ids = submit_many(made, "where", 300, sleep=1)
        wait_for(lambda: count_succeeded(made, "where") >= 16, timeout=60, what="the burst to run")
        made.schedulers[0].kill()
        killed = time.time()

        records = all_finished(made, "where", ids, timeout=150)
        assert_all_succeeded_once(records, ids)
        taken_over = [r for r in records if r["attempt"] > 1]
        assert taken_over, "the killed scheduler held nothing: the test proves nothing"

        wait_for(
            lambda: sum(t > killed for t in _ticks(made)) >= 3,
            timeout=30,
            what="three ticks after one scheduler died",
        )
        _assert_each_tick_once(made)
        made.schedulers[1].alive()
