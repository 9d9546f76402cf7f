"""Jobs: commands and SDK callables run once; saved jobs run on demand or on a schedule."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from pratai.api import rules
from pratai.api.deps import Services, allowed, read_body, services
from pratai.api.errors import AUTHENTICATED, responses
from pratai.api.schemas import Input
from pratai.core.jobs import PICKLE_TYPE, JobSpec
from pratai.core.models import Job, SavedJob, Status
from pratai.core.saved_jobs import next_run
from pratai.core.tenants import Principal
from pratai.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge

router = APIRouter(prefix="/v1", tags=["jobs"], responses=responses(*AUTHENTICATED))

Reader = Annotated[Principal, Depends(allowed("read"))]
Invoker = Annotated[Principal, Depends(allowed("invoke"))]
Deployer = Annotated[Principal, Depends(allowed("deploy"))]
Svc = Annotated[Services, Depends(services)]
MAX_WAIT_S = 60.0
FOLLOW_POLL_S = 0.1


class JobIn(Input):
    command: list[Annotated[str, Field(json_schema_extra={"minLength": 1})]] = Field(
        description="argv, run in the sandbox without a shell",
        json_schema_extra={"minItems": 1},
    )
    runtime: str | None = Field(
        None,
        description="e.g. python3.11 or node20 (GET /v1/runtimes); the document lists the "
        "names this server accepts",
    )
    env: dict[str, str] = Field(
        {}, json_schema_extra={"propertyNames": {"pattern": rules.ENV_NAME}}
    )
    stdin: str = Field(
        "", description="the command's stdin, base64", json_schema_extra=rules.BASE64
    )
    memory_mb: int | None = Field(None, json_schema_extra=rules.JOB_MEMORY_MB)
    timeout_s: float | None = Field(None, json_schema_extra=rules.JOB_TIMEOUT_S)
    network: bool = False

    def spec(self) -> JobSpec:
        try:
            stdin = base64.b64decode(self.stdin, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput("stdin must be base64") from None
        return JobSpec(
            command=self.command,
            runtime=self.runtime,
            env=self.env,
            stdin=stdin,
            memory_mb=self.memory_mb,
            timeout_s=self.timeout_s,
            network=self.network,
        )


class SavedJobIn(JobIn):
    name: str = Field(json_schema_extra=rules.NAME)


class ScheduleIn(Input):
    cron: str | None = Field(description="a cron expression, or null to stop the schedule")
    timezone: str | None = None


class JobOut(BaseModel):
    id: str
    kind: str
    runtime: str
    status: str
    exit_code: int | None
    stdout: str
    stderr: str
    error: dict[str, Any] | None
    duration_ms: float | None
    peak_memory_kb: int | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    command: list[str]
    saved_name: str | None

    @classmethod
    def of(cls, job: Job) -> dict[str, Any]:
        return cls(
            id=job.id,
            kind=job.kind,
            runtime=job.runtime,
            status=job.status,
            exit_code=job.exit_code,
            stdout=job.stdout,
            stderr=job.stderr,
            error=job.error,
            duration_ms=job.duration_ms,
            peak_memory_kb=job.peak_memory_kb,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            command=job.command,
            saved_name=job.saved_name,
        ).model_dump()


class JobResultOut(BaseModel):
    id: str
    status: str
    finished: bool
    result: str | None = Field(description="base64 of the pickled return value")
    error: dict[str, Any] | None
    stdout: str
    stderr: str


class SavedJobOut(BaseModel):
    name: str
    runtime: str
    command: list[str]
    env_names: list[str]  # values stay private: they may be tokens
    memory_mb: int
    timeout_s: float
    network: bool
    cron: str | None
    timezone: str | None
    next_run: float | None
    created_at: float

    @classmethod
    def of(cls, saved: SavedJob) -> dict[str, Any]:
        return cls(
            name=saved.name,
            runtime=saved.runtime,
            command=saved.command,
            env_names=sorted(saved.env),
            memory_mb=saved.memory_mb,
            timeout_s=saved.timeout_s,
            network=saved.network,
            cron=saved.cron,
            timezone=saved.timezone,
            next_run=next_run(saved, time.time()),
            created_at=saved.created_at,
        ).model_dump()


@router.get("/runtimes")
async def runtimes(who: Reader, svc: Svc) -> dict[str, Any]:
    """The runtimes jobs run in here; callables need the `python` minor version."""
    return {"jobs": svc.jobs.runtimes.names(), "python": svc.jobs.runtimes.python}


@router.post("/jobs", status_code=202, response_model=JobOut, responses=responses(PayloadTooLarge))
async def submit_command(body: JobIn, who: Invoker, svc: Svc) -> Any:
    """Run a command once in the sandbox. Answers once the job is durably queued."""
    return JobOut.of(await svc.jobs.submit_command(who.project, body.spec()))


@router.post(
    "/jobs/callable",
    status_code=202,
    response_model=JobOut,
    responses=responses(PayloadTooLarge),
    openapi_extra={
        "requestBody": {
            "description": "cloudpickle of {'fn', 'args', 'kwargs'} or {'fn', 'map'}",
            "content": {PICKLE_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def submit_callable(
    request: Request,
    who: Invoker,
    svc: Svc,
    python: Annotated[
        str, Query(description="the caller's Python major.minor: the server's own (see /runtimes)")
    ],
    requirements: Annotated[
        list[str] | None,
        Query(json_schema_extra={"items": {"type": "string", "pattern": rules.REQUIREMENT}}),
    ] = None,
    memory_mb: Annotated[int | None, Query(json_schema_extra=rules.JOB_MEMORY_MB)] = None,
    timeout_s: Annotated[float | None, Query(json_schema_extra=rules.JOB_TIMEOUT_S)] = None,
    network: bool = False,
    wait: Annotated[float, Query(description="seconds to wait for the outcome (max 60)")] = 0,
) -> Any:
    """Run a pickled Python callable (what the SDK's `client.submit` sends). With `wait`, the
    answer is the job's result (as from `/result`), 200 if it finished within `wait` seconds,
    202 if not (then ask `/result`)."""
    payload = await read_body(request, svc.settings.max_payload_bytes)
    job = await svc.jobs.submit_callable(
        who.project,
        payload,
        python=python,
        requirements=requirements or [],
        memory_mb=memory_mb,
        timeout_s=timeout_s,
        network=network,
    )
    if wait <= 0:
        return JobOut.of(job)
    job = await svc.jobs.wait(who.project, job.id, min(wait, MAX_WAIT_S))
    return JSONResponse(_result(job), status_code=200 if job.status.finished else 202)


@router.get("/jobs")
async def list_jobs(
    who: Reader,
    svc: Svc,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    status: Status | None = None,
) -> dict[str, list[JobOut]]:
    jobs = await svc.jobs.recent(who.project, limit, status)
    return {"jobs": [JobOut(**JobOut.of(job)) for job in jobs]}


@router.get("/jobs/{job_id}", response_model=JobOut, responses=responses(NotFound))
async def show_job(job_id: str, who: Reader, svc: Svc) -> Any:
    return JobOut.of(await svc.jobs.get(who.project, job_id))


@router.get("/jobs/{job_id}/result", response_model=JobResultOut, responses=responses(NotFound))
async def job_result(job_id: str, who: Reader, svc: Svc, timeout: float = 30.0) -> Any:
    """Waits up to `timeout` seconds (at most 60) for the job to finish."""
    job = await svc.jobs.wait(who.project, job_id, min(max(timeout, 0.0), MAX_WAIT_S))
    return JSONResponse(_result(job))


def _result(job: Job) -> dict[str, Any]:
    error = job.error
    if error is not None and error.get("exception") is None:
        error = {k: v for k, v in error.items() if k != "exception"}
    return {
        "id": job.id,
        "status": str(job.status),
        "finished": job.status.finished,
        "result": base64.b64encode(job.result).decode() if job.result is not None else None,
        "error": error,
        "stdout": job.stdout,
        "stderr": job.stderr,
    }


@router.get(
    "/jobs/{job_id}/output",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}}}},
        **responses(NotFound),
    },
)
async def job_output(job_id: str, who: Reader, svc: Svc, follow: bool = False) -> Response:
    """The job's output as JSON lines: `{"stream", "text"}` chunks, and last `{"status",
    "exit_code", "error"}`. With `follow`, chunks arrive while the job runs."""
    job = await svc.jobs.get(who.project, job_id)

    async def lines() -> AsyncIterator[bytes]:
        current, sent = job, {"stdout": 0, "stderr": 0}
        while True:
            for stream in ("stdout", "stderr"):
                text: str = getattr(current, stream)
                if len(text) > sent[stream]:
                    chunk = {"stream": stream, "text": text[sent[stream] :]}
                    yield (json.dumps(chunk) + "\n").encode()
                    sent[stream] = len(text)
            if current.status.finished or not follow:
                end = {
                    "status": str(current.status),
                    "exit_code": current.exit_code,
                    "error": current.error
                    and {k: current.error.get(k) for k in ("type", "message")},
                }
                yield (json.dumps(end) + "\n").encode()
                return
            await asyncio.sleep(FOLLOW_POLL_S)
            current = await svc.jobs.get(who.project, job_id)

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.post(
    "/jobs/{job_id}/cancel", response_model=JobOut, responses=responses(NotFound, Conflict)
)
async def cancel_job(job_id: str, who: Invoker, svc: Svc) -> Any:
    return JobOut.of(await svc.jobs.cancel(who.project, job_id))


@router.post(
    "/saved-jobs",
    status_code=201,
    response_model=SavedJobOut,
    responses=responses(Conflict, PayloadTooLarge),
)
async def save_job(body: SavedJobIn, who: Deployer, svc: Svc) -> Any:
    return SavedJobOut.of(await svc.saved_jobs.save(who.project, body.name, body.spec()))


@router.get("/saved-jobs")
async def list_saved_jobs(who: Reader, svc: Svc) -> dict[str, list[SavedJobOut]]:
    saved = await svc.saved_jobs.all(who.project)
    return {"saved_jobs": [SavedJobOut(**SavedJobOut.of(s)) for s in saved]}


@router.get("/saved-jobs/{name}", response_model=SavedJobOut, responses=responses(NotFound))
async def show_saved_job(name: str, who: Reader, svc: Svc) -> Any:
    return SavedJobOut.of(await svc.saved_jobs.get(who.project, name))


@router.delete("/saved-jobs/{name}", status_code=204, responses=responses(NotFound))
async def delete_saved_job(name: str, who: Deployer, svc: Svc) -> None:
    await svc.saved_jobs.delete(who.project, name)


@router.post(
    "/saved-jobs/{name}/run", status_code=202, response_model=JobOut, responses=responses(NotFound)
)
async def run_saved_job(name: str, who: Invoker, svc: Svc) -> Any:
    return JobOut.of(await svc.saved_jobs.run(who.project, name))


@router.put(
    "/saved-jobs/{name}/schedule", response_model=SavedJobOut, responses=responses(NotFound)
)
async def schedule_saved_job(name: str, body: ScheduleIn, who: Deployer, svc: Svc) -> Any:
    saved = await svc.saved_jobs.schedule(who.project, name, body.cron, body.timezone)
    return SavedJobOut.of(saved)
