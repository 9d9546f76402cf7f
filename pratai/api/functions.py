"""/v1/functions: deploy, update, roll back, delete, list, show."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile

from pratai.api.deps import Services, allowed, services
from pratai.api.schemas import FunctionOut, FunctionSummary, RollbackIn, VersionOut
from pratai.core.functions import FunctionOptions
from pratai.core.tenants import Principal
from pratai.errors import PayloadTooLarge

router = APIRouter(prefix="/v1/functions", tags=["functions"])

Reader = Annotated[Principal, Depends(allowed("read"))]
Deployer = Annotated[Principal, Depends(allowed("deploy"))]
Svc = Annotated[Services, Depends(services)]


async def _read_package(upload: UploadFile, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"package is over the limit of {limit} bytes", limit=limit)
    return data


@router.post("", status_code=201, response_model=FunctionOut)
async def create_function(
    who: Deployer,
    svc: Svc,
    name: Annotated[str, Form()],
    file: Annotated[UploadFile, File(description="zip with main.py and requirements.txt")],
    description: Annotated[str | None, Form()] = None,
    memory: Annotated[int | None, Form(description="MB")] = None,
    timeout: Annotated[float | None, Form(description="seconds")] = None,
    network: Annotated[bool | None, Form()] = None,
    concurrency: Annotated[int | None, Form()] = None,
    handler: Annotated[str | None, Form(description="module.func")] = None,
) -> FunctionOut:
    package = await _read_package(file, svc.settings.max_package_bytes)
    options = FunctionOptions(description, memory, timeout, network, concurrency, handler)
    view = await svc.functions.create(who.project, name, package, options)
    return FunctionOut.of(view)


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


@router.get("/{name}", response_model=FunctionOut)
async def show_function(name: str, who: Reader, svc: Svc) -> FunctionOut:
    return FunctionOut.of(await svc.functions.view(await svc.functions.get(who.project, name)))


@router.patch("/{name}", response_model=FunctionOut)
async def update_function(
    name: str,
    who: Deployer,
    svc: Svc,
    file: Annotated[UploadFile | None, File()] = None,
    description: Annotated[str | None, Form()] = None,
    memory: Annotated[int | None, Form()] = None,
    timeout: Annotated[float | None, Form()] = None,
    network: Annotated[bool | None, Form()] = None,
    concurrency: Annotated[int | None, Form()] = None,
    handler: Annotated[str | None, Form()] = None,
) -> FunctionOut:
    """A new `file` makes a new immutable version; other fields change settings."""
    package = await _read_package(file, svc.settings.max_package_bytes) if file else None
    options = FunctionOptions(description, memory, timeout, network, concurrency, handler)
    return FunctionOut.of(await svc.functions.update(who.project, name, package, options))


@router.get("/{name}/versions", response_model=list[VersionOut])
async def list_versions(name: str, who: Reader, svc: Svc) -> list[VersionOut]:
    function = await svc.functions.get(who.project, name)
    versions = await svc.functions.versions(who.project, name)
    return [VersionOut.of(v, function.active_version) for v in versions]


@router.post("/{name}/rollback", response_model=FunctionOut)
async def rollback_function(name: str, body: RollbackIn, who: Deployer, svc: Svc) -> FunctionOut:
    return FunctionOut.of(await svc.functions.rollback(who.project, name, body.version))


@router.delete("/{name}", status_code=204)
async def delete_function(name: str, who: Deployer, svc: Svc) -> None:
    await svc.functions.delete(who.project, name)
