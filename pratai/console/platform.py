"""What the project's functions run on and read from: connectors and their status, container
images, and (for platform admins) the nodes (as /v1/connectors, /v1/images and /v1/nodes)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from pratai.api.deps import Services
from pratai.connectors.registry import redact_url
from pratai.console.web import Svc, Viewer, render, role
from pratai.core.tenants import Principal
from pratai.errors import NotFound

router = APIRouter()
Deployer = Annotated[Principal, role("deploy")]
Operator = Annotated[Principal, role("operate")]


@router.get("/connectors")
async def connectors_page(request: Request, who: Viewer, svc: Svc) -> Response:
    """On a cluster the status is what the scheduler running the connector says."""
    records = await svc.connectors.all(who.project)
    statuses = await svc.connectors.statuses(records)
    rows = [
        {"record": r, "url": redact_url(r.url), "status": statuses[r.id]}
        for r in sorted(records, key=lambda r: r.name)
    ]
    return render(request, "platform/connectors.html", connectors=rows)


# --- images ----------------------------------------------------------------------------------


async def _images(who: Principal, svc: Services, done: str = "") -> dict[str, Any]:
    found = await svc.images.all(who.project) if svc.images is not None else []
    return {
        "engine": svc.images is not None,
        "images": sorted(found, key=lambda i: i.ref),
        "done": done,
    }


@router.get("/images")
async def images_page(request: Request, who: Viewer, svc: Svc) -> Response:
    return render(request, "platform/images.html", **await _images(who, svc))


@router.delete("/images/{ref:path}")
async def delete_image(ref: str, request: Request, who: Deployer, svc: Svc) -> Response:
    if svc.images is None:
        raise NotFound(f"image {ref!r} not found: this platform runs no container images")
    await svc.images.delete(who.project, ref)
    return render(request, "platform/_images.html", **await _images(who, svc, f"deleted {ref}"))


# --- nodes (platform admins) -----------------------------------------------------------------


def _nodes(svc: Services) -> list[dict[str, Any]]:
    return sorted(svc.nodes.nodes() if svc.nodes is not None else [], key=lambda n: n["name"])


@router.get("/nodes")
async def nodes_page(request: Request, who: Operator, svc: Svc) -> Response:
    return render(request, "platform/nodes.html", nodes=_nodes(svc), done="")


@router.get("/nodes/table")
async def nodes_table(request: Request, who: Operator, svc: Svc) -> Response:
    """The table alone: the page refreshes it every few seconds."""
    return render(request, "platform/_nodes.html", nodes=_nodes(svc), done="")


async def _drain(request: Request, svc: Services, name: str, drain: bool) -> Response:
    if svc.nodes is None:
        raise NotFound(f"no node {name!r}")
    await svc.nodes.drain(name, drain)
    done = f"{name} drains: it takes no new work" if drain else f"{name} takes work again"
    return render(request, "platform/_nodes.html", nodes=_nodes(svc), done=done)


@router.post("/nodes/{name}/drain")
async def drain_node(name: str, request: Request, who: Operator, svc: Svc) -> Response:
    return await _drain(request, svc, name, True)


@router.delete("/nodes/{name}/drain")
async def undrain_node(name: str, request: Request, who: Operator, svc: Svc) -> Response:
    return await _drain(request, svc, name, False)
