"""The SDK's I/O-free core, driven by hand: scripted replies instead of a server, and a clock
that each wait advances instead of sleeping."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

import pratai
from pratai.sdk import functions, jobs
from pratai.sdk.client import Invocation, Job
from pratai.sdk.protocol import (
    Conversation,
    Exchange,
    Pause,
    Reply,
    Request,
    decode,
    form_request,
)
from tests.helpers import Clock


class Handles:
    """What a handle needs from its client, for handles whose exchanges are driven by hand."""

    def _run(self, exchange: Exchange[Any]) -> Any:
        raise AssertionError("these tests drive exchanges themselves")


def ok(body: Any, status: int = 200) -> Reply:
    return Reply(status, "OK", json.dumps(body).encode())


def drive(
    exchange: Exchange[Any], server: Callable[[Request], Reply], clock: Clock, seen: list[Any]
) -> Any:
    """Carries `exchange` out as a client would, but a Pause moves `clock` on."""
    talk = Conversation(exchange)
    for step in talk:
        seen.append(step)
        if isinstance(step, Pause):
            clock.advance(step.seconds)
        else:
            talk.reply(server(step))
    return talk.result


def test_a_result_long_polls_with_the_time_left_then_times_out() -> None:
    clock, seen = Clock(), []
    job = Job(Handles(), {"id": "j1", "status": "queued"})

    def server(request: Request) -> Reply:
        clock.advance(float(dict(request.params)["timeout"]))  # the server holds the request
        return ok({"id": "j1", "finished": False, "status": "running"})

    with pytest.raises(TimeoutError, match="j1 did not finish within 90"):
        drive(jobs.settle(job, 90, clock), server, clock, seen)
    assert [r.target for r in seen] == [
        "/v1/jobs/j1/result?timeout=60.0",
        "/v1/jobs/j1/result?timeout=30.0",
    ]


def test_a_finished_result_is_kept_and_not_asked_again() -> None:
    clock, seen = Clock(), []
    job = Job(Handles(), {"id": "j2", "status": "running"})
    body = {"id": "j2", "finished": True, "status": "cancelled", "stdout": "hi", "result": None}
    outcome = drive(jobs.settle(job, None, clock), lambda _: ok(body), clock, seen)
    assert outcome[0] is False and type(outcome[1]).__name__ == "CancelledError"
    assert (job.status, job.stdout) == ("cancelled", "hi") and "result" not in job.view
    assert drive(jobs.settle(job, None, clock), lambda _: ok(body), clock, seen) == outcome
    assert len(seen) == 1


def test_an_invocation_is_asked_again_with_growing_pauses_until_its_timeout() -> None:
    clock, seen = Clock(), []
    invocation = Invocation(Handles(), {"id": "i1", "status": "queued"})
    running = ok({"id": "i1", "status": "running"})
    with pytest.raises(TimeoutError, match="i1 did not finish within 1"):
        drive(functions.settled(invocation, 1, clock), lambda _: running, clock, seen)
    pauses = [step.seconds for step in seen if isinstance(step, Pause)]
    assert pauses == [0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.25, 0.25, 0.25]
    assert all(r.target == "/v1/invocations/i1" for r in seen if isinstance(r, Request))


def test_an_invocation_result_comes_back() -> None:
    clock, seen = Clock(), []
    invocation = Invocation(Handles(), {"id": "i2", "status": "queued"})
    done = {"id": "i2", "status": "succeeded", "result": {"w": 1}}
    answers = iter([{"id": "i2", "status": "running"}, done])
    result = drive(
        functions.settled(invocation, None, clock), lambda _: ok(next(answers)), clock, seen
    )
    assert result == {"w": 1} and invocation.status == "succeeded"
    assert [type(s).__name__ for s in seen] == ["Request", "Pause", "Request"]


def test_a_build_is_waited_out_and_its_failure_raised() -> None:
    clock, seen = Clock(), []
    states = iter(["building", "build_failed"])

    def server(request: Request) -> Reply:
        assert (request.method, request.target) == ("GET", "/v1/functions/resize")
        return ok({"name": "resize", "state": next(states), "build_log": "no such package"})

    building = {"name": "resize", "state": "building"}
    with pytest.raises(pratai.BuildFailed, match="no such package"):
        drive(functions.ready(building), server, clock, seen)
    assert [s.seconds for s in seen if isinstance(s, Pause)] == [0.01, 0.02]


def test_cancelling_a_finished_job_is_false_not_an_error() -> None:
    job = Job(Handles(), {"id": "j3", "status": "succeeded"})
    refused = Reply(409, "Conflict", b'{"error": "conflict", "message": "already succeeded"}')
    exchange = type(job).cancel.__wrapped__(job)  # the exchange behind job.cancel()
    assert drive(exchange, lambda _: refused, Clock(), []) is False
    assert job.status == "succeeded"


def test_error_replies_become_api_errors() -> None:
    body = {"error": "runtime_mismatch", "message": "the server runs 3.12"}
    with pytest.raises(pratai.RuntimeMismatch, match="runs 3") as caught:
        decode(Reply(400, "Bad Request", json.dumps(body).encode()))
    assert caught.value.status == 400 and caught.value.body == body
    with pytest.raises(pratai.ApiError, match="Bad Gateway"):
        decode(Reply(502, "Bad Gateway", b""))
    with pytest.raises(pratai.ApiError, match="upstream said no"):
        decode(Reply(502, "Bad Gateway", b"upstream said no"))
    assert decode(Reply(204, "No Content", b"")) is None


def test_forms_are_encoded_as_the_api_reads_them() -> None:
    fields = {"name": "f", "network": True, "subscribe_to": ["a", "b"], "memory": None}
    form = form_request("PATCH", "/v1/functions/f", fields)
    assert form.headers == {"Content-Type": "application/x-www-form-urlencoded"}
    assert form.content == b"name=f&network=true&subscribe_to=a&subscribe_to=b"
    upload = form_request("POST", "/v1/functions", {"name": "f"}, package=b"PK-zip")
    assert upload.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert upload.content is not None
    assert b'filename="package.zip"' in upload.content and b"PK-zip" in upload.content
