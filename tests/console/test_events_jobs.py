"""The console's events and jobs pages in a real browser: publishing a test event and seeing it
run a subscriber, the dead-letter topic and its redrive, a job's output and cancel, saved jobs."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

from playwright.sync_api import Dialog, expect

from tests.console.conftest import Console
from tests.helpers import make_zip, wait_for

SUBSCRIBER = """
def main(payload):
    if payload.get("fail"):
        raise ValueError("asked to fail")
    return {"seen": payload}
"""


def _suffix() -> str:
    return uuid.uuid4().hex[:8]


def _subscriber(console: Console, tmp_path: Path, topic: str, *flags: str) -> str:
    name = f"sub-{_suffix()}"
    archive = tmp_path / f"{name}.zip"
    archive.write_bytes(make_zip({"main.py": SUBSCRIBER}))
    console.server.cli(
        "function-create", name, "--file", str(archive), "--event", "message",
        "--subscribe_to", topic, *flags,
    )  # fmt: skip
    return name


def _accept(dialog: Dialog) -> None:
    dialog.accept()


def test_a_test_event_published_in_the_console_shows_on_its_topic_and_runs_its_subscriber(
    console: Console, tmp_path: Path
) -> None:
    suffix = _suffix()
    topic = f"orders-{suffix}"
    function = _subscriber(console, tmp_path, topic)
    page = console.sign_in_with_key(console.server.api_key, then="/ui/events")
    listed = page.locator("table.topics tbody tr", has_text=topic)
    expect(listed).to_contain_text(function)
    expect(listed).to_contain_text("no events yet")
    console.shot("events")

    page.fill("form.publish input[name=topic]", topic)
    page.fill("form.publish textarea[name=data]", "{not json")
    console.expect_error(r"(status of|Error Code) 400")
    page.click("form.publish button[type=submit]")
    expect(page.locator("#flash")).to_contain_text("not JSON")

    page.fill("form.publish input[name=type]", "order.placed")
    page.fill("form.publish textarea[name=data]", json.dumps({"order": suffix}))
    page.click("form.publish button[type=submit]")
    page.wait_for_url(re.compile(rf".*/ui/events/topics/{topic}\?published=\w+$"))
    event_id = page.url.rsplit("=", 1)[1]
    published = page.locator("tr[data-published]")
    expect(published).to_contain_text(event_id)
    expect(published).to_contain_text("/pratai/console")
    expect(published).to_contain_text("order.placed")
    expect(published).to_contain_text(f'{{"order": "{suffix}"}}')
    expect(page.locator("main")).to_contain_text(function)
    console.shot("events-topic")

    with console.server.http() as http:
        ran = wait_for(
            lambda: [
                i
                for i in http.get("/v1/invocations", params={"function": function}).json()
                if i["status"] == "succeeded"
            ],
            what="the subscriber to run",
        )
        assert [e["id"] for e in http.get(f"/v1/events/{topic}").json()] == [event_id]
    assert ran[0]["event_id"] == event_id and ran[0]["result"] == {"seen": {"order": suffix}}
    console.open("/ui/events")
    expect(page.locator("table.topics tbody tr", has_text=topic)).to_contain_text("1")


def test_a_dead_lettered_event_shows_its_error_and_is_redriven_from_the_console(
    console: Console, tmp_path: Path
) -> None:
    suffix = _suffix()
    topic = f"fragile-{suffix}"
    function = _subscriber(console, tmp_path, topic, "--max-retries", "0")
    with console.server.http() as http:
        assert http.post(f"/v1/events/{topic}", json={"fail": True, "n": suffix}).is_success
        dead = wait_for(
            lambda: [
                e
                for e in http.get("/v1/events/dead-letter").json()
                if e.get("prataifunction") == function
            ],
            what="the failed call to be dead-lettered",
        )[0]
    page = console.sign_in_with_key(console.server.api_key, then="/ui/events")
    expect(page.locator("main")).to_contain_text("Open the dead-letter topic")
    page.click("text=Open the dead-letter topic")
    row = page.locator("table.events tbody tr", has_text=function)
    expect(row).to_contain_text("asked to fail")
    expect(row).to_contain_text(suffix)
    console.shot("events-dead-letter")
    page.on("dialog", _accept)
    row.get_by_role("button", name="Redrive").click()
    link = row.locator("a[href^='/ui/invocations/']")
    expect(link).to_be_visible()
    invocation_id = (link.get_attribute("href") or "").rsplit("/", 1)[1]
    with console.server.http() as http:
        again = http.get(f"/v1/invocations/{invocation_id}").json()
    assert again["function"] == function and again["parent_id"] == dead["prataiinvocation"]


def test_a_running_jobs_page_shows_its_output_and_cancel_stops_it(console: Console) -> None:
    suffix = _suffix()
    with console.server.http() as http:
        # Bounded: the job's own timeout ends it if the cancel never came.
        job = http.post(
            "/v1/jobs",
            json={"command": ["sh", "-c", f"echo waiting {suffix}; sleep 60"], "timeout_s": 90},
        ).json()
        wait_for(lambda: http.get(f"/v1/jobs/{job['id']}").json()["stdout"], what="job output")
    page = console.sign_in_with_key(console.server.api_key, then=f"/ui/jobs/{job['id']}")
    expect(page.locator(f"pre[data-sse='/ui/jobs/{job['id']}/stream']")).to_contain_text(
        f"waiting {suffix}"
    )
    expect(page.locator("[data-status]")).to_have_text("running")
    console.shot("job-running")
    page.on("dialog", _accept)
    page.get_by_role("button", name="Cancel job").click()
    expect(page.locator("[data-status]")).to_have_text("cancelled")
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
    with console.server.http() as http:
        assert http.get(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"
    console.open("/ui/jobs")
    row = page.locator("table.jobs tbody tr", has_text=job["id"][:12])
    expect(row).to_contain_text("cancelled")
    expect(row).to_contain_text(f"echo waiting {suffix}")
    console.shot("jobs")


def test_saved_jobs_are_scheduled_run_and_deleted_from_the_console(console: Console) -> None:
    name = f"report-{_suffix()}"
    with console.server.http() as http:
        saved = http.post(
            "/v1/saved-jobs",
            json={
                "name": name,
                "command": ["sh", "-c", "echo report for $WHO"],
                "env": {"WHO": "the-night-shift"},
            },
        )
        assert saved.status_code == 201
    page = console.sign_in_with_key(console.server.api_key, then="/ui/jobs")
    row = page.locator("#saved-jobs tbody tr", has_text=name)
    expect(row).to_contain_text("env: WHO")
    row.locator("input[name=cron]").fill("0 3 * * *")
    row.get_by_role("button", name="Set").click()
    expect(page.locator("#saved-jobs .flash")).to_contain_text(f"{name}: scheduled 0 3 * * *")
    expect(row).to_contain_text(" 03:00:00 UTC")
    assert "the-night-shift" not in page.content()  # env values may be tokens
    console.shot("jobs-saved")

    row.get_by_role("button", name="Run now").click()
    page.wait_for_url(re.compile(r".*/ui/jobs/\w+$"))
    # When the job ends, the page reloads by itself with the job's whole output.
    expect(page.locator("pre[data-sse]")).to_have_text(
        "report for the-night-shift\n", timeout=30_000
    )
    expect(page.locator("[data-status]")).to_have_text("succeeded")
    expect(page.locator("dl.facts")).to_contain_text(name)

    console.open("/ui/jobs")
    page.on("dialog", _accept)
    page.locator("#saved-jobs tbody tr", has_text=name).get_by_role("button", name="Delete").click()
    expect(page.locator("#saved-jobs .flash")).to_contain_text(f"deleted saved job {name}")
    expect(page.locator("#saved-jobs tbody tr", has_text=name)).to_have_count(0)
