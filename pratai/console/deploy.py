"""Uploads: a new function (/ui/functions/new) or a new version of one, sent by htmx as
multipart with a progress bar; the build's state then shows, polled until it ends."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response

from pratai.api.deps import read_upload
from pratai.console.web import Svc, Viewer, form_number, render, role
from pratai.core.functions import DEFAULT_MEMORY_MB, DeploySpec, FunctionOptions, FunctionView
from pratai.core.models import BuildState, FunctionVersion
from pratai.core.runtimes import RUNTIMES
from pratai.core.tenants import Principal
from pratai.errors import NotFound

router = APIRouter()
Deployer = Annotated[Principal, role("deploy")]


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
    package = await read_upload(file, svc.settings.max_package_bytes, "the zip")
    options = FunctionOptions(
        runtime=runtime,
        memory_mb=form_number(memory, "memory", int),
        timeout_s=form_number(timeout, "timeout", float),
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
    package = await read_upload(file, svc.settings.max_package_bytes, "the zip")
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
