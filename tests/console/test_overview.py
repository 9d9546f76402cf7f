"""The overview, the functions list and a function's usage plots, in a real browser, drawn from
real invocations of a project of these tests' own (the console's server is shared)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page

from pratai.core.stats import percentile
from tests.console.conftest import Console
from tests.helpers import Server, make_zip, wait_for

SUCCEEDED, FAILED = 5, 3  # N and M
CODE = """
def main(payload):
    if isinstance(payload, dict) and payload.get("fail"):
        raise ValueError("asked to fail")
    return {"ok": True}
"""


@dataclass
class Project:
    name: str
    key: str  # an admin key of the project
    function: str
    failed_ids: list[str]
    durations: list[float]


def _client(server: Server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def _new_project(server: Server, role: str = "admin") -> tuple[str, str]:
    name = f"ov-{uuid.uuid4().hex[:8]}"
    with server.http() as admin:
        assert admin.post("/v1/projects", json={"name": name}).status_code == 201
        key = admin.post("/v1/keys", json={"project": name, "role": role})
        assert key.status_code == 201, key.text
    return name, key.json()["token"]


def _key(server: Server, project: str, role: str) -> str:
    with server.http() as admin:
        made = admin.post("/v1/keys", json={"project": project, "role": role})
        assert made.status_code == 201, made.text
        return str(made.json()["token"])


@pytest.fixture(scope="module")
def used(console_server: Server) -> Iterator[Project]:
    """A project with one function, invoked N times successfully and M times failing."""
    project, key = _new_project(console_server)
    function = f"stats-{uuid.uuid4().hex[:6]}"
    with _client(console_server, key) as http:
        made = http.post(
            "/v1/functions",
            data={"name": function},
            files={"file": ("f.zip", make_zip({"main.py": CODE}))},
        )
        assert made.status_code == 201, made.text
        wait_for(
            lambda: http.get(f"/v1/functions/{function}").json()["state"] == "ready",
            timeout=120,
            what="the function's build",
        )
        failed: list[str] = []
        for k in range(SUCCEEDED + FAILED):
            body = {"fail": True} if k % 3 == 1 else {"n": k}  # failures among successes
            done = http.post(f"/v1/functions/{function}/invoke", json=body).json()
            assert done["status"] == ("failed" if "fail" in body else "succeeded"), done
            if "fail" in body:
                failed.append(done["id"])
        assert len(failed) == FAILED
        runs = http.get("/v1/invocations", params={"function": function}).json()
        hooked = http.post(  # never invoked; run by a webhook
            "/v1/functions",
            data={"name": f"{function}-hook", "event": "webhook"},
            files={"file": ("f.zip", make_zip({"main.py": CODE}))},
        )
        assert hooked.status_code == 201, hooked.text
    durations = sorted(float(run["duration_ms"]) for run in runs)
    yield Project(project, key, function, failed, durations)


def _series(chart: Locator) -> dict[str, Any]:
    return json.loads(chart.get_attribute("data-series") or "{}")


def _drawn(page: Page, selector: str) -> None:
    """uPlot drew each chart: a canvas in it, and console.js marked it drawn."""
    charts = page.locator(selector)
    assert charts.count() > 0
    for k in range(charts.count()):
        chart = charts.nth(k)
        chart.locator("canvas").first.wait_for()
        assert chart.get_attribute("data-drawn") == "1"
        assert chart.get_attribute("data-points") == str(len(_series(chart)["x"]))


def _values(chart: Locator, label: str) -> list[Any]:
    ys = _series(chart)["ys"]
    return next(y["values"] for y in ys if y["label"] == label)


def _ms(value: float) -> str:  # as the console prints a duration
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.1f} ms" if value >= 1 else f"{value:.2f} ms"


def _stat(page: Page, name: str) -> str:
    return page.locator(f".headline [data-stat={name}] .value").inner_text()


def test_the_overview_plots_and_counts_the_projects_invocations(
    console: Console, used: Project
) -> None:
    page = console.sign_in_with_key(used.key)
    calls = SUCCEEDED + FAILED
    assert _stat(page, "calls") == str(calls)
    assert _stat(page, "errors") == str(FAILED)
    assert _stat(page, "p50") == _ms(percentile(used.durations, 0.5) or 0)
    assert _stat(page, "p95") == _ms(percentile(used.durations, 0.95) or 0)
    day = page.locator(".headline [data-stat=calls] .sub").inner_text()
    assert day == f"{calls} in the last day"
    cold = int(_stat(page, "cold"))
    assert 1 <= cold <= calls  # the first call started an instance
    assert page.locator("[data-stat=queued] .value").inner_text() == "0"

    for window, points in (("hour", 60), ("day", 48)):
        plots = page.locator(f".plots[data-window={window}]")
        invocations = plots.locator("[data-plot=calls] .chart")
        assert len(_series(invocations)["x"]) == points
        assert sum(_values(invocations, "calls")) == calls
        assert sum(_values(invocations, "errors")) == FAILED
        duration = plots.locator("[data-plot=duration] .chart")
        p95 = [v for v in _values(duration, "p95 ms") if v is not None]
        assert p95 and set(p95) <= {round(d, 3) for d in used.durations}  # nearest rank
        assert sum(_values(plots.locator("[data-plot=cold] .chart"), "cold starts")) == cold
    _drawn(page, ".plots .chart")
    assert page.locator(".plots .chart").count() == 6

    failures = page.locator("table.failures tbody tr")
    assert failures.count() == FAILED
    links = [
        failures.nth(k).locator("a").first.get_attribute("href") for k in range(failures.count())
    ]
    assert sorted(links) == sorted(f"/ui/invocations/{i}" for i in used.failed_ids)
    assert "ValueError asked to fail" in failures.first.inner_text()
    assert page.locator("[data-empty=jobs]").inner_text() == "No job is running."
    console.shot("overview")


def test_the_functions_list_shows_state_live_version_last_run_and_a_sparkline(
    console: Console, used: Project
) -> None:
    page = console.sign_in_with_key(used.key, then="/ui/functions")
    row = page.locator(f"tr[data-function='{used.function}']")
    assert row.locator("[data-state]").inner_text() == "ready"
    assert row.locator("[data-live]").inner_text().strip() == "v1"
    assert row.locator("[data-triggers]").inner_text() == "invoke only"
    assert row.locator("[data-last-run]").inner_text().endswith("ago")
    link = row.locator(f"a[href='/ui/functions/{used.function}']")
    assert link.inner_text() == used.function
    spark = row.locator(".chart.spark")
    assert sum(_values(spark, "calls")) == SUCCEEDED + FAILED
    assert row.locator("[data-calls]").inner_text() == str(SUCCEEDED + FAILED)
    idle = page.locator(f"tr[data-function='{used.function}-hook']")
    assert idle.locator("[data-triggers]").inner_text() == "webhook"
    assert idle.locator("[data-last-run]").inner_text() == "never"
    assert idle.locator("[data-calls]").inner_text() == "0"
    _drawn(page, ".chart.spark")
    assert page.get_by_role("link", name="New function").get_attribute("href") == (
        "/ui/functions/new"
    )
    console.shot("functions-list")


def test_a_functions_plots_load_into_its_page_and_switch_window(
    console: Console, used: Project
) -> None:
    page = console.sign_in_with_key(used.key, then="/ui/functions")
    url = f"/ui/functions/{used.function}/charts"
    fragment = page.request.get(console.url(url))
    assert fragment.status == 200 and "<html" not in fragment.text()  # a piece, not a page
    # As the function page does: hx-get into a div of its own.
    page.evaluate(
        """url => {
            const div = document.createElement("div");
            div.id = "probe";
            document.querySelector("main").appendChild(div);
            return htmx.ajax("GET", url, {target: "#probe", swap: "innerHTML"});
        }""",
        url,
    )
    charts = page.locator("#probe .fn-charts[data-window=hour]")
    charts.wait_for()
    assert charts.locator("[data-stat=calls] strong").inner_text() == str(SUCCEEDED + FAILED)
    assert charts.locator("[data-stat=errors] strong").inner_text() == str(FAILED)
    invocations = charts.locator("[data-plot=calls] .chart")
    assert sum(_values(invocations, "calls")) == SUCCEEDED + FAILED
    assert sum(_values(invocations, "errors")) == FAILED
    assert [p.get_attribute("data-plot") for p in charts.locator(".plot").all()] == [
        "calls",
        "duration",
        "cold",
    ]
    _drawn(page, "#probe .chart")

    charts.get_by_role("tab", name="Last day").click()
    day = page.locator("#probe .fn-charts[data-window=day]")
    day.wait_for()
    assert len(_series(day.locator("[data-plot=calls] .chart"))["x"]) == 48
    assert sum(_values(day.locator("[data-plot=calls] .chart"), "calls")) == SUCCEEDED + FAILED
    _drawn(page, "#probe .chart")
    console.shot("function-charts")

    bad = page.request.get(console.url(url + "?window=week"))
    assert bad.status == 400 and "unknown window" in bad.text()


def test_another_projects_function_charts_are_not_found(console: Console, used: Project) -> None:
    console.expect_error(r"status of 404")
    page = console.sign_in_with_key(console.server.api_key)  # the default project's admin
    answer = page.request.get(console.url(f"/ui/functions/{used.function}/charts"))
    assert answer.status == 404
    assert used.function not in page.request.get(console.url("/ui/functions")).text()
    page.goto(console.url(f"/ui/functions/{used.function}/charts?window=day"))
    assert page.get_by_role("alert").inner_text() == f"function {used.function!r} not found"


def test_a_new_project_reads_well_and_a_viewer_gets_no_new_function_link(
    console: Console,
) -> None:
    project, key = _new_project(console.server)
    page = console.sign_in_with_key(key)
    assert _stat(page, "calls") == "0" and _stat(page, "p50") == "—"
    empty = page.locator("[data-empty=usage]")
    assert "This project has no functions yet" in empty.inner_text()
    assert page.locator(".plots").count() == 0
    assert page.locator("[data-empty=failures]").inner_text() == (
        "No failed or timed-out invocations."
    )
    console.shot("overview-empty")
    console.open("/ui/functions")
    assert "No functions yet" in page.locator("[data-empty=functions]").inner_text()
    assert page.get_by_role("link", name="New function").count() == 1
    console.shot("functions-empty")

    page.context.clear_cookies()
    console.sign_in_with_key(_key(console.server, project, "viewer"), then="/ui/functions")
    assert page.get_by_role("link", name="New function").count() == 0
    console.open("/ui/")
    assert page.get_by_role("link", name="New function").count() == 0
