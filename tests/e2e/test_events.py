"""Events end to end: webhooks, topics, CloudEvents, chaining, retries and dead letters."""

from __future__ import annotations

import json

import httpx

from tests.helpers import Server, code, start_server, wait_for

ECHO = {"main.py": "def main(p):\n    return p\n"}


def _finished(server: Server, function: str, count: int) -> list[dict]:
    def done():
        found = server.cli_json("invocation-list", function)
        finished = [i for i in found if i["status"] not in ("queued", "running")]
        return finished if len(finished) >= count else None

    return wait_for(done, what=f"{count} finished invocations of {function}")


def test_async_webhook_answers_202_and_passes_the_request(server: Server, deploy) -> None:
    name = deploy(ECHO, "--event", "webhook", "--type", "async")
    (trigger,) = server.cli_json("function-show", name)["triggers"]
    assert trigger["url"].startswith(server.url + "/hooks/")
    answer = httpx.post(trigger["url"] + "?q=1", json={"order": 7}, headers={"X-Tag": "t"})
    assert answer.status_code == 202
    invocation_id = answer.json()["id"]
    (record,) = _finished(server, name, 1)
    assert record["id"] == invocation_id and record["status"] == "succeeded"
    request = record["result"]
    assert request["method"] == "POST" and request["query"] == {"q": "1"}
    assert request["body"] == {"order": 7} and request["headers"]["x-tag"] == "t"
    assert httpx.post(server.url + "/hooks/not-a-token").status_code == 404


def test_wait_for_response_webhook_returns_the_functions_http_answer(server, deploy) -> None:
    name = deploy(
        {
            "main.py": code("""
                def main(request):
                    return {"statusCode": 201, "headers": {"X-Made": "yes"},
                            "body": "created " + request["path"]}
            """)
        },
        "--event",
        "webhook",
        "--type",
        "wait_for_response",
    )
    url = server.cli_json("function-show", name)["triggers"][0]["url"]
    answer = httpx.put(url, content=b"x")
    assert answer.status_code == 201
    assert answer.headers["x-made"] == "yes"
    assert answer.text.startswith("created /hooks/")


def test_message_subscribers_run_once_per_event_and_duplicates_are_ignored(server, deploy):
    first = deploy(ECHO, "--event", "message", "--subscribe_to", "orders")
    second = deploy(ECHO, "--event", "message", "--subscribe_to", "orders")
    event_id = server.cli("event-publish", "orders", "--data", '{"k": "v"}', "--id", "e-1")
    assert event_id.stdout.strip() == "e-1"
    again = server.cli("event-publish", "orders", "--data", '{"k": "v"}', "--id", "e-1").stdout
    assert "duplicate" in again
    for function in (first, second):
        (record,) = _finished(server, function, 1)
        assert record["result"] == {"k": "v"} and record["event_id"] == "e-1"
    listed = server.cli_json("event-list", "orders")
    assert [e["id"] for e in listed].count("e-1") == 1


def test_cloudevents_binary_and_structured_modes(server: Server, deploy) -> None:
    name = deploy(ECHO, "--event", "message", "--subscribe_to", "ce")
    headers = {"Authorization": f"Bearer {server.api_key}"}
    binary = httpx.post(
        f"{server.url}/v1/events/ce",
        content=json.dumps({"mode": "binary"}),
        headers={
            **headers,
            "Content-Type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": "b-1",
            "ce-source": "/sdk",
            "ce-type": "com.example.test",
            "ce-tenant": "acme",
        },
    )
    structured = httpx.post(
        f"{server.url}/v1/events/ce",
        content=json.dumps(
            {
                "specversion": "1.0",
                "id": "s-1",
                "source": "/sdk",
                "type": "com.example.test",
                "datacontenttype": "application/json",
                "data": {"mode": "structured"},
            }
        ),
        headers={**headers, "Content-Type": "application/cloudevents+json"},
    )
    assert binary.status_code == structured.status_code == 202
    results = sorted(r["result"]["mode"] for r in _finished(server, name, 2))
    assert results == ["binary", "structured"]
    events = {e["id"]: e for e in server.cli_json("event-list", "ce")}
    assert events["b-1"]["tenant"] == "acme" and events["s-1"]["data"] == {"mode": "structured"}
    bad = httpx.post(
        f"{server.url}/v1/events/ce",
        content=b"{}",
        headers={**headers, "Content-Type": "application/cloudevents+json"},
    )
    assert bad.status_code == 400 and "without id" in bad.json()["message"]


def test_three_step_pipeline_by_chaining_with_a_tree(server: Server, deploy) -> None:
    step1 = deploy(
        {"main.py": "def main(p):\n    return {'n': p['n'] + 1}\n"},
        "--event",
        "message",
        "--subscribe_to",
        "pipeline-in",
    )
    step2 = deploy(
        {"main.py": "def main(p):\n    return {'n': p['n'] * 10}\n"},
        "--event",
        "message",
        "--subscribe_to",
        f"function.{step1}.succeeded",
    )
    step3 = deploy(
        {"main.py": "def main(p):\n    return {'final': p['n']}\n"},
        "--event",
        "message",
        "--subscribe_to",
        f"function.{step2}.succeeded",
    )
    server.cli("event-publish", "pipeline-in", "--data", '{"n": 4}')
    (last,) = _finished(server, step3, 1)
    assert last["result"] == {"final": 50}
    tree = server.cli_json("invocation-show", last["id"], "--tree")
    assert [(s["depth"], s["function"], s["status"]) for s in tree] == [
        (0, step1, "succeeded"),
        (1, step2, "succeeded"),
        (2, step3, "succeeded"),
    ]
    text = server.cli("invocation-show", last["id"], "--tree").stdout
    assert step1 in text and f"*     {step3}" in text


def test_chaining_loop_stops_at_the_hop_limit(server: Server, deploy) -> None:
    name = deploy(ECHO, "--event", "message", "--subscribe_to", "loop-start")
    server.cli(
        "trigger-create", name, "--event", "message", "--subscribe_to", f"function.{name}.succeeded"
    )
    server.cli("event-publish", "loop-start", "--data", "1")
    records = _finished(server, name, 17)
    assert all(r["status"] == "succeeded" for r in records)
    # 1 from the topic + 16 hops, then no more
    with httpx.Client() as http:
        wait_for(
            lambda: (
                len(
                    server.cli_json(
                        "event-list",
                        f"function.{name}.succeeded",
                    )
                )
                >= 16
            ),
            what="result events",
        )
        del http
    assert len(server.cli_json("invocation-list", name, "--limit", "100")) == 17


def test_retries_then_dead_letter_then_redrive(server: Server, deploy, tmp_path) -> None:
    flaky = code("""
        import os
        def main(p):
            if not os.path.exists("/tmp/fixed") and p.get("fail"):
                raise RuntimeError("boom")
            return "ok"
    """)
    name = deploy(
        {"main.py": flaky}, "--event", "message", "--subscribe_to", "jobs-dl", "--max-retries", "2"
    )
    server.cli("event-publish", "jobs-dl", "--data", '{"fail": true}', "--id", "job-1")

    def dead():
        letters = [
            e for e in server.cli_json("event-list", "dead-letter") if e["prataifunction"] == name
        ]
        return letters or None

    (letter,) = wait_for(dead, what="the dead letter")
    assert letter["prataiattempts"] == "3" and "boom" in letter["prataierror"]
    (record,) = server.cli_json("invocation-list", name)
    assert record["status"] == "failed" and record["attempt"] == 3
    redriven = server.cli("event-redrive", letter["id"]).stdout.strip()
    again = wait_for(
        lambda: (r := server.cli_json("invocation-show", redriven))["status"] == "failed" and r,
        what="the redriven invocation",
    )
    assert again["parent_id"] == record["id"] and again["result"] is None


def test_trigger_commands_and_bad_specs(server: Server, deploy) -> None:
    name = deploy(ECHO)
    created = server.cli_json(
        "trigger-create",
        name,
        "--event",
        "timer",
        "--cron",
        "*/5 * * * *",
        "--timezone",
        "Europe/Paris",
    )
    assert created["cron"] == "*/5 * * * *" and created["timezone"] == "Europe/Paris"
    assert any(t["id"] == created["id"] for t in server.cli_json("trigger-list", name))
    for bad, message in (
        (["--event", "timer"], "exactly one of"),
        (["--event", "timer", "--cron", "not cron"], "invalid cron"),
        (["--event", "timer", "--cron", "* * * * *", "--timezone", "Mars/Base"], "time zone"),
        (["--event", "message"], "--subscribe_to"),
        (["--event", "message", "--type", "wait_for_response", "--subscribe_to", "t"], "webhook"),
    ):
        done = server.cli("trigger-create", name, *bad, check=False)
        assert done.returncode != 0 and message in done.stderr, (bad, done.stderr)
    server.cli("trigger-delete", created["id"])
    assert server.cli_json("trigger-list", name) == []
    missing = server.cli("trigger-delete", created["id"], check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr


def test_timer_fires(server: Server, deploy) -> None:
    name = deploy(ECHO, "--event", "timer", "--frequency", "0.02")  # every 1.2 s
    records = _finished(server, name, 2)
    ticks = [r["result"]["tick"] for r in records]
    assert len(set(ticks)) == len(ticks)


def test_kill_9_during_a_burst_of_1000_events_loses_none(tmp_path, make_zip_file) -> None:
    import concurrent.futures
    import threading

    server = start_server(tmp_path)
    try:
        path = make_zip_file(ECHO)
        server.cli(
            "function-create",
            "burst",
            "--file",
            str(path),
            "--event",
            "message",
            "--subscribe_to",
            "burst",
            "--concurrency",
            "8",
        )
        accepted: set[int] = set()
        lock = threading.Lock()
        headers = {"Authorization": f"Bearer {server.api_key}"}

        def publish(n: int, http: httpx.Client) -> None:
            try:
                answer = http.post(
                    "/v1/events/burst",
                    json={"n": n},
                    headers={
                        **headers,
                        "ce-id": f"b-{n}",
                        "ce-source": "/t",
                        "ce-type": "t",
                        "ce-specversion": "1.0",
                    },
                )
            except httpx.HTTPError:
                return
            if answer.status_code == 202:
                with lock:
                    accepted.add(n)

        def burst() -> None:
            with (
                httpx.Client(base_url=server.url, timeout=10) as http,
                concurrent.futures.ThreadPoolExecutor(8) as pool,
            ):
                list(pool.map(lambda n: publish(n, http), range(1000)))

        publisher = threading.Thread(target=burst)
        publisher.start()
        wait_for(lambda: len(accepted) >= 300, what="300 accepted events")
        server.kill()
        publisher.join()
        assert 300 <= len(accepted) < 1000
        server.start()

        def all_ran():
            with server.http() as http:
                found = http.get("/v1/invocations", params={"function": "burst", "limit": 1000})
            done = {i["result"]["n"] for i in found.json() if i["status"] == "succeeded"}
            return done if accepted <= done else None

        done = wait_for(all_ran, timeout=120, what="every accepted event to run")
        assert accepted <= done
    finally:
        server.stop()


def test_idempotency_key_gives_the_first_invocation_back(server: Server, deploy) -> None:
    counter = code("""
        calls = 0
        def main(p):
            global calls
            calls += 1
            return calls
    """)
    name = deploy({"main.py": counter}, "--event", "webhook")
    hook = server.cli_json("function-show", name)["triggers"][0]["url"]
    with server.http() as http:
        url = f"/v1/functions/{name}/invoke"
        first = http.post(url, json=1, headers={"Idempotency-Key": "k-1"}).json()
        second = http.post(url, json=1, headers={"Idempotency-Key": "k-1"}).json()
        third = http.post(url, json=1, headers={"Idempotency-Key": "k-2"}).json()
        assert first["id"] == second["id"] != third["id"]
        assert (first["result"], second["result"], third["result"]) == (1, 1, 2)
        queued = [
            http.post(url + "?async=true", json=1, headers={"Idempotency-Key": "a-1"}).json()["id"]
            for _ in range(2)
        ]
        assert queued[0] == queued[1]
    hooked = [
        httpx.post(hook, json={}, headers={"Idempotency-Key": "h-1"}).json()["id"] for _ in range(2)
    ]
    assert hooked[0] == hooked[1]
    _finished(server, name, 4)  # k-1, k-2, a-1 and h-1: one run each, none twice
    assert len(server.cli_json("invocation-list", name)) == 4
