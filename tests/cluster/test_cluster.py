"""Pratai on many machines, as real processes: `pratai api`, `pratai scheduler` and `pratai node`
on PostgreSQL and NATS, each node in a network namespace from which it reaches only NATS."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import pratai
from tests.cluster.harness import Cluster, can_make_namespaces, cluster
from tests.helpers import free_port, make_zip, wait_for

pytestmark = pytest.mark.skipif(
    not can_make_namespaces(), reason="the cluster tests make network namespaces: root and ip"
)

# Returns the node it ran on, so a test can tell where work went.
WHERE = """
import os, time

def main(payload):
    time.sleep(payload.get("sleep", 0))
    return {"n": payload.get("n"), "node": os.environ["PRATAI_NODE"]}
"""


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Cluster]:
    """One api, one scheduler, no node yet."""
    with cluster(tmp_path) as made:
        made.start_api()
        made.start_scheduler(PRATAI_METRICS_PORT=str(free_port()))
        yield made


def deploy(made: Cluster, name: str, source: str = WHERE, *extra: str) -> None:
    package = made.tmp / f"{name}.zip"
    package.write_bytes(make_zip({"main.py": source}))
    made.cli("function-create", name, "--file", str(package), *extra)


def submit_many(made: Cluster, name: str, count: int, **payload: Any) -> list[str]:
    """`count` async invocations, sent to the apis in turn."""
    ids = []
    clients = [made.http(index) for index in range(len(made.apis))]
    try:
        for n in range(count):
            http = clients[n % len(clients)]
            answer = http.post(f"/v1/functions/{name}/invoke?async=true",
                               json={"n": n, **payload})  # fmt: skip
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["id"])
    finally:
        for client in clients:
            client.close()
    return ids


def finished(made: Cluster, ids: list[str], timeout: float = 120) -> list[dict[str, Any]]:
    """The invocations once all of them finished."""
    with made.http() as http:

        def all_done() -> list[dict[str, Any]] | None:
            found = [http.get(f"/v1/invocations/{i}").json() for i in ids]
            done = [i for i in found if i["status"] not in ("queued", "running")]
            return found if len(done) == len(ids) else None

        return wait_for(all_done, timeout=timeout, what=f"{len(ids)} invocations to finish")


def nodes_of(records: list[dict[str, Any]]) -> Counter[str]:
    return Counter(record["result"]["node"] for record in records)


def test_a_cluster_runs_sync_and_async_calls_on_nodes_without_the_database(
    small: Cluster,
) -> None:
    small.start_scheduler(PRATAI_METRICS_PORT=str(free_port()))  # a second one
    # Each node serves its own metrics, to the scraper on the host that has the token.
    scrape = {"PRATAI_HOST": "0.0.0.0", "PRATAI_METRICS_PORT": "9464",
              "PRATAI_METRICS_TOKEN": "scraper-token"}  # fmt: skip
    small.start_node("a", **scrape)
    small.start_node("b", **scrape)
    deploy(small, "where")

    answer = json.loads(small.cli("invoke", "where", "--payload", '{"n": 1}', "-o", "json").stdout)
    assert answer["status"] == "succeeded"
    assert answer["result"]["n"] == 1 and answer["result"]["node"] in ("a", "b")

    records = finished(small, submit_many(small, "where", 40, sleep=0.05))
    assert {r["status"] for r in records} == {"succeeded"}
    assert sorted(r["result"]["n"] for r in records) == list(range(40))
    assert set(nodes_of(records)) == {"a", "b"}  # both took work

    ran = nodes_of(records) + Counter([answer["result"]["node"]])
    for node in small.nodes:
        assert small.bridge is not None and node.netns is not None
        url = f"http://{small.bridge.addresses[node.netns]}:9464/metrics"
        assert httpx.get(url).status_code == 401  # no token, and not on the node's loopback
        scraped = httpx.get(url, headers={"Authorization": "Bearer scraper-token"})
        assert scraped.status_code == 200
        found = {(s.name, tuple(sorted(s.labels.items()))): s.value
                 for family in text_string_to_metric_families(scraped.text)
                 for s in family.samples}  # fmt: skip
        name = node.env["PRATAI_NODE_NAME"]
        assert found[("pratai_node_calls_total", (("status", "succeeded"),))] == ran[name]
        assert found[("pratai_warm_instances", (("state", "idle"),))] >= 1  # still warm
        assert found[("pratai_node_memory_budget_bytes", ())] == 2048 * 2**20

    # Each scheduler counts the runs it stored, on /metrics on a port of its own: 40 in all.
    counted = 0.0
    for scheduler in small.schedulers:
        port = scheduler.env["PRATAI_METRICS_PORT"]
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        for family in text_string_to_metric_families(scraped):
            counted += sum(
                s.value for s in family.samples
                if s.name == "pratai_invocations_total"
                and s.labels == {"project": "default", "function": "where",
                                 "status": "succeeded", "trigger": "async"}
            )  # fmt: skip
    assert counted == 40

    listed = {n["name"]: n for n in json.loads(small.cli("node-list", "-o", "json").stdout)}
    assert {name: n["state"] for name, n in listed.items()} == {"a": "ready", "b": "ready"}
    assert listed["a"]["memory"]["budget_mb"] == 2048

    # The api's console works on the cluster: its overview counts the runs, its nodes page
    # lists the nodes from their heartbeats.
    url = small.api_url()
    with httpx.Client(base_url=url, headers={"origin": url}) as browser:
        signed = browser.post("/ui/signin", data={"key": small.admin_key})
        assert signed.status_code == 303 and "pratai_session" in browser.cookies
        overview = browser.get("/ui/")
        calls = re.search(r'data-stat="calls">\s*<div class="label">Invocations</div>\s*'
                          r'<div class="value">(\d+)</div>', overview.text)  # fmt: skip
        assert calls is not None and calls.group(1) == "41"  # the 1 sync call and the 40 async

        nodes = browser.get("/ui/nodes")
        assert nodes.status_code == 200
        assert {"a", "b"} <= set(re.findall(r"<td><strong>([^<]+)</strong>", nodes.text))

    # A node's namespace reaches NATS, and not PostgreSQL (nor anything else on the host).
    node = small.nodes[0]
    assert node.netns is not None
    probe = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)"
    nats_host, nats_port = small.nats[0].host, str(small.nats[0].port)
    reach = ["ip", "netns", "exec", node.netns, "python3", "-c", probe]
    assert subprocess.run([*reach, nats_host, nats_port], capture_output=True).returncode == 0
    for host, port in ((nats_host, "5432"), ("127.0.0.1", "5432")):
        assert subprocess.run([*reach, host, port], capture_output=True).returncode != 0


def statuses(made: Cluster, name: str) -> Counter[str]:
    with made.http() as http:
        listed = http.get("/v1/invocations", params={"function": name, "limit": 1000}).json()
    return Counter(record["status"] for record in listed)


def busy(made: Cluster, name: str) -> int:
    with made.http() as http:
        return int({n["name"]: n["busy"] for n in http.get("/v1/nodes").json()}[name])


def test_a_node_killed_mid_burst_loses_no_invocation(small: Cluster) -> None:
    """The whole cast: 2 apis, 2 schedulers, 3 nodes; 300 async invocations; kill -9 a node."""
    small.start_api()
    small.start_scheduler()
    for name in ("a", "b", "c"):
        small.start_node(name, slots=4)
    deploy(small, "where", WHERE, "--concurrency", "4")
    ids = submit_many(small, "where", 300, sleep=0.2)  # 300 x 0.2 s on 12 slots: about 5 s
    wait_for(lambda: statuses(small, "where")["succeeded"] >= 60, what="the burst under way")
    wait_for(lambda: busy(small, "a") > 0, what="a to be running calls")
    small.nodes[0].kill()
    small.wait_node_state("a", "lost", timeout=30)  # PRATAI_NODE_LOST_S is 3 s here
    records = finished(small, ids)
    assert {r["status"] for r in records} == {"succeeded"}, Counter(r["status"] for r in records)
    assert sorted(r["result"]["n"] for r in records) == list(range(300))  # each once
    assert {r["attempt"] for r in records} == {1}  # a lost node's calls are not retries
    ran = nodes_of(records)
    assert ran["a"] > 0 and ran["b"] > ran["a"] and ran["c"] > ran["a"]  # a's rest ran on b, c


def _node_proc(made: Cluster, name: str) -> Any:
    return next(p for p in made.nodes if p.env["PRATAI_NODE_NAME"] == name)


def test_a_stopped_node_is_lost_its_work_moves_and_its_late_results_are_not_stored(
    small: Cluster,
) -> None:
    small.start_node("a")
    deploy(small, "where", WHERE, "--concurrency", "4", "--timeout", "60")
    ids = submit_many(small, "where", 4, sleep=4)
    with small.http() as http:
        wait_for(
            lambda: all(http.get(f"/v1/invocations/{i}").json()["status"] == "running"
                        for i in ids),
            what="the calls to run on a",
        )  # fmt: skip
    _node_proc(small, "a").signal(signal.SIGSTOP)
    small.start_node("b")
    small.wait_node_state("a", "lost")
    records = finished(small, ids)
    assert [(r["status"], r["result"]["node"]) for r in records] == [("succeeded", "b")] * 4

    _node_proc(small, "a").signal(signal.SIGCONT)
    small.wait_node_state("a", "ready")
    with small.http() as http:

        def a_idle() -> bool:
            nodes = {n["name"]: n for n in http.get("/v1/nodes").json()}
            return nodes["a"]["busy"] == 0

        wait_for(a_idle, timeout=30, what="a to finish its late runs")  # and send their replies
    again = finished(small, ids)
    assert [(r["status"], r["result"]["node"]) for r in again] == [("succeeded", "b")] * 4


def test_memory_placement_drain_and_a_node_that_stops(small: Cluster) -> None:
    small.start_node("a", memory_mb=256)
    small.start_node("b", memory_mb=2048)
    package = small.tmp / "where.zip"
    package.write_bytes(make_zip({"main.py": WHERE}))
    refused = small.cli("function-create", "huge", "--file", str(package), "--memory", "4096",
                        check=False)  # fmt: skip
    assert refused.returncode == 1
    assert "the largest node memory budget is 2048 MB" in refused.stderr

    deploy(small, "where")
    deploy(small, "big", WHERE, "--memory", "512")
    records = finished(small, submit_many(small, "big", 10))
    assert nodes_of(records) == Counter({"b": 10})  # a's budget cannot hold one instance

    drained = json.loads(small.cli("node-drain", "b", "-o", "json").stdout)
    assert drained["state"] == "draining" and small.node_states()["b"] == "draining"
    records = finished(small, submit_many(small, "where", 10))
    assert nodes_of(records) == Counter({"a": 10})
    small.cli("node-drain", "b", "--undo")
    assert small.node_states()["b"] == "ready"
    unknown = small.cli("node-drain", "nobody", check=False)
    assert unknown.returncode == 1 and "no node 'nobody'" in unknown.stderr

    # SIGTERM: it finishes what it runs, says it stopped, and takes no more work.
    ids = submit_many(small, "big", 2, sleep=1)
    with small.http() as http:
        wait_for(
            lambda: all(http.get(f"/v1/invocations/{i}").json()["status"] == "running"
                        for i in ids),
            what="the calls to run on b",
        )  # fmt: skip
    _node_proc(small, "b").signal(signal.SIGTERM)
    small.wait_node_state("b", "stopped")
    assert [r["status"] for r in finished(small, ids)] == ["succeeded"] * 2
    late = finished(small, submit_many(small, "big", 1), timeout=120)
    assert late[0]["error"]["type"] == "NoNodeFits"  # a cannot hold it; b is gone


def test_jobs_run_on_nodes_their_output_streams_and_a_cancel_stops_them(small: Cluster) -> None:
    small.start_node("a")
    job_id = small.cli("job-submit", "--", "sh", "-c", "echo from a node; hostname").stdout.strip()
    with small.http() as http:

        def done() -> dict[str, Any] | None:
            job = http.get(f"/v1/jobs/{job_id}").json()
            return job if job["status"] not in ("queued", "running") else None

        job = wait_for(done, what="the job to finish")
        assert (job["status"], job["exit_code"]) == ("succeeded", 0)
        assert job["stdout"].startswith("from a node\n")

        script = "echo started; sleep 60; echo never"
        long_id = small.cli("job-submit", "--", "sh", "-c", script).stdout.strip()
        wait_for(
            lambda: http.get(f"/v1/jobs/{long_id}").json()["stdout"] == "started\n",
            what="the long job's first line to be stored while it runs",
        )
        small.cli("job-cancel", long_id)
        wait_for(
            lambda: {n["name"]: n["busy"] for n in http.get("/v1/nodes").json()}["a"] == 0,
            timeout=30,
            what="the node to stop the cancelled job",
        )
        cancelled = http.get(f"/v1/jobs/{long_id}").json()
        assert cancelled["status"] == "cancelled" and "never" not in cancelled["stdout"]

    offset = 5  # a closure's state travels with it, to a node with no database
    with pratai.Client(small.api_url(), small.admin_key) as client:
        assert client.submit(lambda n: n * 2 + offset, 20).result(timeout=60) == 45
        assert list(client.map(lambda n: n + offset, range(5))) == [5, 6, 7, 8, 9]


def test_requirements_and_node_js_run_on_a_node_that_reaches_only_nats(small: Cluster) -> None:
    small.start_node("a")
    package = small.tmp / "six.zip"
    package.write_bytes(
        make_zip({
            "main.py": "import six\n\ndef main(payload):\n    return six.__version__\n",
            "requirements.txt": "six==1.16.0\n",
        })
    )  # fmt: skip
    small.cli("function-create", "six", "--file", str(package))
    answer = json.loads(small.cli("invoke", "six", "-o", "json").stdout)
    assert (answer["status"], answer["result"]) == ("succeeded", "1.16.0")  # built by the api

    script = "exports.main = async (p) => ({ doubled: p.n * 2, node: process.env.PRATAI_NODE });\n"
    package = small.tmp / "js.zip"
    package.write_bytes(make_zip({"index.js": script}))
    small.cli("function-create", "js", "--file", str(package), "--runtime", "node20")
    answer = json.loads(small.cli("invoke", "js", "--payload", '{"n": 21}', "-o", "json").stdout)
    assert (answer["status"], answer["result"]) == ("succeeded", {"doubled": 42, "node": "a"})

    # A deleted function's warm instances stop on its node at once, not when idle (300 s).
    js_id = json.loads(small.cli("function-show", "js", "-o", "json").stdout)["id"]
    with small.http() as http:

        def warm() -> list[str]:
            return list({n["name"]: n for n in http.get("/v1/nodes").json()}["a"]["warm"])

        wait_for(lambda: any(w.startswith(js_id) for w in warm()), what="js warm on a")
        small.cli("function-delete", "js")
        wait_for(lambda: not any(w.startswith(js_id) for w in warm()), what="js stopped on a")


ECHO = """
import os

def main(payload):
    if isinstance(payload, dict) and payload.get("fail"):
        raise ValueError("asked to fail")
    return {"got": payload, "node": os.environ["PRATAI_NODE"]}
"""


def test_webhooks_routes_topics_chains_retries_and_idempotency_on_nodes(small: Cluster) -> None:
    """Every way a call starts, through either of two apis, runs on the nodes."""
    small.start_api()
    small.start_node("a")
    deploy(small, "hook", ECHO, "--type", "wait_for_response", "--event", "webhook")
    deploy(small, "route", ECHO, "--route", "POST /echo", "--route-auth", "public")
    deploy(small, "first", ECHO, "--event", "message", "--subscribe_to", "orders")
    deploy(small, "second", ECHO, "--event", "message",
           "--subscribe_to", "function.first.succeeded")  # fmt: skip
    deploy(small, "flaky", ECHO, "--max-retries", "1")
    with small.http() as http, small.http(1) as other:
        url = http.get("/v1/functions/hook").json()["triggers"][0]["url"]
        hooked = httpx.post(url.replace(small.api_url(), small.api_url(1)), json={"k": 1})
        assert hooked.status_code == 200 and hooked.json()["got"]["body"] == {"k": 1}

        routed = httpx.post(f"{small.api_url(1)}/fn/default/echo", json={"r": 2})
        assert routed.status_code == 200 and routed.json()["got"]["body"] == {"r": 2}

        published = other.post("/v1/events/orders", json={"o": 3})
        assert published.status_code == 202
        chained = wait_for(
            lambda: [i for i in http.get("/v1/invocations", params={"function": "second"}).json()
                     if i["status"] == "succeeded"],
            what="the chain: orders -> first -> second",
        )  # fmt: skip
        assert chained[0]["result"]["got"] == {"got": {"o": 3}, "node": "a"}  # first's result
        root = http.get(f"/v1/invocations/{chained[0]['id']}/tree").json()
        assert [(n["depth"], n["function"]) for n in root] == [(0, "first"), (1, "second")]

        key = {"Idempotency-Key": "once"}
        one = http.post("/v1/functions/route/invoke?async=true", json={"i": 1}, headers=key)
        two = other.post("/v1/functions/route/invoke?async=true", json={"i": 2}, headers=key)
        assert one.json()["id"] == two.json()["id"]  # the second api returns the first's

        failing = http.post("/v1/functions/flaky/invoke?async=true", json={"fail": True})
        done = finished(small, [failing.json()["id"]])[0]
        assert (done["status"], done["attempt"]) == ("failed", 2)  # tried, retried once
        dead = wait_for(lambda: http.get("/v1/events/dead-letter").json(), what="the dead letter")
        assert (dead[0]["id"], dead[0]["subject"]) == (done["id"], "flaky")
        redriven = http.post(f"/v1/dead-letter/{done['id']}/redrive")
        assert redriven.status_code in (200, 202), redriven.text
        again = finished(small, [redriven.json()["id"]])[0]
        assert again["error"]["message"] == "asked to fail"  # ran again, on a node


def test_a_fresh_per_call_function_gets_a_new_sandbox_per_call_on_a_node(small: Cluster) -> None:
    small.start_node("a")
    remembers = (
        "import os\ncalls = 0\n\ndef main(payload):\n    global calls\n    calls += 1\n"
        "    seen = os.path.exists('/tmp/mark')\n    open('/tmp/mark', 'w').close()\n"
        "    return {'calls': calls, 'seen': seen, 'node': os.environ['PRATAI_NODE']}\n"
    )
    deploy(small, "fresh", remembers, "--fresh-per-call")
    answers = [json.loads(small.cli("invoke", "fresh", "-o", "json").stdout) for _ in range(2)]
    assert [a["result"] for a in answers] == [{"calls": 1, "seen": False, "node": "a"}] * 2
    assert all(a["cold_start"] for a in answers)

    small.cli("function-update", "fresh", "--warm")  # the node makes a warm pool again
    answers = [json.loads(small.cli("invoke", "fresh", "-o", "json").stdout) for _ in range(2)]
    assert [a["result"] for a in answers] == [
        {"calls": 1, "seen": False, "node": "a"},
        {"calls": 2, "seen": True, "node": "a"},
    ]
    assert [a["cold_start"] for a in answers] == [True, False]
