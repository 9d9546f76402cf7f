"""The overview: the project at a glance."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from pratai.console.web import Viewer, render

router = APIRouter()


@router.get("/")
async def overview(request: Request, who: Viewer) -> Response:
    return render(request, "overview.html")
