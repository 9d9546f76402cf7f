"""Published-event-to-function-finished throughput and latency, beside the store's raw insert
rate (the floor: what SQLite accepts when nothing else happens)."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.http_load import run_load
from pratai.core.models import Event, Project, new_id
from pratai.store.sql import SqlStore

EVENTS = 3000


async def store_floor(count: int = EVENTS, concurrency: int = 16) -> float:
    """Events/s that SqlStore.add_event sustains alone (concurrent callers, group commit)."""
    folder = Path(tempfile.mkdtemp(prefix="pratai-bench-store-"))
    store = SqlStore(f"sqlite:///{folder / 'db.sqlite3'}")
    await store.open()
    try:
        project = Project(id=new_id(), name="bench")
        await store.create_project(project)
        remaining = iter(range(count))

        async def worker() -> None:
            for n in remaining:
                event = Event(project.id, "t", f"e-{n}", "/bench", "bench", data=b"{}")
                await store.add_event(event)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.perf_counter() - started)
    finally:
        await store.close()
        shutil.rmtree(folder, ignore_errors=True)


async def measure(port: int, key: str, database: Path) -> dict[str, Any]:
    """Publish EVENTS plain events over HTTP at concurrency 16 to a topic one trivial function
    subscribes to; wait (reading the server's SQLite file) until every one has run."""
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=120) as http:
        data = {"name": "on-event", "event": "message", "subscribe_to": "bench"}
        created = http.post("/v1/functions", data=data, files={"file": ("f.zip", _trivial_zip())})
        assert created.status_code == 201, created.text
    started = time.perf_counter()
    load = await run_load(
        "127.0.0.1", port, "/v1/events/bench", auth, b"{}", 16, EVENTS, warmup=16, expect=202
    )
    expected = EVENTS + 16  # the warm-up requests published events too
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        query = "SELECT created_at, finished_at FROM invocations WHERE finished_at IS NOT NULL"
        while True:
            rows = db.execute(query).fetchall()
            if len(rows) >= expected:
                break
            await asyncio.sleep(0.05)
    finally:
        db.close()
    elapsed = time.perf_counter() - started
    latencies = sorted((finished - created) * 1000 for created, finished in rows)
    return {
        "events": expected,
        "publish_per_s": load.rate,
        "publish_p50_ms": load.p50,
        "publish_p99_ms": load.pct(0.99),
        "end_to_end_per_s": expected / elapsed,
        "event_to_finished_p50_ms": statistics.median(latencies),
        "event_to_finished_p99_ms": latencies[int(0.99 * len(latencies))],
    }


def _trivial_zip() -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("main.py", "def main(payload):\n    return payload\n")
    return buffer.getvalue()
