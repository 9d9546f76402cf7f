"""Usage plots: the `data-series` JSON that console.js draws with uPlot, and the fragment of a
function's plots that its page loads with hx-get."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from pratai.console.web import Svc, Viewer, render
from pratai.core.stats import DAY, HOUR, Usage, window

router = APIRouter()


@dataclass(frozen=True)
class Plot:
    title: str
    name: str  # what tests and styles find it by
    series: dict[str, Any]  # {"x": [unix seconds], "ys": [{"label", "values"}]}


def plots(usage: Usage) -> list[Plot]:
    """Invocations (calls and errors), duration (p50 and p95) and cold starts per bucket."""
    x = [int(start) for start in usage.starts]
    buckets = usage.buckets

    def series(*ys: tuple[str, list[Any]], integer: bool = True) -> dict[str, Any]:
        found = [{"label": label, "values": values} for label, values in ys]
        return {"x": x, "ys": found, "integer": integer}

    def rounded(values: list[float | None]) -> list[float | None]:
        return [None if v is None else round(v, 3) for v in values]

    return [
        Plot(
            "Invocations",
            "calls",
            series(("calls", [b.calls for b in buckets]), ("errors", [b.errors for b in buckets])),
        ),
        Plot(
            "Duration (ms)",
            "duration",
            series(
                ("p50 ms", rounded([b.p50_ms for b in buckets])),
                ("p95 ms", rounded([b.p95_ms for b in buckets])),
                integer=False,
            ),
        ),
        Plot("Cold starts", "cold", series(("cold starts", [b.cold_starts for b in buckets]))),
    ]


def spark(starts: list[float], calls: list[int]) -> dict[str, Any]:
    return {"x": [int(s) for s in starts], "ys": [{"label": "calls", "values": calls}]}


@router.get("/functions/{name}/charts")
async def function_charts(
    request: Request,
    name: str,
    who: Viewer,
    svc: Svc,
    span: Annotated[str, Query(alias="window")] = "hour",
) -> Response:
    """Not a page: the plots of one function, for its page to load into a div (hx-get)."""
    function = await svc.functions.get(who.project, name)
    shown = window(span)
    usage = (await svc.stats.usage(who.project, [shown], function))[shown.name]
    return render(
        request,
        "functions/_charts.html",
        function=function,
        usage=usage,
        plots=plots(usage),
        windows=(HOUR, DAY),
    )
