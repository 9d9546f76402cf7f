"""Jobs: the project's recent jobs, a job's page with its output and cancel, and saved jobs with
their schedules (as /v1/jobs and /v1/saved-jobs)."""

from __future__ import annotations

import shlex
import time
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from pratai.api.deps import Services
from pratai.console.web import Svc, Viewer, render, role
from pratai.core.models import Job, Status
from pratai.core.saved_jobs import next_run
from pratai.core.tenants import Principal

router = APIRouter()
Invoker = Annotated[Principal, role("invoke")]
Deployer = Annotated[Principal, role("deploy")]
LISTED = 100


def what(job: Job) -> str:
    """What the job runs, in a line: the command, or the callable's runtime."""
    if job.kind == "callable":
        return f"Python callable ({job.runtime})"
    return shlex.join(job.command)


async def _saved(svc: Services, who: Principal) -> list[dict[str, Any]]:
    at = time.time()
    return [
        {
            "job": s,
            "command": shlex.join(s.command),
            "next_run": next_run(s, at),
            "env_names": sorted(s.env),
        }
        for s in await svc.saved_jobs.all(who.project)
    ]


@router.get("/jobs")
async def jobs_page(request: Request, who: Viewer, svc: Svc, status: str = "") -> Response:
    jobs = await svc.jobs.recent(who.project, LISTED, status or None)
    return render(
        request,
        "jobs/index.html",
        jobs=jobs,
        wanted=status,
        statuses=[s.value for s in Status],
        saved=await _saved(svc, who),
        what=what,
    )


def _job_page(request: Request, job: Job, name: str) -> Response:
    return render(request, name, job=job, what=what, env_names=sorted(job.env))


@router.get("/jobs/{job_id}")
async def job_page(job_id: str, request: Request, who: Viewer, svc: Svc) -> Response:
    return _job_page(request, await svc.jobs.get(who.project, job_id), "jobs/job.html")


@router.get("/jobs/{job_id}/summary")
async def job_summary(job_id: str, request: Request, who: Viewer, svc: Svc) -> Response:
    """The job's state, asked for every few seconds while the job runs. Once it has finished
    the page reloads, showing the job's whole output."""
    job = await svc.jobs.get(who.project, job_id)
    answer = _job_page(request, job, "jobs/_summary.html")
    if job.status.finished:
        answer.headers["HX-Refresh"] = "true"
    return answer


@router.post("/jobs/{job_id}/cancel")
async def cancel(job_id: str, request: Request, who: Invoker, svc: Svc) -> Response:
    return _job_page(request, await svc.jobs.cancel(who.project, job_id), "jobs/_summary.html")


# --- saved jobs ------------------------------------------------------------------------------


async def _saved_section(request: Request, who: Principal, svc: Services, done: str) -> Response:
    return render(request, "jobs/_saved.html", saved=await _saved(svc, who), done=done)


@router.post("/saved-jobs/{name}/run")
async def run_saved(name: str, request: Request, who: Invoker, svc: Svc) -> Response:
    """Runs it now and opens the new job's page."""
    job = await svc.saved_jobs.run(who.project, name)
    return Response(status_code=204, headers={"HX-Redirect": f"/ui/jobs/{job.id}"})


@router.post("/saved-jobs/{name}/schedule")
async def schedule_saved(
    name: str,
    request: Request,
    who: Deployer,
    svc: Svc,
    cron: Annotated[str, Form()] = "",
    timezone: Annotated[str, Form()] = "",
) -> Response:
    """A cron expression schedules it; an empty one stops the schedule."""
    await svc.saved_jobs.schedule(who.project, name, cron.strip() or None, timezone.strip() or None)
    done = f"{name}: scheduled {cron.strip()}" if cron.strip() else f"{name}: no longer scheduled"
    return await _saved_section(request, who, svc, done)


@router.delete("/saved-jobs/{name}")
async def delete_saved(name: str, request: Request, who: Deployer, svc: Svc) -> Response:
    await svc.saved_jobs.delete(who.project, name)
    return await _saved_section(request, who, svc, f"deleted saved job {name}")
