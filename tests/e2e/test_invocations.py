"""Sync and async invocations, their records, logs, warm instances and limits."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys

from tests.helpers import Server, code, start_server, wait_for


def test_invocation_record_has_result_output_and_timings(server: Server, deploy) -> None:
    name = deploy(
        {
            "main.py": code("""
        import sys
        def main(payload):
            print("to stdout", payload["n"])
            print("to stderr", file=sys.stderr)
            return payload["n"] * 2
    """)
        }
    )
    answer = server.cli_json("invoke", name, "--payload", '{"n": 21}')
    assert answer["result"] == 42 and answer["status"] == "succeeded"
    shown = server.cli_json("invocation-show", answer["id"])
    assert shown["stdout"] == "to stdout 21\n"
    assert shown["stderr"] == "to stderr\n"
    assert shown["duration_ms"] > 0 and shown["peak_memory_kb"] > 0
    text = server.cli("invocation-show", answer["id"]).stdout
    assert "succeeded" in text and "peak memory" in text


def test_warm_instance_is_reused_and_cold_start_is_recorded(server: Server, deploy) -> None:
    name = deploy(
        {
            "main.py": code("""
        calls = 0
        def main(payload):
            global calls
            calls += 1
            return calls
    """)
        }
    )
    first = server.cli_json("invoke", name)
    second = server.cli_json("invoke", name)
    assert (first["result"], second["result"]) == (1, 2)  # imported once, served twice
    assert first["cold_start"] is True and first["init_ms"] > 0
    assert second["cold_start"] is False
    listing = server.cli("invocation-list", name).stdout
    assert "COLD START" in listing and "yes (init" in listing and "no" in listing


def test_exception_gives_type_message_and_traceback(server: Server, deploy) -> None:
    name = deploy({"main.py": "def main(p):\n    return 1 / 0\n"})
    done = server.cli("invoke", name, check=False)
    assert done.returncode == 1
    assert "ZeroDivisionError" in done.stderr and "main.py" in done.stderr
    record = server.cli_json("invocation-list", name)[0]
    assert record["status"] == "failed"
    assert record["error"]["type"] == "ZeroDivisionError"
    assert "line 2" in record["error"]["traceback"]


def test_async_invocation_completes(server: Server, deploy) -> None:
    name = deploy({"main.py": "def main(p):\n    return {'got': p}\n"})
    invocation_id = server.cli("invoke", name, "--payload", '{"k": 1}', "--async").stdout.strip()
    assert len(invocation_id) == 32

    def finished():
        record = server.cli_json("invocation-show", invocation_id)
        return record if record["status"] not in ("queued", "running") else None

    record = wait_for(finished, what="async invocation to finish")
    assert record["status"] == "succeeded" and record["result"] == {"got": {"k": 1}}
    assert record["mode"] == "async"


def test_async_invocation_survives_kill_9(tmp_path, make_zip_file) -> None:
    server = start_server(tmp_path)
    try:
        path = make_zip_file(
            {"main.py": "import time\ndef main(p):\n    time.sleep(1)\n    return p\n"}
        )
        server.cli("function-create", "durable", "--file", str(path))
        ids = [
            server.cli("invoke", "durable", "--payload", f'{{"n": {n}}}', "--async").stdout.strip()
            for n in range(3)
        ]
        server.kill()
        server.start()

        def all_done():
            records = [server.cli_json("invocation-show", i) for i in ids]
            return records if all(r["status"] == "succeeded" for r in records) else None

        records = wait_for(all_done, timeout=60, what="queued invocations after restart")
        assert [r["result"] for r in records] == [{"n": 0}, {"n": 1}, {"n": 2}]
    finally:
        server.stop()


def test_concurrency_limit_queues_instead_of_failing(server: Server, deploy) -> None:
    name = deploy(
        {"main.py": "import time\ndef main(p):\n    time.sleep(0.3)\n    return p\n"},
        "--concurrency",
        "1",
    )
    with server.http() as http, concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(lambda n: http.post(f"/v1/functions/{name}/invoke", json=n).json(), range(4))
        )
    assert [a["status"] for a in answers] == ["succeeded"] * 4
    assert sorted(a["result"] for a in answers) == [0, 1, 2, 3]
    # one instance served them all, one after another
    assert sum(1 for a in answers if a["cold_start"]) == 1


def test_logs_show_and_follow_output(server: Server, deploy) -> None:
    name = deploy({"main.py": "def main(p):\n    print('line', p)\n    return p\n"})
    server.cli("invoke", name, "--payload", "1")
    assert "stdout: line 1" in server.cli("logs", name).stdout

    follower = subprocess.Popen(
        [sys.executable, "-m", "pratai", "logs", name, "--follow"],
        env={k: v for k, v in server.env.items()},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        assert "line 1" in follower.stdout.readline()
        server.cli("invoke", name, "--payload", "2")
        assert "line 2" in follower.stdout.readline()
    finally:
        follower.kill()
        follower.wait()


def test_idle_instances_are_stopped(tmp_path, make_zip_file) -> None:
    server = start_server(tmp_path, PRATAI_IDLE_TIMEOUT="0.5")
    try:
        path = make_zip_file({"main.py": "def main(p):\n    return 1\n"})
        server.cli("function-create", "idle", "--file", str(path))
        assert server.cli_json("invoke", "idle")["cold_start"] is True
        with server.http() as http:
            wait_for(
                lambda: not http.get("/v1/node").json()["pools"],
                timeout=10,
                what="idle instance to be stopped",
            )
        assert server.cli_json("invoke", "idle")["cold_start"] is True
    finally:
        server.stop()


def test_result_over_the_limit_is_an_error_naming_it(server: Server, deploy) -> None:
    name = deploy({"main.py": "def main(p):\n    return 'x' * (2 * 1024 * 1024)\n"})
    record = json.loads(server.cli("invoke", name, "-o", "json", check=False).stdout)
    assert record["status"] == "failed"
    assert record["error"]["type"] == "ResultTooLarge"
    assert "1048576" in record["error"]["message"]
