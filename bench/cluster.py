"""Pratai on many machines, in one run:

- scaling: a function that sleeps 50 ms on 1, 2 and 3 nodes of PRATAI_NODE_SLOTS=4 each. Sync
  invocations/s with twice the cluster's slots in flight, and async invocations published over
  HTTP (concurrency 16) to finished, per second; each beside its ceiling (nodes x slots / 50 ms)
  and as a ratio to one node. A control run beside them: one node of PRATAI_NODE_SLOTS=32 (the
  default), where the function's own concurrency (4 instances) binds instead of the slots.
- the distributed path: a trivial function (concurrency 16) on that one node, through `pratai
  api` and `pratai scheduler` on NATS and PostgreSQL, beside `pratai serve` (one process on
  SQLite): sync invocations at concurrency 16 (rate, p50, p99) and async published to finished.

    python -m bench.cluster      # or: python -m bench cluster; `make bench` runs it too

It needs what the cluster tests need: PostgreSQL (PRATAI_TEST_PG_URL, default
postgresql://postgres@127.0.0.1:5432/test) and the test extra's nats-server. Run as root with
`ip`, each node runs in a network namespace of its own (tests/cluster/harness.py); else on
loopback. Prints a table and writes bench/results/cluster.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

import httpx
import psycopg

import pratai
from bench import sdk as sdk_bench
from bench.http_load import LoadResult, run_load
from bench.server import pratai_server
from tests.cluster.harness import can_make_namespaces, cluster
from tests.helpers import make_zip

RESULTS = Path(__file__).parent / "results"
SLEEP_S = 0.05
SLOTS = 4  # PRATAI_NODE_SLOTS of each node in the scaling runs
NODE_COUNTS = (1, 2, 3)
PER_NODE = 400  # invocations per node in each scaling run: 5 s of its slots' time
PUBLISH_CONCURRENCY = 16  # async invocations are published over HTTP by this many connections
CONCURRENCY = 16  # sync invocations of the trivial function in flight
WIDE_SLOTS = 32  # PRATAI_NODE_SLOTS's default: the node of the control and trivial runs
TRIVIAL_SYNC = 3000
ONE_AT_A_TIME = 1000  # sync invocations of the trivial function, one at a time
PAUSE_S = 0.3  # before each cold start
TRIVIAL_ASYNC = 2000
FINISH_TIMEOUT_S = 300.0

SLEEPER = (
    f"import time\n\n\ndef main(payload):\n    time.sleep({SLEEP_S})\n    return {{'ok': True}}\n"
)
TRIVIAL = "def main(payload):\n    return {'ok': True}\n"


class Records(Protocol):
    """The invocation records of a Pratai, read from its database."""

    def read(self, function: str, mode: str, since: float) -> list[tuple[float, float | None, str]]:
        """(created_at, finished_at, status) of the invocations created since `since`."""
        ...

    def finished(self, function: str, mode: str, since: float) -> int: ...


_WHERE = "FROM invocations WHERE function_name = {p} AND mode = {p} AND created_at >= {p}"


class PostgresRecords:
    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)

    def read(self, function: str, mode: str, since: float) -> list[tuple[float, float | None, str]]:
        query = "SELECT created_at, finished_at, status " + _WHERE.format(p="%s")
        return list(self.conn.execute(query, (function, mode, since)).fetchall())

    def finished(self, function: str, mode: str, since: float) -> int:
        query = "SELECT count(*) " + _WHERE.format(p="%s") + " AND finished_at IS NOT NULL"
        row = self.conn.execute(query, (function, mode, since)).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self.conn.close()


class SqliteRecords:
    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    def read(self, function: str, mode: str, since: float) -> list[tuple[float, float | None, str]]:
        query = "SELECT created_at, finished_at, status " + _WHERE.format(p="?")
        return list(self.conn.execute(query, (function, mode, since)).fetchall())

    def finished(self, function: str, mode: str, since: float) -> int:
        query = "SELECT count(*) " + _WHERE.format(p="?") + " AND finished_at IS NOT NULL"
        return int(self.conn.execute(query, (function, mode, since)).fetchone()[0])

    def close(self) -> None:
        self.conn.close()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def deploy(url: str, key: str, name: str, source: str, concurrency: int) -> None:
    """Creates the function and waits until it is ready."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as c:
        fn = c.post(
            "/v1/functions",
            data={"name": name, "concurrency": str(concurrency)},
            files={"file": ("f.zip", make_zip({"main.py": source}))},
        ).json()
        deadline = time.monotonic() + 120
        while fn.get("state") == "building" and time.monotonic() < deadline:
            time.sleep(0.05)
            fn = c.get(f"/v1/functions/{name}").json()
        if fn.get("state") != "ready":
            raise SystemExit(f"function {name} did not become ready: {fn}")


def _statuses(records: Records, function: str, mode: str, since: float) -> dict[str, int]:
    return dict(Counter(status for _, _, status in records.read(function, mode, since)))


async def sync_run(
    port: int, key: str, records: Records, function: str, concurrency: int, requests: int
) -> dict[str, Any]:
    """`requests` sync invocations, `concurrency` in flight (each connection warms up first)."""
    since = time.time()
    auth = {"Authorization": f"Bearer {key}"}
    path = f"/v1/functions/{function}/invoke"
    load: LoadResult = await run_load(
        "127.0.0.1", port, path, auth, b"{}", concurrency, requests, warmup=4 * concurrency
    )
    return {
        "concurrency": concurrency,
        "requests": requests,
        "per_s": load.rate,
        "p50_ms": load.p50,
        "p99_ms": load.pct(0.99),
        "statuses": _statuses(records, function, "sync", since),
    }


async def async_run(
    port: int, key: str, records: Records, function: str, count: int
) -> dict[str, Any]:
    """Publishes `count` async invocations over HTTP (PUBLISH_CONCURRENCY connections, one
    warm-up request each, also counted); the rate is from the first publish to the last
    invocation finished, read from the database."""
    auth = {"Authorization": f"Bearer {key}"}
    path = f"/v1/functions/{function}/invoke?async=true"
    since = time.time()
    started = time.perf_counter()
    load = await run_load(
        "127.0.0.1", port, path, auth, b"{}", PUBLISH_CONCURRENCY, count,
        warmup=PUBLISH_CONCURRENCY, expect=202,
    )  # fmt: skip
    expected = count + PUBLISH_CONCURRENCY
    deadline = time.monotonic() + FINISH_TIMEOUT_S
    while records.finished(function, "async", since) < expected:
        if time.monotonic() > deadline:
            raise SystemExit(f"{expected} async invocations of {function} did not finish")
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    rows = records.read(function, "async", since)
    latencies = [(finished - created) * 1000 for created, finished, _ in rows if finished]
    return {
        "invocations": expected,
        "per_s": expected / elapsed,
        "publish_per_s": load.rate,
        "published_to_finished_p50_ms": statistics.median(latencies),
        "published_to_finished_p99_ms": _pct(latencies, 0.99),
        "statuses": dict(Counter(status for _, _, status in rows)),
    }


def measure_cluster(tmp: Path, namespaces: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"scaling": {}}
    with cluster(tmp, namespaces=namespaces) as made:
        made.start_api()
        made.start_scheduler()
        port, key = int(made.apis[0].env["PRATAI_PORT"]), made.admin_key
        records = PostgresRecords(made.database_url)

        def sleeper_run(n: int, slots: int) -> dict[str, Any]:
            requests = PER_NODE * n
            concurrency = 2 * min(slots, SLOTS) * n  # twice what can run at once
            sync = asyncio.run(sync_run(port, key, records, "sleeper", concurrency, requests))
            run = asyncio.run(async_run(port, key, records, "sleeper", requests))
            row = {
                "nodes": n,
                "slots": slots * n,
                "ceiling_per_s": min(slots, SLOTS) * n / SLEEP_S,
                "sync": sync,
                "async": run,
            }
            print(
                f"  {n} node(s) of {slots} slots: sync {sync['per_s']:.0f}/s, async "
                f"{run['per_s']:.0f}/s (ceiling {row['ceiling_per_s']:.0f}/s)",
                flush=True,
            )
            return row

        try:
            for n in NODE_COUNTS:
                while len(made.nodes) < n:
                    made.start_node(f"n{len(made.nodes) + 1}", slots=SLOTS)
                if n == NODE_COUNTS[0]:
                    deploy(made.api_url(), key, "sleeper", SLEEPER, SLOTS)
                out["scaling"][str(n)] = sleeper_run(n, SLOTS)
            for node in made.nodes:
                node.stop()
            # One node whose slots do not bind: the function's concurrency (4 instances) does.
            made.start_node("one", slots=WIDE_SLOTS)
            out["unbound_slots"] = sleeper_run(1, WIDE_SLOTS)
            deploy(made.api_url(), key, "trivial", TRIVIAL, CONCURRENCY)
            out["distributed"] = asyncio.run(_trivial(port, key, records))
        finally:
            records.close()
    return out


async def _trivial(port: int, key: str, records: Records) -> dict[str, Any]:
    sync = await sync_run(port, key, records, "trivial", CONCURRENCY, TRIVIAL_SYNC)
    one = await sync_run(port, key, records, "trivial", 1, ONE_AT_A_TIME)
    run = await async_run(port, key, records, "trivial", TRIVIAL_ASYNC)
    url = f"http://127.0.0.1:{port}"
    return {
        "sync": sync,
        "sync_c1": one,
        "async": run,
        "cold_start_ms": await asyncio.to_thread(cold_starts, url, key),
        "sdk_round_trip": await asyncio.to_thread(sdk_round_trips, url, key),
    }


def cold_starts(url: str, key: str, count: int = 15) -> dict[str, float]:
    """Invoke to result of new functions, each a cold start; not back to back (a pause of
    PAUSE_S first), as cold starts of a node's spare sandboxes (which the api cannot see)."""
    took = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
        for i in range(count):
            deploy(url, key, f"cold-{i}", TRIVIAL + f"# {i}\n", 1)
            time.sleep(PAUSE_S)
            started = time.perf_counter()
            answer = c.post(f"/v1/functions/cold-{i}/invoke", json={}).json()
            took.append((time.perf_counter() - started) * 1000)
            assert answer.get("cold_start"), answer
    return {"p50": statistics.median(took), "p99": _pct(took, 0.99)}


def sdk_round_trips(url: str, key: str) -> dict[str, float]:
    """`client.submit(f).result()`, warm, one at a time (bench/sdk.py's round trip)."""
    with pratai.Client(url, key) as client:
        return sdk_bench.round_trips(lambda: client.submit(sdk_bench.trivial).result(30))


def measure_serve() -> dict[str, Any]:
    with pratai_server() as server:
        deploy(server.url, server.key, "trivial", TRIVIAL, CONCURRENCY)
        records = SqliteRecords(server.home / "pratai.sqlite3")
        try:
            return asyncio.run(_trivial(server.port, server.key, records))
        finally:
            records.close()


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def report(r: dict[str, Any]) -> None:
    one = r["scaling"][str(NODE_COUNTS[0])]
    ratios: dict[str, float] = {}
    rows: list[tuple[str, ...]] = []
    labelled = [(n, row) for n, row in r["scaling"].items()]
    labelled.append((f"1 ({WIDE_SLOTS} slots)", r["unbound_slots"]))
    for label, row in labelled:
        sync, run = row["sync"], row["async"]
        key = f"{label}_nodes" if label.isdigit() else "1_node_unbound_slots"
        ratios[f"sync_{key}_vs_1"] = sync["per_s"] / one["sync"]["per_s"]
        ratios[f"async_{key}_vs_1"] = run["per_s"] / one["async"]["per_s"]
        rows.append(
            (
                label,
                f"{row['ceiling_per_s']:.0f}/s",
                f"{sync['per_s']:.0f}/s (c={sync['concurrency']})",
                f"{ratios[f'sync_{key}_vs_1']:.2f}x",
                f"{sync['per_s'] / row['ceiling_per_s']:.2f}",
                f"{sync['p50_ms']:.0f} / {sync['p99_ms']:.0f} ms",
                f"{run['per_s']:.0f}/s",
                f"{ratios[f'async_{key}_vs_1']:.2f}x",
                f"{run['per_s'] / row['ceiling_per_s']:.2f}",
            )
        )
    print(
        f"\nscaling: a function sleeping {SLEEP_S * 1000:.0f} ms, {SLOTS} slots per node "
        f"(ceiling: slots / {SLEEP_S * 1000:.0f} ms; last row: one node of {WIDE_SLOTS} slots, "
        f"the function's {SLOTS} instances bind)"
    )
    header = (
        "nodes", "ceiling", "sync", "vs 1", "of ceil", "sync p50/p99", "async", "vs 1", "of ceil",
    )  # fmt: skip
    _table(header, rows)

    c, s = r["distributed"], r["serve"]
    ratios["sync_rate_cluster_vs_serve"] = c["sync"]["per_s"] / s["sync"]["per_s"]
    ratios["sync_p50_cluster_vs_serve"] = c["sync"]["p50_ms"] / s["sync"]["p50_ms"]
    ratios["sync_p99_cluster_vs_serve"] = c["sync"]["p99_ms"] / s["sync"]["p99_ms"]
    ratios["async_rate_cluster_vs_serve"] = c["async"]["per_s"] / s["async"]["per_s"]
    ratios["sync_c1_p50_cluster_vs_serve"] = c["sync_c1"]["p50_ms"] / s["sync_c1"]["p50_ms"]
    ratios["cold_start_p50_cluster_vs_serve"] = (
        c["cold_start_ms"]["p50"] / s["cold_start_ms"]["p50"]
    )
    ratios["sdk_p50_cluster_vs_serve"] = (
        c["sdk_round_trip"]["p50_ms"] / s["sdk_round_trip"]["p50_ms"]
    )
    print(f"\nthe distributed path: a trivial function, one node of {WIDE_SLOTS} slots")

    def lat(x: dict[str, Any], p50: str, p99: str) -> str:
        return f"{x[p50]:.1f} / {x[p99]:.1f} ms"

    _table(
        ("benchmark", "cluster (1 node)", "pratai serve", "cluster / serve"),
        [
            (
                f"sync invoke, c={CONCURRENCY}: rate",
                f"{c['sync']['per_s']:.0f}/s",
                f"{s['sync']['per_s']:.0f}/s",
                f"{ratios['sync_rate_cluster_vs_serve']:.2f}",
            ),
            (
                f"sync invoke, c={CONCURRENCY}: p50 / p99",
                lat(c["sync"], "p50_ms", "p99_ms"),
                lat(s["sync"], "p50_ms", "p99_ms"),
                f"{ratios['sync_p50_cluster_vs_serve']:.2f} / "
                f"{ratios['sync_p99_cluster_vs_serve']:.2f}",
            ),
            (
                f"async, {TRIVIAL_ASYNC + PUBLISH_CONCURRENCY} published to finished",
                f"{c['async']['per_s']:.0f}/s",
                f"{s['async']['per_s']:.0f}/s",
                f"{ratios['async_rate_cluster_vs_serve']:.2f}",
            ),
            (
                "async, published to finished: p50 / p99",
                lat(c["async"], "published_to_finished_p50_ms", "published_to_finished_p99_ms"),
                lat(s["async"], "published_to_finished_p50_ms", "published_to_finished_p99_ms"),
                "",
            ),
            (
                "sync invoke, c=1: p50 / p99",
                lat(c["sync_c1"], "p50_ms", "p99_ms"),
                lat(s["sync_c1"], "p50_ms", "p99_ms"),
                f"{ratios['sync_c1_p50_cluster_vs_serve']:.2f} (p50)",
            ),
            (
                "cold start (HTTP): p50 / p99",
                lat(c["cold_start_ms"], "p50", "p99"),
                lat(s["cold_start_ms"], "p50", "p99"),
                f"{ratios['cold_start_p50_cluster_vs_serve']:.2f} (p50)",
            ),
            (
                "SDK submit(f).result(): p50 / p99",
                lat(c["sdk_round_trip"], "p50_ms", "p99_ms"),
                lat(s["sdk_round_trip"], "p50_ms", "p99_ms"),
                f"{ratios['sdk_p50_cluster_vs_serve']:.2f} (p50)",
            ),
        ],
    )
    r["ratios"] = ratios
    print(f"ratios: {json.dumps({k: round(v, 2) for k, v in ratios.items()})}")
    unsuccessful = {
        where: run["statuses"] for where, run in _runs(r) if set(run["statuses"]) != {"succeeded"}
    }
    if unsuccessful:
        print(f"NOT ALL SUCCEEDED: {json.dumps(unsuccessful)}")
    RESULTS.mkdir(exist_ok=True)
    r["machine"] = {"cores": os.cpu_count(), "python": sys.version.split()[0]}
    (RESULTS / "cluster.json").write_text(json.dumps(r, indent=2))
    print(f"wrote {RESULTS / 'cluster.json'}")


def _runs(r: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for n, row in [*r["scaling"].items(), ("1 wide", r["unbound_slots"])]:
        found += [(f"{n} nodes sync", row["sync"]), (f"{n} nodes async", row["async"])]
    for where in ("distributed", "serve"):
        found += [(f"{where} sync", r[where]["sync"]), (f"{where} async", r[where]["async"])]
    return found


def main() -> None:
    namespaces = can_make_namespaces()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pratai-bench-cluster-") as tmp:
        print(f"cluster ({'a network namespace per node' if namespaces else 'loopback'}):")
        results = measure_cluster(Path(tmp), namespaces)
    results["serve"] = measure_serve()
    results["settings"] = {
        "sleep_s": SLEEP_S,
        "slots_per_node": SLOTS,
        "one_node_slots": WIDE_SLOTS,
        "namespaces": namespaces,
        "seconds": round(time.monotonic() - started, 1),
    }
    report(results)


if __name__ == "__main__":
    main()
