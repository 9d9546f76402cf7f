"""Core benchmarks, each beside its floor in the same run.

    python -m bench            # or: make bench; `python -m bench sdk` runs one of them

`core` prints a table and writes bench/results/core.json; `sdk` (bench/sdk.py) writes
bench/results/sdk.json; `cluster` (bench/cluster.py, about 1.5 minutes; it needs PostgreSQL and
nats-server, as the cluster tests do) writes bench/results/cluster.json; `metrics`
(bench/metrics.py: a warm invocation with metrics on and off) writes bench/results/metrics.json;
`console` (bench/console.py: the console's pages with 10,000 invocations) writes
bench/results/console.json; `fresh` (bench/fresh.py: fresh-per-call beside warm reuse) writes
bench/results/fresh.json.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench import cluster, console, events, fresh, metrics, sdk
from bench.http_load import LoadResult, run_load
from bench.server import free_port, pratai_server, wait_http

RESULTS = Path(__file__).parent / "results"
TRIVIAL = "def main(payload):\n    return {'ok': True}\n"


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> None:
    """`python -m bench [core] [sdk] [cluster] [metrics] [console] [fresh]`: the named
    benchmarks, all of them by default."""
    names = (sys.argv[1:] if argv is None else argv) or list(BENCHMARKS)
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        raise SystemExit(f"unknown benchmark {sorted(unknown)}: use {' '.join(BENCHMARKS)}")
    for name in names:
        BENCHMARKS[name]()


def core() -> None:
    floor_port = free_port()
    with pratai_server() as server:
        logs = open(server.scratch / "floor.log", "wb")  # noqa: SIM115
        floor = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.floor:app",
                "--port",
                str(floor_port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            stdout=logs,
            stderr=logs,
        )
        try:
            wait_http(f"http://127.0.0.1:{floor_port}/", floor)
            results = asyncio.run(_measure(server.port, floor_port, server.key))
            results["events"] = asyncio.run(
                events.measure(server.port, server.key, server.home / "pratai.sqlite3")
            )
            results["events"]["store_insert_floor_per_s"] = asyncio.run(events.store_floor())
        finally:
            floor.terminate()
            floor.wait()
            logs.close()
    results["cold_start_no_spare_ms"] = cold_without_spares()
    _report(results)


NODE_TRIVIAL = "exports.main = (payload) => ({ ok: true });\n"


def _cold_starts(
    http: httpx.Client, prefix: str, wait_for_spare: bool, runtime: str = "python"
) -> list[float]:
    """Milliseconds from invoke to result of new functions, each a cold start. With
    `wait_for_spare`, each waits first until the node has a spare sandbox waiting (as it has
    when cold starts are not back to back): a cold start's cost, not a burst's."""
    cold: list[float] = []
    # With spares, a first cold start of the shape (not measured) has the node start them; the
    # row without spares shows what that one costs.
    for i in range(-1 if wait_for_spare else 0, 20):
        name = f"{prefix}-{i}" if i >= 0 else f"{prefix}-first"
        if runtime == "python":
            package, form = {"main.py": TRIVIAL + f"# {i}\n"}, {"name": name}
        else:
            package = {"index.js": NODE_TRIVIAL + f"// {i}\n"}
            form = {"name": name, "runtime": runtime, "handler": "index.main"}
        created = http.post("/v1/functions", data=form, files={"file": ("f.zip", _zip(package))})
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 10
        while wait_for_spare and i >= 0 and time.monotonic() < deadline:
            spares = http.get("/v1/node").json()["driver"]["spare_sandboxes"]
            if spares["waiting_by_runtime"].get(runtime):
                break
            time.sleep(0.005)
        started = time.perf_counter()
        inv = http.post(f"/v1/functions/{name}/invoke", json={}).json()
        if i >= 0:
            cold.append((time.perf_counter() - started) * 1000)
        assert inv["cold_start"], inv
    return cold


def cold_without_spares() -> dict[str, dict[str, float]]:
    """Cold starts that start their sandbox (PRATAI_SPARE_SANDBOXES=0)."""
    with (
        pratai_server(PRATAI_SPARE_SANDBOXES="0") as server,
        httpx.Client(
            base_url=f"http://127.0.0.1:{server.port}",
            headers={"Authorization": f"Bearer {server.key}"},
            timeout=120,
        ) as http,
    ):
        cold = _cold_starts(http, "bare", wait_for_spare=False)
        node = _cold_starts(http, "bare-node", wait_for_spare=False, runtime="node20")
    return {
        "python": {"p50": statistics.median(cold), "p99": _pct(cold, 0.99)},
        "node": {"p50": statistics.median(node), "p99": _pct(node, 0.99)},
    }


async def _measure(port: int, floor_port: int, key: str) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {key}"}
    out: dict[str, Any] = {}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=120) as http:

        def deploy(name: str, files: dict[str, str]) -> float:
            started = time.perf_counter()
            fn = http.post(
                "/v1/functions", data={"name": name}, files={"file": ("f.zip", _zip(files))}
            ).json()
            while fn["state"] == "building":
                time.sleep(0.01)
                fn = http.get(f"/v1/functions/{name}").json()
            assert fn["state"] == "ready", fn
            return (time.perf_counter() - started) * 1000

        no_deps = [deploy(f"plain-{i}", {"main.py": TRIVIAL}) for i in range(10)]
        deps = {"main.py": "import six\n" + TRIVIAL, "requirements.txt": "six==1.16.0\n"}
        deploy("dep-warm", deps)  # fills the environment cache; not measured
        cached = [deploy(f"dep-{i}", deps) for i in range(5)]
        out["deploy_no_deps_ms"] = {"p50": statistics.median(no_deps), "p99": max(no_deps)}
        out["deploy_cached_dep_ms"] = {"p50": statistics.median(cached), "p99": max(cached)}

        cold = _cold_starts(http, "cold", wait_for_spare=True)
        out["cold_start_ms"] = {"p50": statistics.median(cold), "p99": _pct(cold, 0.99)}
        cold = _cold_starts(http, "cold-node", wait_for_spare=True, runtime="node20")
        out["cold_start_node_ms"] = {"p50": statistics.median(cold), "p99": _pct(cold, 0.99)}

        http.post(
            "/v1/functions",
            data={"name": "trivial", "concurrency": "16"},
            files={"file": ("f.zip", _zip({"main.py": TRIVIAL}))},
        )

    path = "/v1/functions/trivial/invoke"
    runs: dict[str, LoadResult] = {}
    for label, target, headers in (("floor", floor_port, {}), ("pratai", port, auth)):
        runs[f"{label}_c1"] = await run_load("127.0.0.1", target, path, headers, b"{}", 1, 2000)
        runs[f"{label}_c16"] = await run_load(
            "127.0.0.1", target, path, headers, b"{}", 16, 5000, warmup=200
        )
    for name, run in runs.items():
        out[name] = {
            "p50_ms": run.p50,
            "p99_ms": run.pct(0.99),
            "per_s": run.rate,
            "requests": run.requests,
        }
    return out


def _report(r: dict[str, Any]) -> None:
    rows = [
        (
            "warm sync invoke, c=1: p50",
            f"{r['pratai_c1']['p50_ms']:.2f} ms",
            f"{r['floor_c1']['p50_ms']:.2f} ms",
            "≤ 0.6 ms",
        ),
        (
            "warm sync invoke, c=1: p99",
            f"{r['pratai_c1']['p99_ms']:.2f} ms",
            f"{r['floor_c1']['p99_ms']:.2f} ms",
            "≤ 3 ms",
        ),
        (
            "warm sync invoke, c=16: rate",
            f"{r['pratai_c16']['per_s']:.0f}/s",
            f"{r['floor_c16']['per_s']:.0f}/s",
            "≥ 4000/s",
        ),
        (
            "warm sync invoke, c=16: p50 / p99",
            f"{r['pratai_c16']['p50_ms']:.1f} / {r['pratai_c16']['p99_ms']:.1f} ms",
            f"{r['floor_c16']['p50_ms']:.1f} / {r['floor_c16']['p99_ms']:.1f} ms",
            "",
        ),
        (
            "cold start, Python (HTTP, a spare waiting): p50 / p99",
            "{p50:.1f} / {p99:.1f} ms".format(**r["cold_start_ms"]),
            "",
            "p50 ≤ 15 ms",
        ),
        (
            "cold start, Python (HTTP, no spares): p50 / p99",
            "{p50:.0f} / {p99:.0f} ms".format(**r["cold_start_no_spare_ms"]["python"]),
            "",
            "",
        ),
        (
            "cold start, Node.js (HTTP, a spare waiting): p50 / p99",
            "{p50:.1f} / {p99:.1f} ms".format(**r["cold_start_node_ms"]),
            "",
            "p50 ≤ 30 ms",
        ),
        (
            "cold start, Node.js (HTTP, no spares): p50 / p99",
            "{p50:.0f} / {p99:.0f} ms".format(**r["cold_start_no_spare_ms"]["node"]),
            "",
            "",
        ),
        (
            "deploy to ready, no deps: p50 / max",
            f"{r['deploy_no_deps_ms']['p50']:.0f} / {r['deploy_no_deps_ms']['p99']:.0f} ms",
            "",
            "≤ 1000 ms",
        ),
        (
            "deploy to ready, cached dep: p50 / max",
            f"{r['deploy_cached_dep_ms']['p50']:.0f} / {r['deploy_cached_dep_ms']['p99']:.0f} ms",
            "",
            "≤ 3000 ms",
        ),
    ]
    ev = r["events"]
    rows += [
        (
            "events: publish over HTTP, c=16",
            f"{ev['publish_per_s']:.0f}/s",
            f"{ev['store_insert_floor_per_s']:.0f}/s (store insert)",
            "",
        ),
        (
            "events: published to function finished",
            f"{ev['end_to_end_per_s']:.0f}/s",
            f"{ev['store_insert_floor_per_s']:.0f}/s (store insert)",
            "≥ 2000/s",
        ),
        (
            "events: event to finished p50 / p99",
            f"{ev['event_to_finished_p50_ms']:.0f} / {ev['event_to_finished_p99_ms']:.0f} ms",
            "",
            "p99 ≤ 50 ms",
        ),
    ]
    r["ratios"] = {
        "c1_p50_vs_floor": r["pratai_c1"]["p50_ms"] / r["floor_c1"]["p50_ms"],
        "c16_rate_vs_floor": r["pratai_c16"]["per_s"] / r["floor_c16"]["per_s"],
        "events_vs_store_floor": ev["end_to_end_per_s"] / ev["store_insert_floor_per_s"],
    }
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    header = ("benchmark", "pratai", "bare ASGI floor", "target")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    for row in (header, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print(f"ratios: {json.dumps({k: round(v, 2) for k, v in r['ratios'].items()})}")
    RESULTS.mkdir(exist_ok=True)
    r["machine"] = {"cores": os.cpu_count(), "python": sys.version.split()[0]}
    (RESULTS / "core.json").write_text(json.dumps(r, indent=2))
    print(f"wrote {RESULTS / 'core.json'}")


BENCHMARKS: dict[str, Callable[[], None]] = {
    "core": core,
    "sdk": sdk.main,
    "cluster": cluster.main,
    "metrics": metrics.main,
    "console": console.main,
    "fresh": fresh.main,
}

if __name__ == "__main__":
    main()
