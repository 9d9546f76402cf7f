"""A function may ask for a fresh sandbox for every call: nothing of one event reaches the
next (a file in /tmp, module state), and every call is a cold start."""

from __future__ import annotations

import os
from typing import Any

from tests.helpers import Server, code, wait_for

REMEMBERS = {
    "main.py": code("""
        import os
        calls = 0
        def main(payload):
            global calls
            calls += 1
            seen = os.path.exists("/tmp/left-behind")
            with open("/tmp/left-behind", "w") as f:
                f.write("from an earlier event")
            return {"calls": calls, "file_seen": seen}
    """)
}


def _twice(server: Server, name: str) -> list[dict[str, Any]]:
    return [server.cli_json("invoke", name) for _ in range(2)]


def test_fresh_per_call_leaves_nothing_to_the_next_event(server: Server, deploy) -> None:
    name = deploy(REMEMBERS, "--fresh-per-call")
    assert server.cli_json("function-show", name)["fresh_per_call"] is True
    assert "fresh per call" in server.cli("function-show", name).stdout
    first, second = _twice(server, name)
    assert first["result"] == second["result"] == {"calls": 1, "file_seen": False}
    assert first["cold_start"] is True and second["cold_start"] is True
    assert first["init_ms"] > 0 and second["init_ms"] > 0
    # No instance is kept once the calls are over (each is stopped just after its answer; the
    # session's server holds other tests' warm pools beside it).
    function_id = server.cli_json("function-show", name)["id"]
    with server.http() as http:

        def kept() -> list[dict[str, Any]]:
            pools = http.get("/v1/node").json()["pools"]
            return [p for p in pools if p["key"].startswith(function_id) and p["instances"]]

        wait_for(lambda: not kept(), timeout=10, what="the fresh instances to be stopped")


def test_warm_functions_keep_their_state_between_calls(server: Server, deploy) -> None:
    name = deploy(REMEMBERS)
    assert server.cli_json("function-show", name)["fresh_per_call"] is False
    assert "warm reuse" in server.cli("function-show", name).stdout
    first, second = _twice(server, name)
    assert first["result"] == {"calls": 1, "file_seen": False}
    assert second["result"] == {"calls": 2, "file_seen": True}
    assert (first["cold_start"], second["cold_start"]) == (True, False)


def test_function_update_switches_it_both_ways(server: Server, deploy) -> None:
    name = deploy(REMEMBERS)
    assert server.cli_json("invoke", name)["result"]["calls"] == 1  # a warm instance now

    shown = server.cli_json("function-update", name, "--fresh-per-call")
    assert shown["fresh_per_call"] is True
    first, second = _twice(server, name)  # the warm instance is not used again
    assert first["result"] == second["result"] == {"calls": 1, "file_seen": False}
    assert first["cold_start"] and second["cold_start"]

    assert server.cli_json("function-update", name, "--warm")["fresh_per_call"] is False
    first, second = _twice(server, name)
    assert [first["result"]["calls"], second["result"]["calls"]] == [1, 2]
    assert second["result"]["file_seen"] is True and second["cold_start"] is False


def test_the_api_field_round_trips(server: Server, make_zip_file) -> None:
    package = make_zip_file({"main.py": "def main(p):\n    return p\n"}).read_bytes()
    name = f"fresh-api-{os.getpid()}"
    with server.http() as http:
        created = http.post(
            "/v1/functions",
            data={"name": name, "fresh_per_call": "true"},
            files={"file": ("f.zip", package, "application/zip")},
        )
        assert created.status_code in (200, 201), created.text
        assert created.json()["fresh_per_call"] is True
        changed = http.patch(f"/v1/functions/{name}", data={"fresh_per_call": "false"})
        assert changed.status_code == 200 and changed.json()["fresh_per_call"] is False
        assert http.get(f"/v1/functions/{name}").json()["fresh_per_call"] is False
        refused = http.patch(f"/v1/functions/{name}", data={"fresh_per_call": "maybe"})
        assert refused.status_code == 400 and "fresh_per_call" in refused.text


def test_cold_starts_claim_spare_sandboxes_started_ahead(server: Server, deploy) -> None:
    """The server keeps a spare sandbox started (PRATAI_SPARE_SANDBOXES, 1 by default); each
    fresh call claims one, gets its function's code and environment, and nothing of the
    earlier call's."""
    reports = {
        "main.py": REMEMBERS["main.py"].replace(
            '"file_seen": seen}', '"file_seen": seen, "function": os.environ["PRATAI_FUNCTION"]}'
        )
    }
    name = deploy(reports, "--fresh-per-call")
    with server.http() as http:

        def spares() -> dict[str, int]:
            found: dict[str, int] = http.get("/v1/node").json()["driver"]["spare_sandboxes"]
            return found

        for _ in range(3):
            wait_for(lambda: spares()["waiting"] >= 1, timeout=30, what="a spare sandbox")
            claimed = spares()["claimed"]
            answer = server.cli_json("invoke", name)
            assert answer["result"] == {"calls": 1, "file_seen": False, "function": name}
            assert answer["cold_start"] is True
            assert spares()["claimed"] == claimed + 1
