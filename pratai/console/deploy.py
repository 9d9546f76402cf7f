"""Uploads: a new function (/ui/functions/new) or a new version of one, sent by htmx as
multipart with a progress bar; the build's state then shows, polled until it ends."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response

from pratai.console.web import Svc, Viewer, render, role
from pratai.core.functions import DEFAULT_MEMORY_MB, DeploySpec, FunctionOptions, FunctionView
from pratai.core.models import BuildState, FunctionVersion
from pratai.core.runtimes import RUNTIMES
from pratai.core.tenants import Principal
from pratai.errors import InvalidInput, NotFound, PayloadTooLarge

router = APIRouter()
Deployer = Annotated[Principal, role("deploy")]


async def _package(upload: UploadFile, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"the zip is over the limit of {limit} bytes", limit=limit)
    return data


def _number(text: str, what: str) -> float | None:
    if not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        raise InvalidInput(f"{what} must be a number, not {text.strip()!r}") from None


def _build(
    request: Request, name: str, version: FunctionVersion, created: bool, poll: bool
) -> Response:
    """The version's build state; while building it polls itself. On the upload, and when a
    polled build has ended, the page's header and versions reload (`fn-head`, `fn-versions`)."""
    page = render(request, "functions/_build.html", fn_name=name, v=version, created=created)
    if not poll or version.state != BuildState.BUILDING:
        page.headers["HX-Trigger"] = "fn-head, fn-versions"
    return page


@router.get("/functions/new")
async def new_function_page(request: Request, who: Deployer) -> Response:
    return render(
        request, "functions/new.html", runtimes=RUNTIMES, default_memory=DEFAULT_MEMORY_MB
    )


@router.post("/functions")
async def create_function(
    request: Request,
    who: Deployer,
    svc: Svc,
    name: Annotated[str, Form()],
    file: Annotated[UploadFile, File()],
    runtime: Annotated[str, Form()] = "python",
    memory: Annotated[str, Form()] = "",
    timeout: Annotated[str, Form()] = "",
) -> Response:
    package = await _package(file, svc.settings.max_package_bytes)
    memory_mb = _number(memory, "memory")
    if memory_mb is not None and not memory_mb.is_integer():
        raise InvalidInput("memory must be a whole number of MB")
    options = FunctionOptions(
        runtime=runtime,
        memory_mb=None if memory_mb is None else int(memory_mb),
        timeout_s=_number(timeout, "timeout"),
    )
    spec = DeploySpec(name=name.strip(), package=package, options=options)
    view: FunctionView = await svc.functions.deploy(who.project, spec)
    return _build(request, view.function.name, view.latest, created=True, poll=False)


@router.post("/functions/{name}/versions")
async def upload_version(
    request: Request,
    name: str,
    who: Deployer,
    svc: Svc,
    file: Annotated[UploadFile, File()],
) -> Response:
    package = await _package(file, svc.settings.max_package_bytes)
    view = await svc.functions.update(who.project, name, package, FunctionOptions())
    return _build(request, name, view.latest, created=False, poll=False)


@router.get("/functions/{name}/versions/{number}/build")
async def build_state(
    request: Request, name: str, number: int, who: Viewer, svc: Svc, created: bool = False
) -> Response:
    found = [v for v in await svc.functions.versions(who.project, name) if v.version == number]
    if not found:
        raise NotFound(f"function {name!r} has no version {number}")
    return _build(request, name, found[0], created=created, poll=True)
