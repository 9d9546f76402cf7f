"""The invocations pages in a real browser: filters and pages of the list, the in-flight view,
an invocation's page (timeline, input, result or traceback, output, lineage), "Run again",
and another project's invocation out of reach."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.console.conftest import Console
from tests.helpers import make_zip, wait_for

ECHO = """
import sys

def main(payload):
    print("echo says", payload)
    if payload.get("fail"):
        print("about to fail", file=sys.stderr)
        raise ValueError("asked to fail: " + str(payload["fail"]))
    return {"echo": payload}
"""
SLEEPER = """
import time

def main(payload):
    time.sleep(payload["seconds"])  # bounded: the function's timeout stops it in any case
    return "slept"
"""


def deploy(console: Console, tmp_path: Path, source: str, *flags: str) -> str:
    name = f"inv-{uuid.uuid4().hex[:8]}"
    package = tmp_path / f"{name}.zip"
    package.write_bytes(make_zip({"main.py": source}))
    console.server.cli("function-create", name, "--file", str(package), *flags)
    return name


def invoke(console: Console, name: str, payload: Any, *, run_async: bool = False) -> str:
    with console.server.http() as http:
        answer = http.post(
            f"/v1/functions/{name}/invoke", json=payload, params={"async": str(run_async).lower()}
        )
        assert answer.status_code in (200, 202), answer.text
        return str(answer.json()["id"])


def invocation(console: Console, invocation_id: str) -> dict[str, Any]:
    with console.server.http() as http:
        found: dict[str, Any] = http.get(f"/v1/invocations/{invocation_id}").json()
        return found


def listed(console: Console) -> list[str]:
    """The ids of the invocations the list shows (each row links to its page)."""
    links = console.page.locator("table.invocations tbody tr td:nth-child(2) a")
    return [
        (links.nth(i).get_attribute("href") or "").rsplit("/", 1)[-1] for i in range(links.count())
    ]


def test_filters_by_function_status_and_trigger_narrow_the_list(
    console: Console, tmp_path: Path
) -> None:
    echo, other = deploy(console, tmp_path, ECHO), deploy(console, tmp_path, ECHO)
    ok = [invoke(console, echo, {"n": n}) for n in range(2)]
    failed = invoke(console, echo, {"fail": "on purpose"})
    queued = invoke(console, echo, {"n": 9}, run_async=True)
    invoke(console, other, {"n": 1})
    wait_for(lambda: invocation(console, queued)["status"] == "succeeded", what="the async run")

    page = console.sign_in_with_key(console.server.api_key, then="/ui/invocations")
    page.select_option("select[name=function]", echo)
    page.click("button:text-is('Filter')")
    page.wait_for_url(re.compile(rf".*function={echo}"))
    assert set(listed(console)) == {*ok, failed, queued}

    page.check("label.chip:has-text('failed') input")
    page.click("button:text-is('Filter')")
    page.wait_for_url(re.compile(r".*status=failed"))
    assert listed(console) == [failed]
    row = page.locator("table.invocations tbody tr").first
    expect(row).to_contain_text("ValueError")
    # The filtered view is a link: opening it again shows the same.
    console.open(page.url.removeprefix(console.server.url))
    assert listed(console) == [failed]
    assert page.locator("label.chip:has-text('failed') input").is_checked()

    console.open(f"/ui/invocations?function={echo}&trigger=async")
    assert listed(console) == [queued]
    expect(page.locator("select[name=trigger]")).to_have_value("async")
    console.open(f"/ui/invocations?function={echo}&trigger=sync&since=15m&status=succeeded")
    assert listed(console) == ok[::-1]  # newest first
    console.open(f"/ui/invocations?function={echo}&to=2001-01-01T00:00")
    assert listed(console) == [] and "match these filters" in page.inner_text("main")
    console.open(f"/ui/invocations?function={echo}&status=succeeded")
    console.shot("invocations-list")


def test_bad_filters_are_named_on_the_page(console: Console) -> None:
    console.sign_in_with_key(console.server.api_key)
    console.expect_error(r"status of 400")
    page = console.open("/ui/invocations?status=exploded&function=")
    expect(page.get_by_role("alert")).to_contain_text("status: use one of queued")
    page = console.open("/ui/invocations?since=forever")
    expect(page.get_by_role("alert")).to_contain_text("since: use one of 15m")
    page = console.open("/ui/invocations?function=no-such-function")
    expect(page.get_by_role("alert")).to_contain_text("no-such-function")


def test_older_pages_follow_a_cursor_without_gaps_or_repeats(
    console: Console, tmp_path: Path
) -> None:
    echo = deploy(console, tmp_path, ECHO)
    made = [invoke(console, echo, {"n": n}) for n in range(53)]
    page = console.sign_in_with_key(console.server.api_key, then=f"/ui/invocations?function={echo}")
    first = listed(console)
    assert first == made[::-1][:50]
    page.click("text=Older »")
    page.wait_for_url(re.compile(r".*before="))
    assert listed(console) == made[::-1][50:]
    assert page.locator("text=Older »").count() == 0
    page.click("text=« Newest")
    assert listed(console) == first


def test_the_in_flight_view_shows_a_running_invocation_until_it_ends(
    console: Console, tmp_path: Path
) -> None:
    sleeper = deploy(console, tmp_path, SLEEPER)
    page = console.sign_in_with_key(
        console.server.api_key, then=f"/ui/invocations/in-flight?function={sleeper}"
    )
    expect(page.locator("#in-flight")).to_contain_text("Nothing queued or running")
    running = invoke(console, sleeper, {"seconds": 4}, run_async=True)
    # The page refreshes itself: the test only watches it.
    row = page.locator(f"#in-flight tr:has(a[href='/ui/invocations/{running}'])")
    expect(row).to_be_visible(timeout=15_000)
    expect(row.locator(".status")).to_have_text(re.compile("queued|running"))
    console.shot("invocations-in-flight")
    expect(row).to_have_count(0, timeout=30_000)
    assert invocation(console, running)["status"] == "succeeded"


def test_an_invocation_page_shows_timeline_input_result_and_output(
    console: Console, tmp_path: Path
) -> None:
    echo = deploy(console, tmp_path, ECHO)
    done = invoke(console, echo, {"greeting": "hello page"})
    page = console.sign_in_with_key(console.server.api_key, then=f"/ui/invocations/{done}")
    expect(page.locator("#invocation .status.big")).to_have_text("succeeded")
    function_link = page.locator(f".facts a[href='/ui/functions/{echo}']")
    expect(function_link).to_have_text(echo)
    expect(page.locator(".facts")).to_contain_text("version 1")
    expect(page.locator(".facts")).to_contain_text("sync call")
    timeline = page.locator("ol.timeline")
    for step in ("Queued", "Started", "Finished", "ran"):
        expect(timeline).to_contain_text(step)
    expect(page.locator("pre.payload")).to_contain_text('"greeting": "hello page"')
    expect(page.locator("pre.result")).to_contain_text('"echo"')
    expect(page.locator("pre.stdout")).to_contain_text("echo says {'greeting': 'hello page'}")
    expect(page.locator(".facts")).to_contain_text(re.compile(r"cold|warm"))
    expect(page.locator(".facts")).to_contain_text("MB")
    console.shot("invocation-page")


def test_a_failing_invocation_shows_its_error_and_traceback(
    console: Console, tmp_path: Path
) -> None:
    echo = deploy(console, tmp_path, ECHO)
    failed = invoke(console, echo, {"fail": "boom"})
    page = console.sign_in_with_key(console.server.api_key, then=f"/ui/invocations/{failed}")
    expect(page.locator("#invocation .status.big")).to_have_text("failed")
    expect(page.locator(".error-type")).to_have_text("ValueError")
    expect(page.locator(".error-message")).to_have_text("asked to fail: boom")
    traceback = page.locator("pre.traceback")
    expect(traceback).to_contain_text("Traceback (most recent call last)")
    expect(traceback).to_contain_text('raise ValueError("asked to fail: " + str(payload["fail"]))')
    expect(page.locator("pre.stderr")).to_contain_text("about to fail")
    console.shot("invocation-failed")


def test_run_again_makes_a_new_invocation_with_the_same_input(
    console: Console, tmp_path: Path
) -> None:
    echo = deploy(console, tmp_path, ECHO)
    first = invoke(console, echo, {"again": 41})
    page = console.sign_in_with_key(console.server.api_key, then=f"/ui/invocations/{first}")
    page.click("button:text-is('Run again with the same input')")
    page.wait_for_url(re.compile(r".*/ui/invocations/(?!" + first + r")[0-9a-f]+$"))
    second = page.url.rsplit("/", 1)[-1]
    expect(page.locator("pre.payload")).to_contain_text('"again": 41')
    # Queued, it finishes while the page watches (it refreshes itself until then).
    expect(page.locator("#invocation .status.big")).to_have_text("succeeded", timeout=30_000)
    expect(page.locator("pre.result")).to_contain_text('"again": 41')
    expect(page.locator(".facts")).to_contain_text("async call")
    assert invocation(console, second)["result"] == {"echo": {"again": 41}}


def test_a_viewer_is_offered_no_run_again_and_is_refused_one(
    console: Console, tmp_path: Path
) -> None:
    echo = deploy(console, tmp_path, ECHO)
    done = invoke(console, echo, {"n": 1})
    with console.server.http() as http:
        viewer = http.post("/v1/keys", json={"role": "viewer", "name": "inv"}).json()["token"]
    page = console.sign_in_with_key(viewer, then=f"/ui/invocations/{done}")
    expect(page.locator("pre.payload")).to_contain_text('"n": 1')
    assert page.locator("text=Run again").count() == 0
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    refused = page.request.post(
        console.url(f"/ui/invocations/{done}/again"),
        headers={"origin": console.server.url},
        form={"csrf": csrf},
    )
    assert refused.status == 403 and "may not invoke" in refused.text()


def test_a_chained_run_shows_its_lineage(console: Console, tmp_path: Path) -> None:
    topic = f"pipe-{uuid.uuid4().hex[:6]}"
    step = "def main(p):\n    return {'n': p['n'] + 1}\n"
    first = deploy(console, tmp_path, step, "--event", "message", "--subscribe_to", topic)
    second = deploy(
        console,
        tmp_path,
        step,
        "--event",
        "message",
        "--subscribe_to",
        f"function.{first}.succeeded",
    )
    console.server.cli("event-publish", topic, "--data", '{"n": 1}')

    def last_step() -> str | None:
        with console.server.http() as http:
            runs = http.get("/v1/invocations", params={"function": second}).json()
        return runs[0]["id"] if runs and runs[0]["status"] == "succeeded" else None

    end = wait_for(last_step, what="the second step of the pipeline")
    page = console.sign_in_with_key(console.server.api_key, then=f"/ui/invocations/{end}")
    expect(page.locator(".facts")).to_contain_text("chained")
    lineage = page.locator("ul.lineage li")
    expect(lineage).to_have_count(2)
    expect(lineage.nth(0)).to_contain_text(first)
    expect(lineage.nth(1)).to_contain_text(second)
    expect(lineage.nth(1)).to_have_class(re.compile("here"))
    lineage.nth(0).locator("a.mono").click()
    page.wait_for_url(re.compile(r".*/ui/invocations/[0-9a-f]+$"))
    expect(page.locator(".facts")).to_contain_text("topic event")
    expect(page.locator("ul.lineage li.here")).to_contain_text(first)
    console.shot("invocation-lineage")


def test_another_projects_invocation_is_not_found(console: Console, tmp_path: Path) -> None:
    echo = deploy(console, tmp_path, ECHO)
    mine = invoke(console, echo, {"secret": "default project only"})
    project = f"other-{uuid.uuid4().hex[:6]}"
    with console.server.http() as http:
        assert http.post("/v1/projects", json={"name": project}).status_code == 201
        token = http.post("/v1/keys", json={"project": project, "role": "admin"}).json()["token"]
    console.expect_error(r"status of 404")
    page = console.sign_in_with_key(token, then="/ui/invocations")
    assert mine not in listed(console)
    for path in (f"/ui/invocations/{mine}", f"/ui/invocations/{mine}/detail"):
        answer = page.goto(console.url(path))
        assert answer is not None and answer.status == 404
        assert "default project only" not in page.content()
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    again = page.request.post(
        console.url(f"/ui/invocations/{mine}/again"),
        headers={"origin": console.server.url},
        form={"csrf": csrf},
    )
    assert again.status == 404
