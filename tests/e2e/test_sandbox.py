"""Functions that misbehave are contained: limits end them, the platform carries on."""

from __future__ import annotations

import json

from tests.helpers import Server, code


def _invoke(server: Server, name: str, payload: str = "null") -> dict:
    return json.loads(
        server.cli("invoke", name, "--payload", payload, "-o", "json", check=False).stdout
    )


def test_memory_hog_fails_naming_the_limit_and_instance_is_replaced(server: Server, deploy):
    name = deploy(
        {
            "main.py": code("""
        def main(payload):
            if payload == "hog":
                blocks = [bytearray(16 * 1024 * 1024) for _ in range(64)]
                return len(blocks)
            return "fine"
    """)
        },
        "--memory",
        "64",
    )
    hog = _invoke(server, name, '"hog"')
    assert hog["status"] == "failed"
    assert hog["error"]["type"] == "MemoryLimitExceeded"
    assert "64 MB" in hog["error"]["message"]
    assert _invoke(server, name, '"ok"')["result"] == "fine"


def test_infinite_loop_times_out(server: Server, deploy) -> None:
    name = deploy({"main.py": "def main(p):\n    while True:\n        pass\n"}, "--timeout", "1")
    record = _invoke(server, name)
    assert record["status"] == "timed_out"
    assert 900 <= record["duration_ms"] < 10_000


def test_fork_bomb_is_contained(server: Server, deploy) -> None:
    name = deploy(
        {
            "main.py": code("""
        import os
        def main(payload):
            children = 0
            try:
                for _ in range(10_000):
                    if os.fork() == 0:
                        import time
                        time.sleep(30)
                        os._exit(0)
                    children += 1
            except OSError as exc:
                return {"stopped_after": children, "error": exc.strerror}
            return {"stopped_after": children, "error": None}
    """)
        },
        "--timeout",
        "10",
    )
    record = _invoke(server, name)
    assert record["status"] == "succeeded", record
    assert record["result"]["error"] is not None
    assert record["result"]["stopped_after"] < 200
    hello = deploy({"main.py": "def main(p):\n    return 'still here'\n"})
    assert _invoke(server, hello)["result"] == "still here"


PROBE = code("""
    import socket
    def main(target):
        try:
            if target["kind"] == "file":
                with open(target["path"], "rb") as f:
                    return {"leaked": f.read(64).decode(errors="replace")}
            socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
            return {"leaked": "connected"}
        except OSError as exc:
            return {"blocked": type(exc).__name__}
""")


def test_function_cannot_read_host_files_or_data_or_reach_the_network(server: Server, deploy):
    name = deploy({"main.py": PROBE})
    for target in (
        {"kind": "file", "path": "/etc/shadow"},
        {"kind": "file", "path": str(server.home / "credentials.json")},
        {"kind": "file", "path": str(server.home / "pratai.sqlite3")},
        {"kind": "tcp"},
    ):
        record = _invoke(server, name, json.dumps(target))
        assert record["status"] == "succeeded"
        assert "blocked" in record["result"], (target, record["result"])


def test_network_flag_allows_connections(server: Server, deploy) -> None:
    name = deploy({"main.py": PROBE}, "--network")
    assert _invoke(server, name, '{"kind": "tcp"}')["result"] == {"leaked": "connected"}


def test_runs_as_non_root_with_a_clean_environment(server: Server, deploy) -> None:
    name = deploy(
        {
            "main.py": code("""
        import os
        def main(p):
            return {"uid": os.getuid(), "env": sorted(os.environ)}
    """)
        }
    )
    result = _invoke(server, name)["result"]
    assert result["uid"] != 0
    assert "PRATAI_HOME" not in result["env"] and "HOME" in result["env"]


def test_doctor_reports_isolation(server: Server) -> None:
    report = server.cli_json("doctor")
    assert report["driver"] == "process"
    assert report["bwrap"]
    assert report["memory_limit"] in ("cgroup", "rlimit")
    # CPU follows memory where the cpu controller is writable; elsewhere doctor says why not
    assert report["cpus"] >= 1
    assert report["spare_sandboxes"] == 1  # PRATAI_SPARE_SANDBOXES's default, per shape
    cpu_ok = (report["cpu_limit"] or "").startswith("cgroup")
    assert cpu_ok or report["cpu_note"] or report["cgroup_note"], report
    assert "doctor" not in server.cli("doctor").stderr
