"""Time to render the console's pages with 10,000 invocations in the project.

    python -m bench console

A `pratai serve` with five functions; the browser's session cookie comes from signing in with
the admin key (POST /ui/signin). Each page is fetched PAGE_LOADS times, signed in, first in the
empty project, then after 10,000 invocations of the last day were put in its store (directly,
as finished runs: no sandbox runs them): the overview `/ui/` and the invocation list
`/ui/invocations`. Beside them, in the same run: the JSON API's list of the same invocations
(GET /v1/invocations?limit=50) and /healthz (the floor: the HTTP stack alone). A page that
answers 404 is reported "missing" (it is not built yet). Prints a table and writes
bench/results/console.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.server import Running, pratai_server
from pratai.core.models import Invocation, Status, new_id
from pratai.store.sql import SqlStore

RESULTS = Path(__file__).parent / "results"
INVOCATIONS = 10_000
FUNCTIONS = 5
PAGE_LOADS = 200
WARMUP = 10
DAY_S = 86_400.0
PAGES = {
    "overview /ui/": "/ui/",
    "invocations /ui/invocations": "/ui/invocations",
    "JSON list /v1/invocations?limit=50": "/v1/invocations?limit=50",
    "floor /healthz": "/healthz",
}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _zip(n: int) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("main.py", f"def main(payload):\n    return {n}\n")
    return buffer.getvalue()


@contextmanager
def _signed_in(server: Running) -> Iterator[httpx.Client]:
    """A client holding the console's session cookie (and the bearer key, for /v1)."""
    auth = {"Authorization": f"Bearer {server.key}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=120) as http:
        origin = {"Origin": server.url}
        answer = http.post("/ui/signin", data={"key": server.key}, headers=origin)
        if answer.status_code != 303 or "pratai_session" not in http.cookies:
            raise SystemExit(f"signing in failed: {answer.status_code} {answer.text[:500]}")
        yield http


def _functions(http: httpx.Client) -> list[dict[str, Any]]:
    made = []
    for n in range(FUNCTIONS):
        answer = http.post(
            "/v1/functions", data={"name": f"fn-{n}"}, files={"file": ("f.zip", _zip(n))}
        )
        assert answer.status_code == 201, answer.text
        made.append(answer.json())
    return made


def _run(function: dict[str, Any], project_id: str, now: float) -> Invocation:
    """A finished run of the last day: mostly successes, some failures with a traceback."""
    created = now - random.random() * DAY_S
    started = created + random.random() * 0.05
    duration = random.lognormvariate(1.0, 1.0)  # ms
    status = random.choices(
        [Status.SUCCEEDED, Status.FAILED, Status.TIMED_OUT], weights=[90, 9, 1]
    )[0]
    failed = status != Status.SUCCEEDED
    error = None
    if failed:
        trace = 'Traceback (most recent call last):\n  File "main.py", line 2\nValueError: no\n'
        error = {"type": "ValueError", "message": "no", "traceback": trace}
    return Invocation(
        id=new_id(), project_id=project_id, function_id=function["id"],
        function_name=function["name"], version=1, mode=random.choice(["sync", "async"]),
        status=status, payload=b'{"n": 1}', result=None if failed else '{"ok": true}',
        error=error, stdout="a line of output\n", cold_start=random.random() < 0.05,
        duration_ms=duration, peak_memory_kb=random.randint(9_000, 40_000),
        created_at=created, started_at=started, finished_at=started + duration / 1000,
    )  # fmt: skip


async def _fill(database: Path, functions: list[dict[str, Any]]) -> float:
    """Puts INVOCATIONS finished runs in the server's store; returns the seconds it took."""
    store = SqlStore(f"sqlite:///{database}")
    await store.open()
    try:
        project = await store.get_project_by_name("default")
        assert project is not None
        now = time.time()
        runs = iter(_run(random.choice(functions), project.id, now) for _ in range(INVOCATIONS))
        started = time.perf_counter()

        async def writer() -> None:
            for invocation in runs:
                await store.create_invocation(invocation)

        await asyncio.gather(*(writer() for _ in range(16)))
        return time.perf_counter() - started
    finally:
        await store.close()


def _loads(http: httpx.Client, path: str) -> dict[str, Any]:
    """p50 and p99 of PAGE_LOADS fetches, or "missing" for a page that answers 404."""
    took: list[float] = []
    for n in range(WARMUP + PAGE_LOADS):
        started = time.perf_counter()
        answer = http.get(path)
        elapsed = (time.perf_counter() - started) * 1000
        if answer.status_code == 404:
            return {"missing": True}
        if answer.status_code != 200:
            raise SystemExit(f"GET {path}: {answer.status_code} {answer.text[:500]}")
        if n >= WARMUP:
            took.append(elapsed)
    return {"p50_ms": statistics.median(took), "p99_ms": _pct(took, 0.99),
            "bytes": len(answer.content), "loads": len(took)}  # fmt: skip


def main() -> None:
    random.seed(12)
    with pratai_server() as server, _signed_in(server) as http:
        functions = _functions(http)
        empty = {label: _loads(http, path) for label, path in PAGES.items()}
        fill_s = asyncio.run(_fill(server.home / "pratai.sqlite3", functions))
        listed = http.get("/v1/invocations", params={"limit": 1000}).json()
        assert len(listed) == 1000, f"the store holds {len(listed)} of the invocations"
        full = {label: _loads(http, path) for label, path in PAGES.items()}
    _report({"empty": empty, "full": full, "fill_s": fill_s, "invocations": INVOCATIONS})


def _cell(found: dict[str, Any]) -> str:
    if found.get("missing"):
        return "missing (404)"
    return f"{found['p50_ms']:.2f} / {found['p99_ms']:.2f} ms"


def _report(r: dict[str, Any]) -> None:
    header = ("page (p50 / p99)", f"{INVOCATIONS:,} invocations", "empty project", "size")
    rows = [
        (label, _cell(r["full"][label]), _cell(r["empty"][label]),
         f"{r['full'][label].get('bytes', 0):,} bytes" if not r["full"][label].get("missing")
         else "")
        for label in PAGES
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(4)]
    for row in (header, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print(
        f"{PAGE_LOADS} loads a page, signed in with a session cookie; {INVOCATIONS:,} "
        f"invocations put in the store in {r['fill_s']:.1f} s"
    )
    RESULTS.mkdir(exist_ok=True)
    r["machine"] = {"cores": os.cpu_count(), "python": sys.version.split()[0]}
    (RESULTS / "console.json").write_text(json.dumps(r, indent=2))
    print(f"wrote {RESULTS / 'console.json'}")


if __name__ == "__main__":
    main()
