"""The functions of the project: state, live version, triggers, last run and a sparkline of
calls over the last hour each. A function's own page is another module's."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from pratai.console.charts import spark
from pratai.console.web import Svc, Viewer, render
from pratai.core.functions import FunctionView

router = APIRouter()


@dataclass(frozen=True)
class Row:
    view: FunctionView
    triggers: list[tuple[str, int]]  # (kind, how many), by kind
    last_run: float | None
    calls: int  # over the last hour
    spark: dict[str, Any]


@router.get("/functions")
async def functions_list(request: Request, who: Viewer, svc: Svc) -> Response:
    functions = await svc.functions.all(who.project)
    activity = await svc.stats.activity(who.project, functions)
    kinds: dict[str, Counter[str]] = {}
    for trigger in await svc.triggers.all(who.project):
        kinds.setdefault(trigger.function_id, Counter())[str(trigger.kind)] += 1
    rows = [
        Row(
            view=await svc.functions.view(function),
            triggers=sorted(kinds.get(function.id, Counter()).items()),
            last_run=activity.last_run.get(function.id),
            calls=sum(activity.calls[function.id]),
            spark=spark(activity.starts, activity.calls[function.id]),
        )
        for function in functions
    ]
    return render(request, "functions/list.html", rows=rows)
