"""The function page in a real browser: create a function from the console with an upload,
test-invoke it (result, logs, duration together), saved test payloads, a second version and a
rollback, the code view, configuration, triggers, what a viewer sees, another project's
function, and a payload that is not JSON."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
from playwright.sync_api import expect

from pratai.console.invoke_panel import duration
from tests.console.conftest import ARTIFACTS, Console
from tests.helpers import code, make_zip

GREETER = code(
    """
    import sys

    from lib.helpers import shout


    def main(payload):
        print(f"greeting {payload['name']}")
        print("a note on stderr", file=sys.stderr)
        return {"greeting": shout(f"Hello, {payload['name']}"), "version": VERSION}


    VERSION = 1
    """
)
HELPERS = "def shout(text):\n    return text + '!'\n"
BLOB = bytes(range(256)) * 4


def _name(what: str) -> str:
    return f"{what}-{uuid.uuid4().hex[:6]}"


def _package(tmp_path: Path, version: int = 1) -> Path:
    path = tmp_path / f"greeter-v{version}.zip"
    files: dict[str, str | bytes] = {
        "main.py": GREETER.replace("VERSION = 1", f"VERSION = {version}"),
        "lib/__init__.py": "",
        "lib/helpers.py": HELPERS,
        "data.bin": BLOB,
    }
    path.write_bytes(make_zip(files))
    return path


def _deploy(http: httpx.Client, name: str, package: Path, **form: str) -> None:
    answer = http.post(
        "/v1/functions",
        data={"name": name, **form},
        files={"file": (package.name, package.read_bytes(), "application/zip")},
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["state"] == "ready", answer.json()["build_log"]


def _invoke(console: Console, payload: str) -> None:
    page = console.page
    page.fill("#payload", payload)
    page.click("#test-form button.run")


def test_a_function_created_in_the_console_builds_and_answers_with_result_logs_and_duration(
    console: Console, tmp_path: Path
) -> None:
    name = _name("greeter")
    page = console.sign_in_with_key(console.server.api_key, then="/ui/functions/new")
    page.fill("input[name=name]", name)
    page.fill("input[name=memory]", "192")
    page.set_input_files("input[name=file]", str(_package(tmp_path)))
    page.click("button:text-is('Create function')")
    expect(page.locator("#build-state")).to_have_text("ready")
    assert page.locator("form progress").evaluate("bar => [bar.hidden, bar.value]") == [False, 100]
    console.shot("function-new")
    with console.server.http() as http:
        made = http.get(f"/v1/functions/{name}").json()
    assert (made["memory_mb"], made["active_version"]) == (192, 1)

    page.click(f"text=Open {name}")
    page.wait_for_url(console.url(f"/ui/functions/{name}"))
    expect(page.locator("#live-version")).to_have_text("v1")
    expect(page.locator("#fn-state")).to_have_text("ready")
    head = page.locator("#fn-head")
    assert head.locator("a:text-is('Invocations')").get_attribute("href") == (
        f"/ui/invocations?function={name}"
    )
    assert head.locator("a:text-is('Live logs')").get_attribute("href") == (
        f"/ui/functions/{name}/logs"
    )

    # The code of the live version: its tree, and the handler's module open first.
    files = page.locator("#code nav.files")
    expect(files).to_contain_text("main.py")
    expect(files.locator("li.dir")).to_contain_text("lib/")
    expect(page.locator("#source-path")).to_have_text("main.py")
    expect(page.locator("#source pre.source")).to_contain_text("from lib.helpers import shout")
    files.locator("a[data-path='lib/helpers.py']").click()
    expect(page.locator("#source-path")).to_have_text("lib/helpers.py")
    expect(page.locator("#source pre.source")).to_contain_text("def shout(text):")
    files.locator("a[data-path='data.bin']").click()
    expect(page.locator("#source p.binary")).to_have_text(f"binary, {len(BLOB)} bytes")

    _invoke(console, '{"name": "Ada"}')
    result = page.locator("#test-result")
    expect(result.locator("#result-status")).to_have_text("succeeded")
    assert '"greeting": "Hello, Ada!"' in result.locator("#result-value").inner_text()
    logs = result.locator("#result-logs").inner_text()
    assert "greeting Ada" in logs and "a note on stderr" in logs
    assert result.locator("#result-cold").inner_text().startswith("yes")
    link = result.locator("#result-link").get_attribute("href") or ""
    invocation = link.removeprefix("/ui/invocations/")
    with console.server.http() as http:
        stored = http.get(f"/v1/invocations/{invocation}").json()
    assert stored["result"] == {"greeting": "Hello, Ada!", "version": 1}
    assert stored["cold_start"] is True
    # what the panel shows is what was measured
    assert result.locator("#result-duration").inner_text() == duration(stored["duration_ms"])
    memory = result.locator("#result-memory").inner_text()
    assert memory == f"{stored['peak_memory_kb'] / 1024:.1f} MB" and memory != "0.0 MB"
    console.shot("function-page")
    page.locator("#test").screenshot(path=str(ARTIFACTS / "function-test-panel.png"))

    _invoke(console, '{"name": "Bob"}')  # the instance is warm now
    expect(result.locator("#result-value")).to_contain_text("Hello, Bob!")
    expect(result.locator("#result-cold")).to_have_text("no, warm")


def test_saved_payloads_are_kept_for_the_function_and_fill_the_payload(
    console: Console, tmp_path: Path
) -> None:
    name = _name("saved")
    with console.server.http() as http:
        _deploy(http, name, _package(tmp_path))
    page = console.sign_in_with_key(console.server.api_key, then=f"/ui/functions/{name}")
    page.fill("#payload", '{"name": "Grace"}')
    page.fill("input[name=save_as]", "grace")
    page.click("button:text-is('Save payload')")
    expect(page.locator("select[name=saved] option[value=grace]")).to_have_count(1)
    page.fill("#payload", '{"name": "Linus"}')
    page.fill("input[name=save_as]", "linus")
    page.click("button:text-is('Save payload')")
    expect(page.locator("select[name=saved] option[value=linus]")).to_have_count(1)

    page.reload()  # kept by the server, not the browser
    assert page.locator("#payload").input_value() == "{}"
    page.select_option("select[name=saved]", "grace")
    assert page.locator("#payload").input_value() == '{"name": "Grace"}'
    page.click("#test-form button.run")
    expect(page.locator("#result-value")).to_contain_text("Hello, Grace!")

    page.select_option("select[name=saved]", "linus")
    page.click("button:text-is('Delete saved')")
    expect(page.locator("select[name=saved] option[value=linus]")).to_have_count(0)
    expect(page.locator("select[name=saved] option[value=grace]")).to_have_count(1)


def test_a_second_version_goes_live_and_a_rollback_brings_the_first_back(
    console: Console, tmp_path: Path
) -> None:
    name = _name("versions")
    with console.server.http() as http:
        _deploy(http, name, _package(tmp_path, 1))
    page = console.sign_in_with_key(console.server.api_key, then=f"/ui/functions/{name}")
    page.set_input_files("#upload input[name=file]", str(_package(tmp_path, 2)))
    page.click("#upload button:text-is('Upload')")
    expect(page.locator("#upload-result #build-state")).to_have_text("ready")
    expect(page.locator("#live-version")).to_have_text("v2")
    expect(page.locator("#versions tr.live")).to_have_attribute("data-version", "2")
    _invoke(console, '{"name": "Ada"}')
    expect(page.locator("#result-version")).to_have_text("v2")
    assert '"version": 2' in page.locator("#result-value").inner_text()

    page.click("#versions button:text-is('Roll back to v1')")
    expect(page.locator("#versions tr.live")).to_have_attribute("data-version", "1")
    expect(page.locator("#versions")).to_contain_text("v1 is live")
    expect(page.locator("#live-version")).to_have_text("v1")
    _invoke(console, '{"name": "Ada"}')
    expect(page.locator("#result-version")).to_have_text("v1")
    assert '"version": 1' in page.locator("#result-value").inner_text()
    page.reload()
    expect(page.locator("#source pre.source")).to_contain_text("VERSION = 1")
    page.locator("#versions tr[data-version='1'] summary").click()
    expect(page.locator("#versions tr[data-version='1'] details pre")).to_contain_text(
        "no requirements.txt"
    )
    console.shot("function-versions")


def test_configuration_triggers_and_routes_show_and_a_developer_edits_them(
    console: Console, tmp_path: Path
) -> None:
    name = _name("config")
    with console.server.http() as http:
        timer = {"event": "timer", "cron": "0 9 * * *", "timezone": "Asia/Tokyo"}
        _deploy(http, name, _package(tmp_path), **timer, route=f"POST /{name}/{{id}}")
        hook = http.post("/v1/triggers", json={"function": name, "event": "webhook"}).json()
        secret = {"name": f"token-{name}", "value": "s3cr3t-value"}
        assert http.post("/v1/secrets", json=secret).status_code == 201
    page = console.sign_in_with_key(console.server.api_key, then=f"/ui/functions/{name}")
    timer = page.locator("#triggers tr.trigger-timer")
    expect(timer).to_contain_text("cron 0 9 * * * (Asia/Tokyo)")
    ticks = timer.locator("ol.ticks li")
    expect(ticks).to_have_count(5)
    for tick in ticks.all_inner_texts():  # 9:00 in Tokyo is midnight in UTC, the same day
        assert re.fullmatch(r"\S+ 09:00 Asia/Tokyo · 00:00 UTC", tick), tick
    webhook = page.locator("#triggers tr.trigger-webhook")
    expect(webhook.locator("code.url")).to_have_text(hook["url"])
    assert webhook.locator("button[data-copy]").get_attribute("data-copy") == hook["url"]
    webhook.locator("button[data-copy]").click()
    expect(webhook.locator("button[data-copy]")).to_have_text("Copied")

    routes = page.locator("#triggers ul.routes li")
    expect(routes).to_have_count(1)
    expect(routes).to_contain_text(f"POST {console.server.url}/fn/default/{name}/{{id}}")
    expect(routes).to_contain_text("public")
    docs = page.locator("#triggers a:text('API docs')")
    assert docs.get_attribute("href") == "/fn/default/docs"
    assert httpx.get(console.url("/fn/default/docs")).status_code == 200

    config = page.locator("#config")
    config.locator("input[name=memory]").fill("256")
    config.locator("input[name=timeout]").fill("12.5")
    config.locator("input[name=network]").check()
    config.locator("input[name=fresh]").check()
    config.locator("textarea[name=secrets]").fill(f"API_TOKEN=token-{name}")
    config.locator("button:text-is('Save configuration')").click()
    expect(page.locator("#config")).to_contain_text("Configuration saved.")
    with console.server.http() as http:
        now = http.get(f"/v1/functions/{name}").json()
    assert (now["memory_mb"], now["timeout_s"], now["network"]) == (256, 12.5, True)
    assert now["fresh_per_call"] is True
    assert now["secrets"] == {"API_TOKEN": f"token-{name}"}
    page.reload()
    assert page.locator("#config textarea[name=secrets]").input_value() == f"API_TOKEN=token-{name}"
    assert page.locator("#config input[name=fresh]").is_checked()
    assert "s3cr3t-value" not in page.content()

    console.expect_error(r"status of 400")
    console.expect_error(r"Error Code 400 from")
    page.locator("#config input[name=memory]").fill("4")
    page.locator("#config input[name=memory]").evaluate("field => field.removeAttribute('min')")
    page.locator("#config button:text-is('Save configuration')").click()
    expect(page.locator("#flash")).to_contain_text("memory must be between 16 and")
    console.shot("function-config")


def test_a_viewer_sees_the_function_but_no_control_that_would_be_refused(
    console: Console, tmp_path: Path
) -> None:
    name = _name("viewed")
    with console.server.http() as http:
        _deploy(http, name, _package(tmp_path))
        viewer = http.post("/v1/keys", json={"role": "viewer", "name": "fn-page"}).json()["token"]
    page = console.sign_in_with_key(viewer, then=f"/ui/functions/{name}")
    expect(page.locator("#live-version")).to_have_text("v1")
    expect(page.locator("#source pre.source")).to_contain_text("def main(payload):")
    expect(page.locator("#config dl.config")).to_contain_text("128 MB")
    writes = "form, [hx-post], [hx-put], [hx-patch], [hx-delete]"
    assert page.locator(f"main :is({writes})").count() == 0
    for gone in ("#upload", "#test-form", "select[name=saved]", "text=Roll back"):
        assert page.locator(gone).count() == 0, gone
    expect(page.locator("#test")).to_contain_text("may not invoke")
    # and the routes refuse what the page does not offer
    console.expect_error(r"status of 403")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    refused = page.request.post(
        console.url(f"/ui/functions/{name}/rollback"),
        headers={"origin": console.server.url},
        form={"version": "1", "csrf": csrf},
    )
    assert refused.status == 403 and "may not deploy" in refused.text()
    console.shot("function-page-viewer")


def test_a_function_of_another_project_is_not_found(console: Console, tmp_path: Path) -> None:
    project, name = _name("other"), _name("theirs")
    with console.server.http() as http:
        assert http.post("/v1/projects", json={"name": project}).status_code == 201
        made = http.post("/v1/keys", json={"project": project, "role": "admin", "name": "x"})
        token = made.json()["token"]
    with httpx.Client(
        base_url=console.server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as theirs:
        _deploy(theirs, name, _package(tmp_path))
    page = console.sign_in_with_key(console.server.api_key)
    console.expect_error(r"status of 404")
    answer = page.goto(console.url(f"/ui/functions/{name}"))
    assert answer is not None and answer.status == 404
    assert "def main" not in page.content()
    expect(page.locator("main")).to_contain_text(f"function '{name}' not found")
    for path in ("/code?file=main.py", "/versions", "/head", "/versions/1/build"):
        assert page.request.get(console.url(f"/ui/functions/{name}{path}")).status == 404, path
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    for path, form in (("/invoke", {"payload": "{}"}), ("/rollback", {"version": "1"})):
        answer = page.request.post(
            console.url(f"/ui/functions/{name}{path}"),
            headers={"origin": console.server.url},
            form={**form, "csrf": csrf},
        )
        assert answer.status == 404, path
    with httpx.Client(
        base_url=console.server.url, headers={"Authorization": f"Bearer {token}"}
    ) as theirs:
        assert theirs.get("/v1/invocations", params={"function": name}).json() == []


def test_a_payload_that_is_not_json_is_refused_in_the_panel(
    console: Console, tmp_path: Path
) -> None:
    name = _name("badjson")
    with console.server.http() as http:
        _deploy(http, name, _package(tmp_path))
    page = console.sign_in_with_key(console.server.api_key, then=f"/ui/functions/{name}")
    console.expect_error(r"status of 400")
    console.expect_error(rf"Error Code 400 from /ui/functions/{name}/invoke")
    _invoke(console, '{"name": "Ada",}')
    problem = page.locator("#test-result .test-problem")
    expect(problem).to_contain_text("the payload is not valid JSON: Expecting property name")
    with console.server.http() as http:
        assert http.get("/v1/invocations", params={"function": name}).json() == []
    console.shot("function-test-bad-json")

    _invoke(console, '{"nom": "Ada"}')  # valid JSON the function cannot take: its error shows
    result = page.locator("#test-result")
    expect(result.locator("#result-status")).to_have_text("failed")
    expect(result.locator(".error-line")).to_have_text("KeyError: 'name'")
    expect(result.locator("pre.traceback")).to_contain_text('main.py", line 7, in main')
    assert result.locator("#result-value").count() == 0


def test_a_build_is_followed_until_it_fails_and_the_live_version_stays(
    console: Console, tmp_path: Path
) -> None:
    name = _name("broken")
    with console.server.http() as http:
        _deploy(http, name, _package(tmp_path))
    broken = tmp_path / "broken.zip"
    broken.write_bytes(
        make_zip(
            {
                "main.py": "def main(payload):\n    return 2\n",
                "requirements.txt": "pratai-no-such-package-zzz==1.0\n",
            }
        )
    )
    page = console.sign_in_with_key(console.server.api_key, then=f"/ui/functions/{name}")
    page.set_input_files("#upload input[name=file]", str(broken))
    page.click("#upload button:text-is('Upload')")
    expect(page.locator("#upload-result #build-state")).to_have_text("building")
    expect(page.locator("#fn-state")).to_have_text("building")
    expect(page.locator("#versions tr[data-version='2'] .status")).to_have_text("building")
    expect(page.locator("#upload-result #build-state")).to_have_text("build_failed", timeout=60_000)
    expect(page.locator("#upload-result details pre")).to_contain_text("pratai-no-such-package-zzz")
    # the page's header and versions follow: v2 failed, v1 stays live
    expect(page.locator("#fn-state")).to_have_text("build_failed")
    expect(page.locator("#versions tr[data-version='2'] .status")).to_have_text("build_failed")
    expect(page.locator("#live-version")).to_have_text("v1")
    assert page.locator("#versions tr[data-version='2'] button").count() == 0  # not deployable
    console.shot("function-build-failed")
