"""The node's memory budget on a real `pratai serve`: the memory limits of its sandboxes never
add up past PRATAI_NODE_MEMORY_MB; idle ones make room, busy ones make a call wait, and what
can never fit is refused when it is deployed or submitted."""

from __future__ import annotations

import concurrent.futures
import threading
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import Server, start_server, wait_for

ECHO = "def main(p):\n    return p\n"
SLEEP = "import time\ndef main(p):\n    time.sleep(p)\n    return p\n"


# Spare sandboxes are bwrap children too, but no instances (they wait outside the budget, see
# settings.py): off here, so that every sandbox counted is an instance or a job.
NO_SPARES = {"PRATAI_SPARE_SANDBOXES": "0"}


def sandboxes(server_pid: int) -> int:
    """The server's sandboxes alive now: each instance and command job is a bwrap child."""
    count = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        comm, _, rest = text.partition("(")[2].rpartition(")")
        state, ppid = rest.split()[:2]
        count += comm == "bwrap" and int(ppid) == server_pid and state != "Z"
    return count


class PeakSandboxes:
    """Counts the server's sandboxes in a thread, as often as it can, while the block runs."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, sandboxes(self.pid))

    def __enter__(self) -> PeakSandboxes:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=10)


def node(http: httpx.Client) -> dict[str, Any]:
    stats: dict[str, Any] = http.get("/v1/node").json()
    return stats


def invoke(server: Server, name: str, payload: Any) -> dict[str, Any]:
    with server.http() as http:
        answer: dict[str, Any] = http.post(f"/v1/functions/{name}/invoke", json=payload).json()
    return answer


def test_idle_instances_make_room_and_the_budget_is_never_passed(
    tmp_path: Path, make_zip_file
) -> None:
    server = start_server(tmp_path, PRATAI_NODE_MEMORY_MB="512", **NO_SPARES)
    try:
        echo = str(make_zip_file({"main.py": ECHO}))
        names = [f"fn{n}" for n in range(6)]
        for name in names:
            server.cli("function-create", name, "--file", echo, "--memory", "128")
        assert server.process is not None
        with PeakSandboxes(server.process.pid) as counted:
            answers = [invoke(server, name, n) for n, name in enumerate(names)]
            again = {name: invoke(server, name, 0)["cold_start"] for name in ("fn5", "fn0")}
        assert [(a["status"], a["result"]) for a in answers] == [("succeeded", n) for n in range(6)]
        # 4 of 128 MB fit in 512 MB: fn4 and fn5 took the places of fn0 and fn1, the least
        # recently used; fn0 comes back cold in the place of fn2
        assert again == {"fn5": False, "fn0": True}
        assert counted.peak == 4 and sandboxes(server.process.pid) == 4
        with server.http() as http:
            stats = node(http)
        assert stats["memory"] == {
            "budget_mb": 512,
            "used_mb": 512,
            "peak_mb": 512,
            "instances": 4,
            "waiting": 0,
        }
        assert sum(pool["instances"] for pool in stats["pools"]) == 4
    finally:
        server.stop()


def test_memory_no_node_has_is_refused_at_once(tmp_path: Path, make_zip_file) -> None:
    server = start_server(tmp_path, PRATAI_NODE_MEMORY_MB="512", **NO_SPARES)
    try:
        echo = make_zip_file({"main.py": ECHO})
        refused = server.cli(
            "function-create", "big", "--file", str(echo), "--memory", "1024", check=False
        )
        assert refused.returncode != 0
        assert "1024 MB" in refused.stderr and "largest node memory budget is 512 MB" in (
            refused.stderr
        )
        doctor = server.cli_json("doctor")
        assert doctor["memory_budget_mb"] == 512 and doctor["spare_sandboxes"] == 0
        server.cli("function-create", "small", "--file", str(echo), "--memory", "512")
        grown = server.cli("function-update", "small", "--memory", "513", check=False)
        assert grown.returncode != 0 and "513 MB" in grown.stderr
        job = server.cli("job-submit", "--memory", "600", "--", "true", check=False)
        assert job.returncode != 0 and "600 MB" in job.stderr

        with server.http() as http:
            answer = http.post(
                "/v1/functions",
                data={"name": "big", "memory": "1024"},
                files={"file": ("f.zip", echo.read_bytes(), "application/zip")},
            )
            assert answer.status_code == 400
            assert answer.json()["details"] == {"memory_mb": 1024, "largest_budget_mb": 512}
            python = http.get("/v1/runtimes").json()["python"]
            callable_job = http.post(
                "/v1/jobs/callable",
                params={"python": python, "memory_mb": 2048},
                content=b"never unpickled",
                headers={"Content-Type": "application/vnd.pratai.pickle"},
            )
            assert callable_job.status_code == 400
            assert callable_job.json()["details"]["memory_mb"] == 2048
            assert [f["name"] for f in http.get("/v1/functions").json()] == ["small"]
            assert http.get("/v1/jobs").json() == {"jobs": []}
    finally:
        server.stop()


def test_busy_instances_make_a_call_wait_then_a_wait_too_long_fails(
    tmp_path: Path, make_zip_file
) -> None:
    server = start_server(tmp_path, PRATAI_NODE_MEMORY_MB="256", **NO_SPARES)
    try:
        sleep = str(make_zip_file({"main.py": SLEEP}))
        for name, memory, timeout in [("hold", 256, 30), ("quick", 128, 1), ("patient", 128, 30)]:
            server.cli(
                "function-create", name, "--file", sleep,
                "--memory", str(memory), "--timeout", str(timeout),
            )  # fmt: skip
        with concurrent.futures.ThreadPoolExecutor(2) as pool, server.http() as http:
            held = pool.submit(invoke, server, "hold", 6)  # the whole budget, for 6 s
            wait_for(
                lambda: node(http)["memory"]["used_mb"] == 256,
                what="the hold function's instance to start",
            )
            # quick may wait 1 s, its timeout: not enough
            job = http.post(
                "/v1/jobs", json={"command": ["true"], "memory_mb": 128, "timeout_s": 1}
            )
            failed = invoke(server, "quick", 0)
            assert failed["status"] == "failed" and failed["error"]["type"] == "NodeMemoryFull"
            assert "memory is full" in failed["error"]["message"]
            assert "256 MB memory budget" in failed["error"]["message"]
            job_id = job.json()["id"]
            ended = wait_for(
                lambda: (j := http.get(f"/v1/jobs/{job_id}").json())["status"] == "failed" and j,
                what="the job to fail for want of memory",
            )
            assert ended["error"]["type"] == "NodeMemoryFull"

            waiting = pool.submit(invoke, server, "patient", 0)
            wait_for(lambda: node(http)["memory"]["waiting"] == 1, what="patient to wait")
            assert not held.done()  # it waits for room, which only the hold function frees
            done, first = waiting.result(timeout=60), held.result(timeout=60)
        assert (first["status"], done["status"]) == ("succeeded", "succeeded")
        assert done["started_at"] < first["finished_at"] <= done["finished_at"]
    finally:
        server.stop()
