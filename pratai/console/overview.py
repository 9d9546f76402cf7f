"""The overview: the project at a glance (usage over the last hour and day, what is queued and
running now, and the latest failures)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from pratai.console.charts import plots
from pratai.console.web import Svc, Viewer, render
from pratai.core.models import Status
from pratai.core.stats import DAY, HOUR

router = APIRouter()


@router.get("/")
async def overview(request: Request, who: Viewer, svc: Svc) -> Response:
    usage = await svc.stats.usage(who.project, [HOUR, DAY])
    hour, day = usage["hour"], usage["day"]
    return render(
        request,
        "overview.html",
        hour=hour,
        day=day,
        plots={"hour": plots(hour), "day": plots(day)},
        in_flight=await svc.stats.in_flight(who.project),
        failures=await svc.stats.latest_failures(who.project, limit=10),
        jobs=await svc.jobs.recent(who.project, limit=20, status=str(Status.RUNNING)),
        has_functions=bool(day.total.calls) or bool(await svc.functions.all(who.project)),
    )
