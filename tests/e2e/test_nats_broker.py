"""`pratai serve` with its work queue in NATS JetStream (a nats-server of the test's own):
functions sync and async, a topic event to a subscriber, and a job."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import nats

from tests.helpers import Server, nats_servers, start_server, wait_for


def _finished(server: Server, command: str, record_id: str) -> dict[str, Any]:
    def done() -> Any:
        record = server.cli_json(command, record_id)
        return None if record["status"] in ("queued", "running") else record

    return wait_for(done, what=f"{command} {record_id} to finish")


async def _consumers(url: str) -> dict[str, tuple[Any, ...]]:
    """Each queue's consumer in Pratai's stream: deliveries made, unacked, still queued."""
    nc = await nats.connect(url)
    try:
        found = await nc.jetstream().consumers_info("PRATAI")
    finally:
        await nc.close()
    return {c.name: (c.delivered.consumer_seq, c.num_ack_pending, c.num_pending) for c in found}  # type: ignore[union-attr]


def test_serve_runs_its_work_through_nats(tmp_path: Path, make_zip_file) -> None:
    with nats_servers(tmp_path) as (nats_server,):
        server = start_server(tmp_path, PRATAI_BROKER_URL=nats_server.url)
        try:
            double = make_zip_file({"main.py": "def main(p):\n    return {'twice': p['n'] * 2}\n"})
            server.cli("function-create", "double", "--file", str(double))
            answer = server.cli_json("invoke", "double", "--payload", '{"n": 4}')
            assert answer["result"] == {"twice": 8}

            queued = server.cli("invoke", "double", "--payload", '{"n": 5}', "--async")
            done = _finished(server, "invocation-show", queued.stdout.strip())
            assert (done["status"], done["result"]) == ("succeeded", {"twice": 10})

            echo = make_zip_file({"main.py": "def main(p):\n    return p\n"})
            server.cli(
                "function-create", "echo", "--file", str(echo),
                "--event", "message", "--subscribe_to", "orders",
            )  # fmt: skip
            server.cli("event-publish", "orders", "--data", '{"k": "v"}', "--id", "e-1")
            (record,) = wait_for(
                lambda: [
                    i for i in server.cli_json("invocation-list", "echo")
                    if i["status"] == "succeeded"
                ],
                what="the subscriber to run",
            )  # fmt: skip
            assert (record["result"], record["event_id"]) == ({"k": "v"}, "e-1")

            job_id = server.cli("job-submit", "--", "sh", "-c", "echo from a job").stdout.strip()
            job = _finished(server, "job-show", job_id)
            assert (job["status"], job["stdout"]) == ("succeeded", "from a job\n")

            consumers = asyncio.run(_consumers(nats_server.url))
            assert consumers == {"invocations": (2, 0, 0), "jobs": (1, 0, 0)}
        finally:
            server.stop()
