"""SDK benchmarks beside Ray and concurrent.futures.ProcessPoolExecutor, in the same run.

    python -m bench sdk

- round trip: `client.submit(f).result()` of a trivial function, warm, one at a time, against
  `ray.get(f.remote())` on a local `ray.init()` and `pool.submit(f).result()` on a
  ProcessPoolExecutor (the floor: no network, no sandbox, no store);
- map throughput: `client.map(f, range(10_000))` (automatic chunks) against
  `ray.get([f.remote(x) ...])` and `pool.map(f, ...)` with its default chunksize (1) and with
  the SDK's chunksize;
- one job per item: `client.map(..., chunksize=1)` (each item a job) against the same.

Prints a table and writes bench/results/sdk.json.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pratai
from bench.server import pratai_server
from pratai.sdk.executor import auto_chunksize

RESULTS = Path(__file__).parent / "results"
WARMUP = 50
ROUND_TRIPS = 1000
MAP_ITEMS = 10_000
PER_JOB_ITEMS = 2_000
MAX_WORKERS = 32  # the SDK's default jobs in flight


def trivial(x: int = 0) -> int:
    return x


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def round_trips(call: Callable[[], Any]) -> dict[str, float]:
    """Milliseconds per `call()`; a call raising TimeoutError is left out (and retried)."""
    for _ in range(WARMUP):
        with contextlib.suppress(TimeoutError):
            call()
    took: list[float] = []
    while len(took) < ROUND_TRIPS:
        started = time.perf_counter()
        try:
            call()
        except TimeoutError:
            continue
        took.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": statistics.median(took), "p99_ms": _pct(took, 0.99), "n": len(took)}


def _rate(
    run: Callable[[int], list[Any]], items: int, stuck: list[str] | None = None
) -> dict[str, float]:
    """Items per second of `run(items)`; measured again when a job got stuck meanwhile."""
    while True:
        seen = len(stuck or ())
        started = time.perf_counter()
        results = run(items)
        seconds = time.perf_counter() - started
        assert results == list(range(items)), "wrong results"
        if len(stuck or ()) == seen:
            return {"per_s": items / seconds, "seconds": seconds, "items": items}


STUCK_AFTER_S = 60.0  # a trivial job or map that takes this long will not finish


def _retrying(run: Callable[[], Any], what: str, stuck: list[str]) -> Any:
    """`run()`, again (at most twice) when a job it waits for never finishes: the server can
    leave a job `running` for good (see the README), and a benchmark should say so, not hang."""
    for attempt in range(3):
        try:
            return run()
        except TimeoutError as exc:
            stuck.append(f"{what}, attempt {attempt + 1}: {exc}")
    raise SystemExit(f"{what}: jobs never finished three times: {stuck}")


def measure_pratai(url: str, key: str) -> dict[str, Any]:
    stuck: list[str] = []
    with pratai.Client(url, key) as client:

        def round_trip() -> None:
            job = client.submit(trivial)
            try:
                job.result(STUCK_AFTER_S)
            except TimeoutError:
                stuck.append(f"round trip: job {job.id} still {job.status}")
                raise

        def mapped(n: int, chunksize: int | None = None) -> list[Any]:
            results: list[Any] = _retrying(
                lambda: list(
                    client.map(trivial, range(n), chunksize=chunksize, timeout=STUCK_AFTER_S)
                ),
                f"map of {n} (chunksize {chunksize or 'auto'})",
                stuck,
            )
            return results

        out: dict[str, Any] = {"round_trip": round_trips(round_trip)}
        mapped(1000)  # warm: the pool's instances are started
        out["map"] = _rate(mapped, MAP_ITEMS, stuck)
        out["map"]["chunksize"] = auto_chunksize(MAP_ITEMS, MAX_WORKERS)
        out["per_job"] = _rate(lambda n: mapped(n, chunksize=1), PER_JOB_ITEMS, stuck)
    out["stuck_jobs"] = stuck
    return out


def measure_ray() -> dict[str, Any]:
    try:
        import ray
    except ImportError as exc:
        return {"unavailable": f"ray is not installed ({exc}): pip install -e '.[bench]'"}

    def make_trivial() -> Callable[[int], int]:
        def trivial(x: int = 0) -> int:  # nested: shipped by value to Ray's workers
            return x

        return trivial

    ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        remote = ray.remote(make_trivial())
        out: dict[str, Any] = {
            "version": ray.__version__,
            "round_trip": round_trips(lambda: ray.get(remote.remote(0))),
        }
        ray.get([remote.remote(x) for x in range(1000)])  # warm
        out["map"] = _rate(lambda n: ray.get([remote.remote(x) for x in range(n)]), MAP_ITEMS)
        out["per_job"] = _rate(
            lambda n: ray.get([remote.remote(x) for x in range(n)]), PER_JOB_ITEMS
        )
    finally:
        ray.shutdown()
    return out


def measure_process_pool() -> dict[str, Any]:
    chunk = auto_chunksize(MAP_ITEMS, MAX_WORKERS)
    with ProcessPoolExecutor() as pool:
        out: dict[str, Any] = {
            "workers": os.cpu_count(),
            "round_trip": round_trips(lambda: pool.submit(trivial).result()),
        }
        list(pool.map(trivial, range(1000)))
        out["map"] = _rate(lambda n: list(pool.map(trivial, range(n))), MAP_ITEMS)
        out["map_chunked"] = _rate(
            lambda n: list(pool.map(trivial, range(n), chunksize=chunk)), MAP_ITEMS
        )
        out["map_chunked"]["chunksize"] = chunk
        out["per_job"] = _rate(lambda n: list(pool.map(trivial, range(n))), PER_JOB_ITEMS)
    return out


def main() -> None:
    with pratai_server() as server:
        results: dict[str, Any] = {"pratai": measure_pratai(server.url, server.key)}
    results["process_pool"] = measure_process_pool()
    results["ray"] = measure_ray()
    _report(results)


def _report(r: dict[str, Any]) -> None:
    p, floor, ray = r["pratai"], r["process_pool"], r["ray"]
    has_ray = "unavailable" not in ray
    chunked = floor["map_chunked"]

    def ray_cell(fmt: Callable[[dict[str, Any]], str]) -> str:
        return fmt(ray) if has_ray else "n/a"

    rows = [
        (
            "submit(f).result() round trip: p50",
            f"{p['round_trip']['p50_ms']:.2f} ms",
            ray_cell(lambda x: f"{x['round_trip']['p50_ms']:.2f} ms"),
            f"{floor['round_trip']['p50_ms']:.2f} ms",
            "≤ ½ ray",
        ),
        (
            "submit(f).result() round trip: p99",
            f"{p['round_trip']['p99_ms']:.2f} ms",
            ray_cell(lambda x: f"{x['round_trip']['p99_ms']:.2f} ms"),
            f"{floor['round_trip']['p99_ms']:.2f} ms",
            "",
        ),
        (
            f"map, {MAP_ITEMS:,} trivial calls",
            f"{p['map']['per_s']:,.0f}/s (chunks of {p['map']['chunksize']})",
            ray_cell(lambda x: f"{x['map']['per_s']:,.0f}/s (a task each)"),
            f"{floor['map']['per_s']:,.0f}/s (chunksize 1), "
            f"{chunked['per_s']:,.0f}/s (chunksize {chunked['chunksize']})",
            "≥ ½ floor, > ray",
        ),
        (
            f"one job per item, {PER_JOB_ITEMS:,} calls",
            f"{p['per_job']['per_s']:,.0f}/s",
            ray_cell(lambda x: f"{x['per_job']['per_s']:,.0f}/s"),
            f"{floor['per_job']['per_s']:,.0f}/s (chunksize 1)",
            "≥ 2x ray",
        ),
    ]
    r["ratios"] = {
        "round_trip_p50_vs_floor": p["round_trip"]["p50_ms"] / floor["round_trip"]["p50_ms"],
        "map_vs_floor_chunksize_1": p["map"]["per_s"] / floor["map"]["per_s"],
        "map_vs_floor_same_chunksize": p["map"]["per_s"] / floor["map_chunked"]["per_s"],
    }
    if has_ray:
        r["ratios"]["round_trip_p50_vs_ray"] = (
            p["round_trip"]["p50_ms"] / ray["round_trip"]["p50_ms"]
        )
        r["ratios"]["map_vs_ray"] = p["map"]["per_s"] / ray["map"]["per_s"]
        r["ratios"]["per_job_vs_ray"] = p["per_job"]["per_s"] / ray["per_job"]["per_s"]
    header = ("benchmark", "pratai", "ray", "ProcessPoolExecutor (floor)", "target")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    if not has_ray:
        print(f"ray: {ray['unavailable']}")
    for note in p["stuck_jobs"]:
        print(f"pratai: a job never finished ({note}); measured again without it")
    print(f"ratios: {json.dumps({k: round(v, 2) for k, v in r['ratios'].items()})}")
    RESULTS.mkdir(exist_ok=True)
    r["machine"] = {"cores": os.cpu_count(), "python": sys.version.split()[0]}
    (RESULTS / "sdk.json").write_text(json.dumps(r, indent=2))
    print(f"wrote {RESULTS / 'sdk.json'}")


if __name__ == "__main__":
    main()
