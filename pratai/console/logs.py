"""Live output as server-sent events: a function's logs as its invocations finish (what
`pratai logs --follow` prints), and a job's output while it runs (what `job-show --follow`
prints), for `<pre data-sse=...>` elements (console.js appends each `data:` line).

Each stream polls the core services, as the API's followers do; a client that goes away ends
it (Starlette cancels the generator), and so does the server stopping (which waits for open
requests) or STREAM_S: the browser then reconnects with the `id` of the last message as
Last-Event-ID, and the stream goes on from there. Nothing is buffered beyond one poll's worth of
lines.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from pratai.console.web import Svc, Viewer, render
from pratai.core.invocations import LogLine
from pratai.core.models import Job
from pratai.core.tenants import Principal
from pratai.errors import NotFound

router = APIRouter()

LOG_POLL_S = 0.5  # as `pratai logs --follow`
JOB_POLL_S = 0.25
STREAM_S = 300.0  # one connection's life; the browser then opens another
KEEPALIVE_S = 15.0
HISTORY = 50  # recent invocations whose output a new logs page starts with
PER_POLL = 200  # invocations read per poll at most; the rest come with the next
LONG_LINE = 16 * 1024  # a job's unfinished line is sent once it is this long
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(data: str, *, event: str | None = None, last: str | None = None) -> bytes:
    """One message: `data` may hold several lines (the client joins them with newlines)."""
    head = [f"event: {event}"] if event else []
    if last is not None:
        head.append(f"id: {last}")
    body = [f"data: {line}" for line in data.replace("\r", "").split("\n")]
    return ("\n".join(head + body) + "\n\n").encode()


def _log_line(line: LogLine) -> str:
    at = time.strftime("%H:%M:%S", time.gmtime(line.time))
    return (
        f"{at} {line.invocation_id[:8]} {'err' if line.stream == 'stderr' else 'out'} {line.text}"
    )


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


@router.get("/functions/{name}/logs")
async def function_logs(request: Request, name: str, who: Viewer, svc: Svc) -> Response:
    function = await svc.functions.get(who.project, name)
    return render(request, "logs/function.html", function=function)


@router.get("/functions/{name}/logs/stream")
async def function_log_stream(request: Request, name: str, who: Viewer, svc: Svc) -> Response:
    """The output of the function's recent invocations, then of each one as it finishes."""
    function = await svc.functions.get(who.project, name)
    resumed = _float(request.headers.get("last-event-id"))

    async def events() -> AsyncIterator[bytes]:
        yield b"retry: 1000\n\n"
        cursor = resumed
        if cursor is None:
            began = time.time()
            lines, cursor = await svc.invocations.logs(who.project, function, None, HISTORY)
            cursor = cursor or began - 1.0  # as the CLI: nothing finished yet, so from now
            if lines:
                yield sse("\n".join(map(_log_line, lines)), last=repr(cursor))
        yield sse(f"following {name}", event="status")
        end, quiet = time.monotonic() + STREAM_S, 0.0
        while time.monotonic() < end and not svc.stopping():
            await asyncio.sleep(LOG_POLL_S)
            lines, newer = await svc.invocations.logs(who.project, function, cursor, PER_POLL)
            cursor = newer if newer is not None else cursor
            if lines:
                quiet = 0.0
                yield sse("\n".join(map(_log_line, lines)), last=repr(cursor))
            elif (quiet := quiet + LOG_POLL_S) >= KEEPALIVE_S:
                quiet = 0.0
                yield b": still here\n\n"  # a comment: keeps proxies from closing an idle stream

    return StreamingResponse(events(), media_type="text/event-stream", headers=HEADERS)


class _Lines:
    """The complete lines of a growing text not yet sent; the rest waits for its newline."""

    def __init__(self, sent: int = 0) -> None:
        self.sent = sent

    def take(self, text: str, finished: bool) -> list[str]:
        if len(text) < self.sent:
            self.sent = 0  # the output started over (the job ran again after a node was lost)
        fresh = text[self.sent :]
        cut = len(fresh) if finished or len(fresh) >= LONG_LINE else fresh.rfind("\n") + 1
        self.sent += cut
        chunk = fresh[:cut].removesuffix("\n")
        # A carriage return rewrites its line (progress bars): the last writing is the line.
        return (
            [line.rstrip("\r").rsplit("\r", 1)[-1] for line in chunk.split("\n")] if chunk else []
        )


def _offsets(value: str | None) -> tuple[int, int]:
    out, _, err = (value or "").partition(".")
    return (int(out), int(err)) if out.isdigit() and err.isdigit() else (0, 0)


def _ending(job: Job) -> str:
    said = str(job.status).replace("_", " ")
    if job.exit_code is not None:
        said += f" (exit code {job.exit_code})"
    if job.error and job.error.get("message"):
        said += f": {job.error['message']}"
    return said


async def _job_events(
    svc: Svc, who: Principal, job: Job, resume: str | None
) -> AsyncIterator[bytes]:
    out_at, err_at = _offsets(resume)
    streams = {"stdout": _Lines(out_at), "stderr": _Lines(err_at)}
    yield b"retry: 1000\n\n"
    status, end = None, time.monotonic() + STREAM_S
    while True:
        if job.status != status:
            status = job.status
            yield sse(str(status).replace("_", " "), event="status")
        finished = job.status.finished
        lines = [
            line
            for name, lines in streams.items()
            for line in lines.take(getattr(job, name), finished)
        ]
        offsets = f"{streams['stdout'].sent}.{streams['stderr'].sent}"
        if lines:
            yield sse("\n".join(lines), last=offsets)
        if finished:
            yield sse(_ending(job), event="status")
            yield sse(str(job.status), event="end", last=offsets)
            return
        if time.monotonic() > end or svc.stopping():
            return  # the browser comes back with the offsets as Last-Event-ID
        await asyncio.sleep(JOB_POLL_S)
        try:
            job = await svc.jobs.get(who.project, job.id)
        except NotFound:
            yield sse("gone", event="end")
            return


@router.get("/jobs/{job_id}/stream")
async def job_stream(request: Request, job_id: str, who: Viewer, svc: Svc) -> Response:
    """The job's stdout and stderr as they grow, then `event: end` when it has ended."""
    job = await svc.jobs.get(who.project, job_id)
    events = _job_events(svc, who, job, request.headers.get("last-event-id"))
    return StreamingResponse(events, media_type="text/event-stream", headers=HEADERS)
