"""Live output in the console, as server-sent events: a function's logs while it is invoked
(in a real browser), and a job's output stream until the job ends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
from playwright.sync_api import expect

from tests.console.conftest import Console
from tests.helpers import make_zip

PRINTER = """
import sys

def main(payload):
    print("line", payload["mark"])
    print("warning", payload["mark"], file=sys.stderr)
    return payload
"""


def _deploy(console: Console, tmp_path: Path) -> str:
    name = f"logs-{uuid.uuid4().hex[:8]}"
    package = tmp_path / f"{name}.zip"
    package.write_bytes(make_zip({"main.py": PRINTER}))
    console.server.cli("function-create", name, "--file", str(package))
    return name


def _invoke(console: Console, name: str, mark: str) -> None:
    with console.server.http() as http:
        answer = http.post(f"/v1/functions/{name}/invoke", json={"mark": mark})
        assert answer.status_code == 200, answer.text


def test_live_logs_show_new_output_without_reloading(console: Console, tmp_path: Path) -> None:
    name = _deploy(console, tmp_path)
    _invoke(console, name, "before-the-page")
    page = console.sign_in_with_key(console.server.api_key, then=f"/ui/functions/{name}/logs")
    log = page.locator("pre.live-log")
    expect(log).to_contain_text("out line before-the-page")  # what ran before comes first
    expect(page.locator("#stream-status")).to_have_text(f"following {name}")
    mark = uuid.uuid4().hex
    _invoke(console, name, mark)
    # The page is not reloaded: the line arrives over the open stream.
    expect(log).to_contain_text(f"out line {mark}")
    expect(log).to_contain_text(f"err warning {mark}")
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    assert log.inner_text().count("before-the-page") == 2  # once per stream, not repeated
    console.shot("live-logs")


def test_logs_of_another_projects_function_are_not_found(console: Console, tmp_path: Path) -> None:
    name = _deploy(console, tmp_path)
    project = f"logs-{uuid.uuid4().hex[:6]}"
    with console.server.http() as http:
        assert http.post("/v1/projects", json={"name": project}).status_code == 201
        token = http.post("/v1/keys", json={"project": project, "role": "admin"}).json()["token"]
    console.expect_error(r"status of 404")
    page = console.sign_in_with_key(token)
    for path in (f"/ui/functions/{name}/logs", f"/ui/functions/{name}/logs/stream"):
        answer = page.goto(console.url(path))
        assert answer is not None and answer.status == 404, path


def _events(response: httpx.Response) -> Iterator[tuple[str, str]]:
    """(event name, data) of each server-sent event, as an EventSource reads them."""
    name, data = "message", []
    for line in response.iter_lines():
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
        elif line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data.append(line.removeprefix("data: "))


def test_a_jobs_stream_shows_its_output_live_and_ends_with_the_job(console: Console) -> None:
    page = console.sign_in_with_key(console.server.api_key)
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    with console.server.http() as http:
        job = http.post(
            "/v1/jobs", json={"command": ["sh", "-c", "echo ready; echo oops >&2; sleep 120"]}
        ).json()["id"]
        seen: list[tuple[str, str]] = []
        client = httpx.Client(base_url=console.server.url, cookies=cookies, timeout=60)
        with client, client.stream("GET", f"/ui/jobs/{job}/stream") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            for event in _events(stream):
                seen.append(event)
                if event in (("message", "oops"), ("message", "ready\noops")):
                    # The output came while the job runs; now it ends.
                    assert http.post(f"/v1/jobs/{job}/cancel").status_code == 200
                if event[0] == "end":
                    break
    output = "\n".join(data for name, data in seen if name == "message")
    assert output.splitlines() == ["ready", "oops"]
    statuses = [data for name, data in seen if name == "status"]
    assert "running" in statuses and statuses[-1].startswith("cancelled")
    assert seen[-1] == ("end", "cancelled")


def test_a_job_of_another_project_has_no_stream(console: Console) -> None:
    with console.server.http() as http:
        job = http.post("/v1/jobs", json={"command": ["true"]}).json()["id"]
        project = f"jobs-{uuid.uuid4().hex[:6]}"
        assert http.post("/v1/projects", json={"name": project}).status_code == 201
        token = http.post("/v1/keys", json={"project": project, "role": "admin"}).json()["token"]
    console.expect_error(r"status of 404")
    page = console.sign_in_with_key(token)
    answer = page.goto(console.url(f"/ui/jobs/{job}/stream"))
    assert answer is not None and answer.status == 404
