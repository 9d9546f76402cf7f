"""The function page: header, code of the live version, versions with rollback, configuration,
triggers and routes; uploads (deploy.py) and the Test panel (invoke_panel.py) are its parts too.
A function of another project is not found: every lookup goes through the viewer's project."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from pratai.api.deps import Services
from pratai.console import deploy, invoke_panel
from pratai.console.web import Svc, Viewer, form_number, render, role
from pratai.core.code import Code, PackageFile
from pratai.core.functions import FunctionOptions, FunctionView
from pratai.core.gateway import describe_limits
from pratai.core.models import FunctionVersion, Project, Trigger
from pratai.core.secrets import FILE, parse_bindings
from pratai.core.tenants import Principal
from pratai.core.triggers import next_ticks
from pratai.errors import NotFound

router = APIRouter()
router.include_router(deploy.router)
router.include_router(invoke_panel.router)
Deployer = Annotated[Principal, role("deploy")]


@dataclass
class Tree:
    """A package's files as folders: what the code view lists."""

    dirs: dict[str, Tree]
    files: list[tuple[str, PackageFile]]  # (name in its folder, the file)

    @classmethod
    def of(cls, files: list[PackageFile]) -> Tree:
        root = cls({}, [])
        for file in files:
            *folders, name = file.path.split("/")
            node = root
            for folder in folders:
                node = node.dirs.setdefault(folder, cls({}, []))
            node.files.append((name, file))
        return root


def _first_file(version: FunctionVersion, files: list[PackageFile]) -> str | None:
    """The file the code view opens on: the handler's module, else the first file."""
    module = version.handler.rpartition(".")[0].replace(".", "/")
    paths = {f.path for f in files}
    for candidate in (f"{module}.py", f"{module}/__init__.py", f"{module}.js", f"{module}.mjs"):
        if candidate in paths:
            return candidate
    return files[0].path if files else None


def origin(request: Request) -> str:
    """This server's address as the browser reached it (the console is mounted at /ui)."""
    return f"{request.url.scheme}://{request.url.netloc}"


def _trigger_row(trigger: Trigger, base: str) -> dict[str, Any]:
    if trigger.kind == "message":
        spec = f"topic {trigger.topic}"
    elif trigger.kind == "timer" and trigger.cron:
        spec = f"cron {trigger.cron} ({trigger.timezone or 'UTC'})"
    elif trigger.kind == "timer":
        spec = f"every {(trigger.frequency_s or 0) / 60:g} min"
    else:
        spec = trigger.mode
    return {
        "kind": str(trigger.kind),
        "spec": spec,
        "url": f"{base}/hooks/{trigger.token}" if trigger.token else None,
        "next": [_tick(at, trigger.timezone) for at in next_ticks(trigger, time.time())],
    }


def _tick(at: float, zone: str | None) -> str:
    """A firing in the timer's time zone, and in UTC (its date too when it differs)."""
    utc = dt.datetime.fromtimestamp(at, dt.UTC)
    if not zone:
        return f"{utc:%Y-%m-%d %H:%M:%S} UTC"
    local = dt.datetime.fromtimestamp(at, ZoneInfo(zone))
    in_utc = utc.strftime("%H:%M" if local.date() == utc.date() else "%Y-%m-%d %H:%M")
    return f"{local:%Y-%m-%d %H:%M} {zone} · {in_utc} UTC"


def bindings_text(secrets: dict[str, str]) -> str:
    """The function's secret bindings as the form edits them, one a line (names, never values)."""
    return "\n".join(
        f"file:{name}" if env.startswith(FILE) else f"{env}={name}"
        for env, name in sorted(secrets.items())
    )


async def page_context(
    request: Request, svc: Services, project: Project, name: str
) -> dict[str, Any]:
    function = await svc.functions.get(project, name)
    view = await svc.functions.view(function)
    triggers = await svc.triggers.of_function(function)
    routes = await svc.gateway.routes_of(function)
    base = origin(request)
    return {
        "f": function,
        "view": view,
        "versions": list(reversed(await svc.functions.versions(project, name))),
        "triggers": [_trigger_row(t, base) for t in triggers],
        "routes": [
            {
                "method": r.method,
                "url": f"{base}/fn/{project.name}{r.path}",
                "limits": describe_limits(r),
            }
            for r in routes
        ],
        "docs": f"/fn/{project.name}/docs" if routes else None,
        "bindings": bindings_text(function.secrets),
    }


async def code_context(
    svc: Services, project: Project, name: str, file: str | None
) -> dict[str, Any]:
    """The code view: the live version's files, and `file` (else the handler's module)."""
    code = Code(svc.functions)
    version = await code.version(project, name)
    if version is None:  # a container image
        return {"code_version": None, "tree": Tree.of([]), "source": None}
    files = await code.files(version)
    chosen = file if file in {f.path for f in files} else _first_file(version, files)
    source = await code.read(version, chosen) if chosen else None
    return {"code_version": version, "tree": Tree.of(files), "source": source}


@router.get("/functions/{name}")
async def function_page(
    request: Request, name: str, who: Viewer, svc: Svc, file: str | None = None
) -> Response:
    context = await page_context(request, svc, who.project, name)
    return render(
        request,
        "functions/page.html",
        **context,
        **await code_context(svc, who.project, name, file),
        payloads=await svc.saved_payloads.all(who.project, name),
    )


@router.get("/functions/{name}/code")
async def code_fragment(request: Request, name: str, file: str, who: Viewer, svc: Svc) -> Response:
    function = await svc.functions.get(who.project, name)
    context = await code_context(svc, who.project, name, file)
    if context["source"] is None or context["source"].path != file:
        raise NotFound(f"the package has no file {file!r}", file=file)
    return render(request, "functions/_code.html", f=function, **context)


@router.get("/functions/{name}/head")
async def head_fragment(request: Request, name: str, who: Viewer, svc: Svc) -> Response:
    context = await page_context(request, svc, who.project, name)
    return render(request, "functions/_head.html", **context)


@router.get("/functions/{name}/versions")
async def versions_fragment(request: Request, name: str, who: Viewer, svc: Svc) -> Response:
    context = await page_context(request, svc, who.project, name)
    return render(request, "functions/_versions.html", **context)


@router.post("/functions/{name}/rollback")
async def rollback(
    request: Request, name: str, version: Annotated[int, Form()], who: Deployer, svc: Svc
) -> Response:
    await svc.functions.rollback(who.project, name, version)
    context = await page_context(request, svc, who.project, name)
    page = render(request, "functions/_versions.html", **context, note=f"v{version} is live")
    page.headers["HX-Trigger"] = "fn-head"  # the header shows the live version
    return page


@router.post("/functions/{name}/config")
async def configure(
    request: Request,
    name: str,
    who: Deployer,
    svc: Svc,
    memory: Annotated[str, Form()] = "",
    timeout: Annotated[str, Form()] = "",
    concurrency: Annotated[str, Form()] = "",
    max_retries: Annotated[str, Form()] = "",
    network: Annotated[str | None, Form()] = None,
    fresh: Annotated[str | None, Form()] = None,
    secrets: Annotated[str, Form()] = "",
) -> Response:
    """The configuration form: what it shows is what the function gets (an unchecked
    network box turns the network off; an emptied bindings box unbinds every secret)."""
    current = await svc.functions.get(who.project, name)
    lines = [line.strip() for line in secrets.splitlines() if line.strip()]
    bindings = parse_bindings(
        [line for line in lines if not line.startswith(FILE)],
        [line.removeprefix(FILE) for line in lines if line.startswith(FILE)],
    )
    options = FunctionOptions(
        memory_mb=form_number(memory, "memory", int),
        timeout_s=form_number(timeout, "timeout", float),
        concurrency=form_number(concurrency, "concurrency", int),
        max_retries=form_number(max_retries, "max retries", int),
        network=network is not None,
        fresh_per_call=fresh is not None,
        secrets=None if bindings == current.secrets else bindings,
    )
    view: FunctionView = await svc.functions.update(who.project, name, None, options)
    return render(
        request,
        "functions/_config.html",
        f=view.function,
        view=view,
        bindings=bindings_text(view.function.secrets),
        note="saved",
    )
