"""Invocations: the list with its filters (function, status, trigger, time) and pages, the
in-flight view, and one invocation's page (timeline, input, outcome, output, lineage, and
"Run again with the same input")."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from pratai.console.web import Svc, Viewer, render, role
from pratai.core.models import TRIGGERS, Invocation, InvocationFilter, Status, trigger_of
from pratai.core.tenants import Principal
from pratai.errors import InvalidInput, NotFound

router = APIRouter()

PAGE = 50
IN_FLIGHT = 200  # the in-flight view shows at most this many, newest first
SHOWN_BYTES = 64 * 1024  # of an input, result or output on the page; the API has all of it
SINCE = {"15m": ("last 15 minutes", 900), "1h": ("last hour", 3600), "1d": ("last day", 86400),
         "7d": ("last 7 days", 7 * 86400)}  # fmt: skip
TRIGGER_LABELS = {"sync": "sync call", "async": "async call", "event": "topic event",
                  "chain": "chained", "timer": "timer"}  # fmt: skip
assert set(TRIGGER_LABELS) == set(TRIGGERS)
UNFINISHED = (Status.QUEUED, Status.RUNNING)


def span(seconds: float | None) -> str:
    """A stretch of time as people read it: 40 µs, 8.5 ms, 85 ms, 4.2 s, 3 m 05 s, 2 h 10 m."""
    if seconds is None:
        return ""
    seconds = max(seconds, 0.0)
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1000:.{1 if seconds < 0.01 else 0}f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} m {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} m"


def took(ms: float | None) -> str:
    return "" if ms is None else span(ms / 1000)


def _moment(value: str, name: str) -> float | None:
    """A date and time from the query string (UTC unless it says otherwise)."""
    if not value:
        return None
    try:
        at = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{name}: use a date and time such as 2026-12-01T09:30") from None
    return (at if at.tzinfo else at.replace(tzinfo=dt.UTC)).timestamp()


def _cursor(value: str) -> tuple[float, str] | None:
    """`before`: the created_at and id of the last row of the previous page."""
    if not value:
        return None
    at, _, last_id = value.partition("_")
    try:
        return float(at), last_id
    except ValueError:
        raise InvalidInput("before: not a page cursor of this list") from None


def _form(request: Request) -> dict[str, Any]:
    """The filters of the query string, as the form shows them."""
    q = request.query_params
    return {
        "function": q.get("function", ""),
        "status": [s for s in q.getlist("status") if s],
        "trigger": q.get("trigger", ""),
        "since": q.get("since", ""),
        "from": q.get("from", ""),
        "to": q.get("to", ""),
    }


def _where(form: dict[str, Any], before: str) -> InvocationFilter:
    """The filters as the store takes them; bad ones are InvalidInput."""
    try:
        statuses = tuple(Status(s) for s in form["status"])
    except ValueError:
        names = ", ".join(s.value for s in Status)
        raise InvalidInput(f"status: use one of {names}") from None
    trigger, since = str(form["trigger"]), str(form["since"])
    if trigger and trigger not in TRIGGERS:
        raise InvalidInput(f"trigger: use one of {', '.join(TRIGGERS)}")
    if since and since not in SINCE:
        raise InvalidInput(f"since: use one of {', '.join(SINCE)}")
    after = _moment(str(form["from"]), "from")
    if after is None and since:
        after = time.time() - SINCE[since][1]
    return InvocationFilter(
        statuses=statuses,
        trigger=trigger or None,
        created_after=after,
        created_before=_moment(str(form["to"]), "to"),
        older_than=_cursor(before),
    )


def _link(form: dict[str, Any], **more: str) -> str:
    pairs = [
        (k, v)
        for k, value in form.items()
        for v in (value if isinstance(value, list) else [value])
        if v
    ]
    return "/ui/invocations?" + urlencode(pairs + list(more.items()))


@router.get("/invocations")
async def invocation_list(request: Request, who: Viewer, svc: Svc) -> Response:
    functions = sorted(f.name for f in await svc.functions.all(who.project))
    form = _form(request)
    rows: list[Invocation] = []
    older = problem = None
    try:
        where = _where(form, request.query_params.get("before", ""))
        name = form["function"]
        function = await svc.functions.get(who.project, name) if name else None
        rows = await svc.invocations.find(who.project, function, where, PAGE + 1)
    except (InvalidInput, NotFound) as exc:
        problem = exc.message
    if len(rows) > PAGE:
        rows, last = rows[:PAGE], rows[PAGE - 1]
        older = _link(form, before=f"{last.created_at!r}_{last.id}")
    return render(
        request,
        "invocations/list.html",
        status=400 if problem else 200,
        rows=rows,
        form=form,
        functions=functions,
        older=older,
        paged="before" in request.query_params,
        newest=_link(form),
        problem=problem,
        **_labels(),
    )


async def _in_flight(request: Request, who: Principal, svc: Svc) -> dict[str, Any]:
    name = request.query_params.get("function", "")
    function = await svc.functions.get(who.project, name) if name else None
    where = InvocationFilter(statuses=UNFINISHED)
    rows = await svc.invocations.find(who.project, function, where, IN_FLIGHT)
    return {"rows": rows, "function": name, "now": time.time(), **_labels()}


@router.get("/invocations/in-flight")
async def in_flight(request: Request, who: Viewer, svc: Svc) -> Response:
    context = await _in_flight(request, who, svc)
    context["functions"] = sorted(f.name for f in await svc.functions.all(who.project))
    return render(request, "invocations/in_flight.html", **context)


@router.get("/invocations/in-flight/rows")
async def in_flight_rows(request: Request, who: Viewer, svc: Svc) -> Response:
    """The in-flight table alone: the page swaps it in every 2 s."""
    return render(request, "invocations/in_flight_rows.html", **await _in_flight(request, who, svc))


def _labels() -> dict[str, Any]:
    return {
        "trigger_of": trigger_of,
        "trigger_labels": TRIGGER_LABELS,
        "span": span,
        "took": took,
        "statuses": [s.value for s in Status],
        "since_labels": {k: label for k, (label, _) in SINCE.items()},
    }


def _text(data: bytes | str | None, content_type: str = "application/json") -> dict[str, Any]:
    """What the page shows of an input or a result: JSON pretty, text as it is, bytes counted."""
    if data is None:
        return {"text": None, "note": ""}
    raw = data.encode() if isinstance(data, str) else data
    if not raw:
        return {"text": "", "note": "empty"}
    if "json" in content_type:
        with contextlib.suppress(ValueError):  # not JSON after all: shown as it is
            raw = json.dumps(json.loads(raw), indent=2, ensure_ascii=False).encode()
    try:
        text = raw[:SHOWN_BYTES].decode()
    except UnicodeDecodeError:
        return {"text": None, "note": f"{len(raw)} bytes of binary ({content_type})"}
    cut = (
        f"the first {SHOWN_BYTES // 1024} KiB of {len(raw)} bytes" if len(raw) > SHOWN_BYTES else ""
    )
    return {"text": text, "note": cut}


def _timeline(inv: Invocation, now: float) -> dict[str, Any]:
    """Waiting and running, in seconds and as shares of the whole (for the bar)."""
    end = inv.finished_at or now
    started = inv.started_at
    wait = (started or end) - inv.created_at
    run = end - started if started is not None else 0.0
    total = max(wait + run, 1e-9)
    return {
        "wait_s": max(wait, 0.0),
        "run_s": max(run, 0.0),
        "wait_pct": round(100 * max(wait, 0.0) / total, 2),
        "run_pct": round(100 * max(run, 0.0) / total, 2),
    }


def _traceback(error: dict[str, Any]) -> str:
    trace = error.get("traceback") or ""
    return "\n".join(map(str, trace)) if isinstance(trace, list) else str(trace)


async def _detail(who: Principal, svc: Svc, invocation_id: str) -> dict[str, Any]:
    inv = await svc.invocations.get(who.project, invocation_id)
    tree = await svc.invocations.tree(who.project, inv.id)
    error = inv.error or {}
    return {
        "inv": inv,
        "trigger": trigger_of(inv),
        "trigger_labels": TRIGGER_LABELS,
        "span": span,
        "took": took,
        "timeline": _timeline(inv, time.time()),
        "input": _text(inv.payload, inv.content_type),
        "result": _text(inv.result),
        "error": error,
        "error_extra": {
            k: v for k, v in error.items() if k not in ("type", "message", "traceback")
        },
        "traceback": _traceback(error),
        "stdout": _text(inv.stdout, "text/plain"),
        "stderr": _text(inv.stderr, "text/plain"),
        "lineage": tree if len(tree) > 1 else [],  # alone, it is no pipeline
    }


@router.get("/invocations/{invocation_id}")
async def invocation_page(request: Request, invocation_id: str, who: Viewer, svc: Svc) -> Response:
    return render(request, "invocations/show.html", **await _detail(who, svc, invocation_id))


@router.get("/invocations/{invocation_id}/detail")
async def invocation_detail(
    request: Request, invocation_id: str, who: Viewer, svc: Svc
) -> Response:
    """The page's body alone: swapped in every 2 s until the invocation has finished."""
    context = await _detail(who, svc, invocation_id)
    return render(request, "invocations/detail.html", **context)


@router.post("/invocations/{invocation_id}/again")
async def run_again(invocation_id: str, svc: Svc, who: Principal = role("invoke")) -> Response:
    """A new invocation of the same function with the same input, queued as the API's async
    invoke queues one; the answer is its page."""
    queued = await svc.invocations.again(who.project, invocation_id)
    return RedirectResponse(f"/ui/invocations/{queued.id}", status_code=303)
