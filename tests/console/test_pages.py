"""Every page of the console, as an admin and as a viewer: no page logs an error or breaks the
CSP, and a viewer is offered nothing that would be refused."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.console.conftest import Console
from tests.helpers import make_zip

# Reads for everyone; Nodes is for platform admins (test_admin checks the 403).
PAGES = [
    "/ui/",
    "/ui/functions",
    "/ui/invocations",
    "/ui/events",
    "/ui/jobs",
    "/ui/connectors",
    "/ui/images",
    "/ui/secrets",
    "/ui/keys",
    "/ui/users",
    "/ui/audit",
]
WRITES = (
    "form[method=post]:not([action='/ui/signout']), [hx-post], [hx-put], [hx-patch], [hx-delete]"
)


def _a_function_that_ran(console: Console, tmp_path: Path) -> str:
    name = f"pages-{uuid.uuid4().hex[:6]}"
    package = tmp_path / f"{name}.zip"
    package.write_bytes(make_zip({"main.py": "def main(payload):\n    return payload\n"}))
    console.server.cli("function-create", name, "--file", str(package))  # waits for the build
    with console.server.http() as http:
        answer = http.post(f"/v1/functions/{name}/invoke", json={"n": 1})
        assert answer.status_code == 200, answer.text
    return name


def test_every_page_opens_for_an_admin_without_an_error(console: Console, tmp_path: Path) -> None:
    name = _a_function_that_ran(console, tmp_path)
    console.sign_in_with_key(console.server.api_key)
    with console.server.http() as http:
        invocation = http.get("/v1/invocations", params={"function": name}).json()[0]["id"]
    for path in [*PAGES, "/ui/nodes", f"/ui/functions/{name}", f"/ui/invocations/{invocation}"]:
        answer = console.open(path)
        assert answer.url == console.url(path)
        assert console.page.locator("main h1").count() >= 1, path
        shot = path.strip("/").replace("/", "-") or "overview"
        console.shot(f"page-{shot}" if "/" not in path[4:] else f"page-{shot[:40]}")


def test_a_viewer_sees_no_control_that_would_be_refused(console: Console, tmp_path: Path) -> None:
    name = _a_function_that_ran(console, tmp_path)
    with console.server.http() as http:
        viewer = http.post("/v1/keys", json={"role": "viewer", "name": "pages"}).json()["token"]
    console.sign_in_with_key(viewer)
    for path in [*PAGES, f"/ui/functions/{name}"]:
        console.open(path)
        writes = console.page.locator(WRITES)
        offered = [
            writes.nth(i).evaluate("e => e.outerHTML.slice(0, 120)") for i in range(writes.count())
        ]
        assert not offered, (path, offered)
    assert console.page.locator("header nav >> text=Nodes").count() == 0
