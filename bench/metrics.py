"""The cost of the metrics on a warm invocation, beside the same server without them.

    python -m bench metrics

Three `pratai serve` run side by side, one with metrics (the default) and two with
PRATAI_METRICS=off (the peer, and a second one whose difference from the first is the noise of
the measure: an "on / off" ratio within it is no cost at all); each serves a trivial function,
warm. Warm sync invokes over HTTP are measured on them in turns (forward, then backward) so
that a drift of the machine weighs on all alike: p50 and p99 at concurrency 1, and the rate at
concurrency 16. Beside them, a warm invoke through the app itself with metrics on and off
(no sockets: a finer measure), what one run's bookkeeping costs (`Metrics.ran`) and the time of
a scrape.
Prints a table and writes bench/results/metrics.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.http_load import LoadResult, run_load
from bench.server import Running, pratai_server
from pratai.core.models import Invocation, Status
from pratai.drivers.fake import FakeDriver
from pratai.metrics import Metrics
from pratai.server import Platform
from pratai.settings import Settings
from pratai.store.memory import MemoryStore

RESULTS = Path(__file__).parent / "results"
ROUNDS = 6  # turns of each server
C1_REQUESTS = 500  # a turn at concurrency 1
C16_REQUESTS = 2000  # a turn at concurrency 16
SCRAPES = 200
PATH = "/v1/functions/trivial/invoke"


def _zip() -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("main.py", "def main(payload):\n    return {'ok': True}\n")
    return buffer.getvalue()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _deploy(server: Running) -> None:
    auth = {"Authorization": f"Bearer {server.key}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=120) as http:
        form = {"name": "trivial", "concurrency": "16"}
        made = http.post("/v1/functions", data=form, files={"file": ("f.zip", _zip())})
        assert made.status_code == 201, made.text
        while made.json()["state"] == "building":
            time.sleep(0.01)
            made = http.get("/v1/functions/trivial")
        assert made.json()["state"] == "ready", made.text


async def _turns(servers: dict[str, Running], concurrency: int, requests: int) -> dict[str, Any]:
    """Latencies of every turn of each server pooled, and the rate of each turn."""
    latencies: dict[str, list[float]] = {label: [] for label in servers}
    rates: dict[str, list[float]] = {label: [] for label in servers}
    labels = list(servers)
    for turn in range(ROUNDS):
        for label in labels if turn % 2 == 0 else labels[::-1]:
            server = servers[label]
            auth = {"Authorization": f"Bearer {server.key}"}
            run: LoadResult = await run_load(
                "127.0.0.1", server.port, PATH, auth, b"{}", concurrency, requests,
                warmup=max(50, concurrency * 4),
            )  # fmt: skip
            latencies[label] += run.latencies_ms
            rates[label].append(run.rate)
    return {
        label: {
            "p50_ms": statistics.median(latencies[label]),
            "p99_ms": _pct(latencies[label], 0.99),
            "per_s": statistics.median(rates[label]),
            "requests": len(latencies[label]),
        }
        for label in servers
    }


def _bookkeeping_us(runs: int = 100_000) -> float:
    """Microseconds of `Metrics.ran` for one warm run (counter, histograms), in-process."""
    metrics = Metrics()
    invocation = Invocation(
        id="i", project_id="p", function_id="f", function_name="trivial", version=1, mode="sync",
        status=Status.SUCCEEDED, duration_ms=0.4, peak_memory_kb=20_000,
    )  # fmt: skip
    started = time.perf_counter()
    for _ in range(runs):
        metrics.ran("default", invocation)
    return (time.perf_counter() - started) / runs * 1e6


async def _in_process(requests: int = 6000) -> dict[str, float]:
    """p50 of a warm sync invoke through the app itself (httpx's ASGI transport: no sockets,
    so less noise), with metrics on and off, a request to each in turn; the FakeDriver runs
    the function (no sandbox)."""
    apps: dict[str, tuple[Platform, httpx.AsyncClient]] = {}
    scratch = Path(tempfile.mkdtemp(prefix="pratai-bench-metrics-"))
    try:
        for label in ("on", "off"):
            env = {"PRATAI_HOME": str(scratch / label), "PRATAI_METRICS": label}
            settings = Settings.from_env(env)
            made = Platform.assemble(settings, store=MemoryStore(), driver=FakeDriver(settings))
            key = await made.start()
            transport = httpx.ASGITransport(app=made.app(), client=("127.0.0.1", 40000))
            http = httpx.AsyncClient(transport=transport, base_url="http://bench",
                                     headers={"Authorization": f"Bearer {key}"})  # fmt: skip
            answer = await http.post("/v1/functions", data={"name": "trivial"},
                                     files={"file": ("f.zip", _zip())})  # fmt: skip
            assert answer.status_code == 201, answer.text
            apps[label] = (made, http)
        took: dict[str, list[float]] = {label: [] for label in apps}
        for n in range(requests + 200):
            for label in ("on", "off") if n % 2 == 0 else ("off", "on"):
                started = time.perf_counter()
                answer = await apps[label][1].post(PATH, json={})
                if n >= 200:  # warm-up
                    took[label].append((time.perf_counter() - started) * 1e6)
                assert answer.status_code == 200, answer.text
        return {f"{label}_p50_us": statistics.median(took[label]) for label in took}
    finally:
        for made, http in apps.values():
            await http.aclose()
            await made.close()
        shutil.rmtree(Settings.from_env({"PRATAI_HOME": str(scratch)}).sandbox_dir,
                      ignore_errors=True)  # fmt: skip
        shutil.rmtree(scratch, ignore_errors=True)


def _scrapes(server: Running) -> dict[str, float]:
    took: list[float] = []
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for n in range(SCRAPES + 10):
            started = time.perf_counter()
            answer = http.get("/metrics")
            if n >= 10:  # warm-up
                took.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200, answer.text
    return {
        "p50_ms": statistics.median(took),
        "p99_ms": _pct(took, 0.99),
        "bytes": len(answer.content),
    }


def main() -> None:
    # Started in this order, "on" in the middle: a server's rank weighs on its figures (the
    # first started was the slowest here by a few %), which "off" and "off again" then show.
    with (
        pratai_server(PRATAI_METRICS="off") as off,
        pratai_server() as on,
        pratai_server(PRATAI_METRICS="off") as again,
    ):
        servers = {"on": on, "off": off, "off again": again}
        for server in servers.values():
            _deploy(server)
        results: dict[str, Any] = {
            "c1": asyncio.run(_turns(servers, 1, C1_REQUESTS)),
            "c16": asyncio.run(_turns(servers, 16, C16_REQUESTS)),
            "scrape": _scrapes(on),
        }
    results["bookkeeping_us_per_run"] = _bookkeeping_us()
    results["in_process"] = asyncio.run(_in_process())
    _report(results)


def _report(r: dict[str, Any]) -> None:
    c1, c16 = r["c1"], r["c16"]
    r["ratios"] = {
        f"{name}_{versus}": c[on][key] / c["off"][key]
        for name, c, key in (("c1_p50", c1, "p50_ms"), ("c1_p99", c1, "p99_ms"),
                             ("c16_rate", c16, "per_s"))
        for on, versus in (("on", "on_vs_off"), ("off again", "noise"))
    }  # fmt: skip
    q = r["ratios"]

    def compared(label: str, on: str, off: str, name: str) -> tuple[str, ...]:
        return label, on, off, f"{q[f'{name}_on_vs_off']:.3f}", f"{q[f'{name}_noise']:.3f}"

    rows = [
        compared("warm sync invoke, c=1: p50", f"{c1['on']['p50_ms']:.2f} ms",
                 f"{c1['off']['p50_ms']:.2f} ms", "c1_p50"),
        compared("warm sync invoke, c=1: p99", f"{c1['on']['p99_ms']:.2f} ms",
                 f"{c1['off']['p99_ms']:.2f} ms", "c1_p99"),
        compared("warm sync invoke, c=16: rate", f"{c16['on']['per_s']:.0f}/s",
                 f"{c16['off']['per_s']:.0f}/s", "c16_rate"),
        ("warm sync invoke, c=16: p50 / p99",
         f"{c16['on']['p50_ms']:.1f} / {c16['on']['p99_ms']:.1f} ms",
         f"{c16['off']['p50_ms']:.1f} / {c16['off']['p99_ms']:.1f} ms", "", ""),
        ("warm sync invoke in-process, ASGI: p50", f"{r['in_process']['on_p50_us']:.0f} µs",
         f"{r['in_process']['off_p50_us']:.0f} µs",
         f"{r['in_process']['on_p50_us'] / r['in_process']['off_p50_us']:.3f}", ""),
        ("Metrics.ran, in-process, per run", f"{r['bookkeeping_us_per_run']:.1f} µs", "", "", ""),
        ("GET /metrics: p50 / p99", f"{r['scrape']['p50_ms']:.2f} / "
         f"{r['scrape']['p99_ms']:.2f} ms", f"{r['scrape']['bytes']} bytes", "", ""),
    ]  # fmt: skip
    header = ("benchmark", "metrics on", "metrics off", "on / off", "noise (off / off)")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(5)]
    for row in (header, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print(f"turns: {ROUNDS} of each server, in turn; requests a turn: c=1 {C1_REQUESTS}, "
          f"c=16 {C16_REQUESTS}")  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    r["machine"] = {"cores": os.cpu_count(), "python": sys.version.split()[0]}
    (RESULTS / "metrics.json").write_text(json.dumps(r, indent=2))
    print(f"wrote {RESULTS / 'metrics.json'}")


if __name__ == "__main__":
    main()
