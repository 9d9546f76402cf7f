"""Fresh-per-call beside warm reuse: the price of a new sandbox for every event.

    python -m bench fresh

One `pratai serve`, two copies of a trivial function: one warm (the default: instances are
reused), one with `fresh_per_call` (each call starts a sandbox and stops it after). Sync invokes
over HTTP, at concurrency 1 and 4, in turns (warm, fresh, fresh, warm) so that a drift of the
machine weighs on both alike. Prints a table and writes bench/results/fresh.json.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import statistics
import sys
import zipfile
from pathlib import Path
from typing import Any

import httpx

from bench.http_load import LoadResult, run_load
from bench.server import Running, pratai_server

RESULTS = Path(__file__).parent / "results"
TRIVIAL = "def main(payload):\n    return {'ok': True}\n"
REQUESTS = {1: 150, 4: 300}  # per turn, by concurrency
KINDS = {"warm": "false", "fresh": "true"}


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("main.py", TRIVIAL)
    return buffer.getvalue()


def _deploy(server: Running) -> None:
    auth = {"Authorization": f"Bearer {server.key}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=60) as http:
        for kind, fresh in KINDS.items():
            created = http.post(
                "/v1/functions",
                data={"name": kind, "concurrency": "4", "fresh_per_call": fresh},
                files={"file": ("f.zip", _zip())},
            )
            assert created.status_code < 300 and created.json()["fresh_per_call"] == (
                fresh == "true"
            ), created.text


async def _measure(server: Running) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {server.key}"}
    runs: dict[str, list[LoadResult]] = {}
    for concurrency, requests in REQUESTS.items():
        for kind in ("warm", "fresh", "fresh", "warm"):
            path = f"/v1/functions/{kind}/invoke"
            run = await run_load(
                "127.0.0.1", server.port, path, auth, b"{}", concurrency, requests, warmup=20
            )
            runs.setdefault(f"{kind}_c{concurrency}", []).append(run)
    out: dict[str, Any] = {}
    for name, turns in runs.items():
        latencies = [ms for run in turns for ms in run.latencies_ms]
        seconds = sum(r.seconds for r in turns)
        merged = LoadResult(sum(r.requests for r in turns), seconds, latencies)
        out[name] = {
            "per_s": merged.rate,
            "p50_ms": statistics.median(latencies),
            "p99_ms": merged.pct(0.99),
            "requests": merged.requests,
        }
    return out


def main() -> None:
    with pratai_server() as server:
        _deploy(server)
        results = asyncio.run(_measure(server))
    header = ("invoke over HTTP", "rate", "p50", "p99")
    rows = [header] + [
        (
            f"{kind}, c={c}",
            f"{results[f'{kind}_c{c}']['per_s']:.0f}/s",
            f"{results[f'{kind}_c{c}']['p50_ms']:.1f} ms",
            f"{results[f'{kind}_c{c}']['p99_ms']:.1f} ms",
        )
        for c in REQUESTS
        for kind in KINDS
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    results["machine"] = {"cores": os.cpu_count(), "python": sys.version.split()[0]}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fresh.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {RESULTS / 'fresh.json'}")


if __name__ == "__main__":
    main()
