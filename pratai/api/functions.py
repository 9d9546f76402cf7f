"""/v1/functions: deploy, update, roll back, delete, list, show."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile

from pratai.api import rules
from pratai.api.deps import Services, allowed, read_upload, services
from pratai.api.errors import AUTHENTICATED, responses
from pratai.api.schemas import FunctionOut, FunctionSummary, RollbackIn, TriggerOut, VersionOut
from pratai.core.functions import DeploySpec, FunctionOptions, FunctionView
from pratai.core.gateway import RouteSpec, describe_limits
from pratai.core.models import Project
from pratai.core.secrets import parse_bindings
from pratai.core.tenants import Principal
from pratai.core.triggers import TriggerSpec
from pratai.errors import Conflict, NotFound, PayloadTooLarge

router = APIRouter(prefix="/v1/functions", tags=["functions"], responses=responses(*AUTHENTICATED))

Reader = Annotated[Principal, Depends(allowed("read"))]
Deployer = Annotated[Principal, Depends(allowed("deploy"))]
Svc = Annotated[Services, Depends(services)]


# A function is a package or a container image, and its trigger's fields go together.
_PACKAGE_OR_IMAGE = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "allOf": [
                        {"anyOf": [{"required": ["file"]}, {"required": ["image"]}]},
                        *rules.TRIGGER_FIELDS,
                    ]
                }
            }
        }
    }
}


# Form fields that deploy and update share
SecretBindings = Annotated[
    list[str] | None,
    Form(description="ENV or ENV=secret_name", json_schema_extra=rules.SECRET_BINDINGS),
]
SecretFiles = Annotated[
    list[str] | None,
    Form(description="secret in /run/secrets", json_schema_extra=rules.SECRET_FILES),
]


@router.post(
    "",
    status_code=201,
    response_model=FunctionOut,
    responses=responses(NotFound, Conflict, PayloadTooLarge),
    openapi_extra=_PACKAGE_OR_IMAGE,
)
async def create_function(
    request: Request,
    who: Deployer,
    svc: Svc,
    name: Annotated[str, Form(json_schema_extra=rules.NAME)],
    file: Annotated[
        UploadFile | None, File(description="zip with main.py and requirements.txt")
    ] = None,
    image: Annotated[str | None, Form(description="container image ref (instead of file)")] = None,
    contract: Annotated[
        str | None, Form(description="image functions", json_schema_extra=rules.CONTRACT)
    ] = None,
    description: Annotated[str | None, Form()] = None,
    memory: Annotated[
        int | None, Form(description="MB", json_schema_extra=rules.FUNCTION_MEMORY_MB)
    ] = None,
    timeout: Annotated[
        float | None, Form(description="seconds", json_schema_extra=rules.FUNCTION_TIMEOUT_S)
    ] = None,
    network: Annotated[bool | None, Form()] = None,
    fresh_per_call: Annotated[
        bool | None, Form(description="a new sandbox for every call (no warm reuse)")
    ] = None,
    concurrency: Annotated[int | None, Form(json_schema_extra=rules.CONCURRENCY)] = None,
    handler: Annotated[str | None, Form(description="module.func")] = None,
    max_retries: Annotated[
        int | None,
        Form(description="retries of a failed async run", json_schema_extra=rules.RETRIES),
    ] = None,
    runtime: Annotated[
        str | None, Form(description="python is the default", json_schema_extra=rules.RUNTIME)
    ] = None,
    event: Annotated[
        str | None, Form(description="the trigger to create", json_schema_extra=rules.EVENT)
    ] = None,
    type: Annotated[str, Form(json_schema_extra=rules.MODE)] = "async",
    subscribe_to: Annotated[
        str | None, Form(description="topic (message)", json_schema_extra=rules.TOPIC)
    ] = None,
    frequency: Annotated[
        float | None,
        Form(description="minutes (timer)", json_schema_extra=rules.FREQUENCY_MINUTES),
    ] = None,
    cron: Annotated[str | None, Form(description="cron expression (timer)")] = None,
    timezone: Annotated[str | None, Form(description="time zone of cron")] = None,
    secret: SecretBindings = None,
    secret_file: SecretFiles = None,
    route: Annotated[str | None, Form(description='gateway route, e.g. "GET /users/{id}"')] = None,
    route_auth: Annotated[
        str, Form(description="public, or the least role", json_schema_extra=rules.ROUTE_AUTH)
    ] = "public",
    rate_limit: Annotated[
        str | None, Form(description="e.g. 100/minute", json_schema_extra=rules.RATE)
    ] = None,
    max_body: Annotated[int | None, Form(description="route request size limit")] = None,
    route_timeout: Annotated[float | None, Form(description="route time limit, s")] = None,
    cors_origin: Annotated[list[str] | None, Form(description="allowed origin")] = None,
) -> FunctionOut:
    """Deploy a function; with `event`, also the trigger that runs it; with `route`, a route
    of the project's gateway."""
    package = await read_upload(file, svc.settings.max_package_bytes) if file else None
    options = FunctionOptions(
        description=description, memory_mb=memory, timeout_s=timeout, network=network,
        concurrency=concurrency, handler=handler, max_retries=max_retries, runtime=runtime,
        secrets=_bindings(secret, secret_file), image=image, contract=contract,
        fresh_per_call=fresh_per_call,
    )  # fmt: skip
    trigger = TriggerSpec(
        kind=event, mode=type, topic=subscribe_to, frequency_minutes=frequency, cron=cron,
        timezone=timezone,
    ) if event else None  # fmt: skip
    route_spec = RouteSpec(
        route=route, auth=route_auth, rate_limit=rate_limit, max_body_bytes=max_body,
        timeout_s=route_timeout, cors_origins=tuple(cors_origin or ()),
    ) if route else None  # fmt: skip
    spec = DeploySpec(
        name=name, package=package, options=options, trigger=trigger, route=route_spec
    )
    view = await svc.functions.deploy(who.project, spec)
    return await _out(svc, who.project, view, str(request.base_url))


def _bindings(secret: list[str] | None, secret_file: list[str] | None) -> dict[str, str] | None:
    return parse_bindings(secret or [], secret_file) if secret or secret_file else None


async def _out(svc: Services, project: Project, view: FunctionView, base_url: str) -> FunctionOut:
    function = view.function
    triggers = await svc.triggers.of_function(function)
    out = FunctionOut.of(view, [TriggerOut.of(t, function.name, base_url) for t in triggers])
    prefix = f"{base_url.rstrip('/')}/fn/{project.name}"
    out.routes = [
        f"{r.method} {prefix}{r.path} ({describe_limits(r)})"
        for r in await svc.gateway.routes_of(function)
    ]
    return out


@router.get("", response_model=list[FunctionSummary])
async def list_functions(who: Reader, svc: Svc) -> list[FunctionSummary]:
    return [
        FunctionSummary(
            name=f.name,
            description=f.description,
            latest_version=f.latest_version,
            active_version=f.active_version,
            memory_mb=f.memory_mb,
            timeout_s=f.timeout_s,
            updated_at=f.updated_at,
        )
        for f in await svc.functions.all(who.project)
    ]


@router.get("/{name}", response_model=FunctionOut, responses=responses(NotFound))
async def show_function(name: str, request: Request, who: Reader, svc: Svc) -> FunctionOut:
    view = await svc.functions.view(await svc.functions.get(who.project, name))
    return await _out(svc, who.project, view, str(request.base_url))


@router.patch(
    "/{name}",
    response_model=FunctionOut,
    responses=responses(NotFound, Conflict, PayloadTooLarge),
)
async def update_function(
    name: str,
    request: Request,
    who: Deployer,
    svc: Svc,
    file: Annotated[UploadFile | None, File()] = None,
    image: Annotated[str | None, Form(description="a new container image ref")] = None,
    contract: Annotated[
        str | None, Form(description="image functions", json_schema_extra=rules.CONTRACT)
    ] = None,
    description: Annotated[str | None, Form()] = None,
    memory: Annotated[int | None, Form(json_schema_extra=rules.FUNCTION_MEMORY_MB)] = None,
    timeout: Annotated[float | None, Form(json_schema_extra=rules.FUNCTION_TIMEOUT_S)] = None,
    network: Annotated[bool | None, Form()] = None,
    fresh_per_call: Annotated[
        bool | None, Form(description="a new sandbox for every call (no warm reuse)")
    ] = None,
    concurrency: Annotated[int | None, Form(json_schema_extra=rules.CONCURRENCY)] = None,
    handler: Annotated[str | None, Form()] = None,
    max_retries: Annotated[int | None, Form(json_schema_extra=rules.RETRIES)] = None,
    runtime: Annotated[
        str | None,
        Form(description="must be the function's runtime", json_schema_extra=rules.RUNTIME),
    ] = None,
    secret: SecretBindings = None,
    secret_file: SecretFiles = None,
) -> FunctionOut:
    """A new `file` makes a new immutable version; other fields change settings."""
    package = await read_upload(file, svc.settings.max_package_bytes) if file else None
    options = FunctionOptions(
        description=description, memory_mb=memory, timeout_s=timeout, network=network,
        concurrency=concurrency, handler=handler, max_retries=max_retries, runtime=runtime,
        secrets=_bindings(secret, secret_file), image=image, contract=contract,
        fresh_per_call=fresh_per_call,
    )  # fmt: skip
    view = await svc.functions.update(who.project, name, package, options)
    return await _out(svc, who.project, view, str(request.base_url))


@router.get("/{name}/versions", response_model=list[VersionOut], responses=responses(NotFound))
async def list_versions(name: str, who: Reader, svc: Svc) -> list[VersionOut]:
    function = await svc.functions.get(who.project, name)
    versions = await svc.functions.versions(who.project, name)
    return [VersionOut.of(v, function.active_version) for v in versions]


@router.post(
    "/{name}/rollback", response_model=FunctionOut, responses=responses(NotFound, Conflict)
)
async def rollback_function(
    name: str, body: RollbackIn, request: Request, who: Deployer, svc: Svc
) -> FunctionOut:
    view = await svc.functions.rollback(who.project, name, body.version)
    return await _out(svc, who.project, view, str(request.base_url))


@router.delete("/{name}", status_code=204, responses=responses(NotFound))
async def delete_function(name: str, who: Deployer, svc: Svc) -> None:
    await svc.functions.delete(who.project, name)
