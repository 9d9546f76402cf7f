"""The console's admin pages in a real browser: keys (a token shown once), secrets (never a
value), users, the audit log, connectors, images and nodes; what a viewer and another project's
admin see of them."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

import httpx
import psycopg
from playwright.sync_api import Dialog, Page, expect

from tests.console.conftest import Console
from tests.helpers import wait_for
from tests.images.support import build_image

PG = os.environ.get("PRATAI_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
WRITES = "[hx-post], [hx-put], [hx-patch], [hx-delete]"
PAGES = [
    "/ui/events",
    "/ui/events/topics/dead-letter",
    "/ui/jobs",
    "/ui/connectors",
    "/ui/images",
    "/ui/secrets",
    "/ui/keys",
    "/ui/users",
    "/ui/audit",
]


def _suffix() -> str:
    return uuid.uuid4().hex[:8]


def _accept(dialog: Dialog) -> None:
    dialog.accept()


def _whoami(console: Console, token: str) -> httpx.Response:
    return httpx.get(
        console.url("/v1/whoami"), headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def _new_key(console: Console, role: str, project: str | None = None, name: str = "") -> str:
    with console.server.http() as http:
        made = http.post("/v1/keys", json={"role": role, "project": project, "name": name})
        assert made.status_code == 201, made.text
        return str(made.json()["token"])


def _csrf(page: Page) -> str:
    return page.locator("input[name=csrf]").first.get_attribute("value") or ""


def test_a_key_made_in_the_console_is_shown_once_works_and_is_refused_once_revoked(
    console: Console,
) -> None:
    name = f"ci-{_suffix()}"
    page = console.sign_in_with_key(console.server.api_key, then="/ui/keys")
    page.select_option("#keys select[name=role]", "invoker")
    page.fill("#keys input[name=expires]", "30d")
    page.fill("#keys input[name=name]", name)
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Create key").click()
    assert answer.value.headers["cache-control"] == "no-store"
    token = page.locator("[data-token]").inner_text()
    key_id = token.partition(".")[0]
    assert key_id.startswith("pk_") and token.partition(".")[2]
    assert page.locator(".token-once button[data-copy]").get_attribute("data-copy") == token
    row = page.locator(f"tr[data-key='{key_id}']")
    for shown in (name, "invoker", "active"):
        expect(row).to_contain_text(shown)
    expect(row).not_to_contain_text("never")  # it expires in 30 days
    console.shot("keys-new")
    whoami = _whoami(console, token)
    assert whoami.status_code == 200
    assert whoami.json()["key_id"] == key_id and whoami.json()["role"] == "invoker"

    page.reload()
    expect(page.locator("[data-token]")).to_have_count(0)
    assert token.partition(".")[2] not in page.content()
    page.on("dialog", _accept)
    page.locator(f"tr[data-key='{key_id}']").get_by_role("button", name="Revoke").click()
    expect(page.locator("#keys .flash")).to_contain_text(f"revoked {key_id}")
    expect(page.locator(f"tr[data-key='{key_id}']")).to_contain_text("revoked")
    expect(page.locator(f"tr[data-key='{key_id}'] button")).to_have_count(0)
    assert _whoami(console, token).status_code == 401
    console.shot("keys")


def test_a_secret_is_stored_and_deleted_and_its_value_appears_in_no_page(
    console: Console,
) -> None:
    name, value = f"DB_{_suffix()}", f"value-{uuid.uuid4().hex}"
    page = console.sign_in_with_key(console.server.api_key, then="/ui/secrets")
    expect(page.locator("#secrets input[name=value]")).to_have_attribute("type", "password")
    page.fill("#secrets input[name=name]", name)
    page.fill("#secrets input[name=value]", value)
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Store secret").click()
    assert answer.value.ok and value not in answer.value.text()
    expect(page.locator("#secrets .flash")).to_contain_text(f"secret {name} stored")
    expect(page.locator("#secrets tbody tr", has_text=name)).to_have_count(1)
    expect(page.locator("#secrets input[name=value]")).to_have_value("")
    console.shot("secrets")
    for path in ["/ui/secrets", *PAGES]:
        console.open(path)
        assert value not in page.content(), path
    with console.server.http() as http:
        assert value not in http.get("/v1/secrets").text
        assert value not in http.get("/v1/audit").text

    console.open("/ui/secrets")
    page.on("dialog", _accept)
    page.locator("#secrets tbody tr", has_text=name).get_by_role("button", name="Delete").click()
    expect(page.locator("#secrets .flash")).to_contain_text(f"deleted {name}")
    expect(page.locator("#secrets tbody tr", has_text=name)).to_have_count(0)


def test_a_viewer_sees_no_write_controls_and_its_writes_are_refused(console: Console) -> None:
    suffix = _suffix()
    with console.server.http() as http:  # rows that would carry buttons for an admin
        assert http.post("/v1/secrets", json={"name": f"V_{suffix}", "value": "x"}).is_success
        saved = {"name": f"v-{suffix}", "command": ["true"]}
        assert http.post("/v1/saved-jobs", json=saved).is_success
    page = console.sign_in_with_key(_new_key(console, "viewer"))
    expect(page.locator("header .role")).to_have_text("viewer")
    for path in PAGES:
        console.open(path)
        expect(page.locator("h1")).to_be_visible()
        assert page.locator(WRITES).count() == 0, path
        posts = page.locator("form[method=post]")
        assert posts.count() == 1 and posts.get_attribute("action") == "/ui/signout", path
        assert page.locator("input[type=password], textarea").count() == 0, path
        expect(page.locator("header nav a", has_text="Nodes")).to_have_count(0)
    with console.server.http() as http:  # a running job: its page would offer Cancel
        job = http.post(
            "/v1/jobs", json={"command": ["sh", "-c", "echo up; sleep 60"], "timeout_s": 90}
        ).json()
    try:
        console.open(f"/ui/jobs/{job['id']}")
        expect(page.locator("[data-status]")).to_have_text(re.compile("queued|running"))
        assert page.locator(WRITES).count() == 0
        expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
    finally:
        with console.server.http() as http:
            http.post(f"/v1/jobs/{job['id']}/cancel")
    console.open("/ui/keys")
    console.shot("viewer-keys")
    console.expect_error(r"status of 403")
    assert page.goto(console.url("/ui/nodes")).status == 403  # type: ignore[union-attr]
    refused = page.request.post(
        console.url("/ui/secrets"),
        headers={"origin": console.server.url},
        form={"csrf": _csrf(page), "name": f"W_{suffix}", "value": "nope"},
    )
    assert refused.status == 403 and "may not deploy" in refused.text()
    with console.server.http() as http:
        assert f"W_{suffix}" not in http.get("/v1/secrets").text


def test_another_projects_admin_sees_none_of_this_projects_keys_secrets_or_audit(
    console: Console,
) -> None:
    suffix = _suffix()
    project = f"other-{suffix}"
    ours = _new_key(console, "developer", name=f"ours-{suffix}").partition(".")[0]
    with console.server.http() as http:
        assert http.post("/v1/projects", json={"name": project}).status_code == 201
        assert http.post("/v1/secrets", json={"name": f"OURS_{suffix}", "value": "x"}).is_success
    admin_key = console.server.api_key.partition(".")[0]
    theirs = _new_key(console, "admin", project=project)
    page = console.sign_in_with_key(theirs, then="/ui/keys")
    expect(page.locator("header .project")).to_have_text(project)
    expect(page.locator("header nav a", has_text="Nodes")).to_have_count(0)
    for path in ("/ui/keys", "/ui/secrets", "/ui/audit", "/ui/users", "/ui/events", "/ui/jobs"):
        console.open(path)
        html = page.content()
        for ours_only in (ours, admin_key, f"OURS_{suffix}", f"ours-{suffix}"):
            assert ours_only not in html, (path, ours_only)
    console.open("/ui/keys")
    console.shot("other-project-keys")
    console.expect_error(r"status of 40[34]")
    assert page.goto(console.url("/ui/nodes")).status == 403  # type: ignore[union-attr]
    by_url = page.request.delete(
        console.url(f"/ui/keys/{ours}"),
        headers={"origin": console.server.url, "x-csrf-token": _csrf(page)},
    )
    assert by_url.status == 404
    assert _new_key(console, "viewer")  # the platform admin's key still works, and ours:
    with console.server.http() as http:
        mine = next(k for k in http.get("/v1/keys").json() if k["id"] == ours)
    assert mine["revoked_at"] is None


def test_an_admin_creates_a_user_whose_first_key_shows_once_and_sets_their_password(
    console: Console,
) -> None:
    name = f"u{_suffix()}"
    page = console.sign_in_with_key(console.server.api_key, then="/ui/users")
    page.fill("#users input[name=name]", name)
    page.select_option("#users select[name=role]", "developer")
    page.get_by_role("button", name="Create user").click()
    token = page.locator("[data-token]").inner_text()
    whoami = _whoami(console, token).json()
    assert whoami["role"] == "developer" and whoami["user_id"]
    row = page.locator(f"tr[data-user='{name}']")
    expect(row).to_contain_text("developer")
    expect(row).to_contain_text("not set")
    page.select_option("#users select[name=name]", name)
    page.fill("#users input[name=password]", "a long password")
    page.get_by_role("button", name="Set password").click()
    expect(page.locator("#users .flash")).to_contain_text(f"password set for {name}")
    expect(page.locator("[data-token]")).to_have_count(0)
    expect(page.locator(f"tr[data-user='{name}']")).to_contain_text("set")
    console.shot("users")
    page.reload()
    expect(page.locator("[data-token]")).to_have_count(0)

    page.click("text=Sign out")
    page.wait_for_url(re.compile(r".*/ui/signin$"))
    console.sign_in(name, "a long password")
    page.wait_for_url(console.url("/ui/"))
    expect(page.locator("header .role")).to_have_text("developer")


def test_the_audit_log_filters_by_action_key_and_time(console: Console) -> None:
    suffix = _suffix()
    token = _new_key(console, "developer", name=f"auditor-{suffix}")
    key_id = token.partition(".")[0]
    with httpx.Client(
        base_url=console.server.url, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        assert http.post("/v1/secrets", json={"name": f"A_{suffix}", "value": "x"}).is_success
        assert http.delete(f"/v1/secrets/A_{suffix}").is_success
    page = console.sign_in_with_key(console.server.api_key, then="/ui/audit")
    page.select_option("select[name=key]", key_id)
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.audit tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text(f"DELETE /v1/secrets/A_{suffix} 204")
    expect(rows.nth(1)).to_contain_text("POST /v1/secrets 201")
    expect(rows.nth(0)).to_contain_text(f"auditor-{suffix}")
    console.shot("audit")
    page.select_option("select[name=action]", "DELETE")
    page.select_option("select[name=within]", "15m")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(f"/v1/secrets/A_{suffix}")
    page.fill("input[name=before]", "2000-01-01T00:00")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("main")).to_contain_text("Nothing matches these filters")
    assert page.url.endswith("before=2000-01-01T00%3A00")


def test_connectors_show_their_status_without_credentials(console: Console) -> None:
    suffix = _suffix()
    table = f"orders_{suffix}"
    with psycopg.connect(PG, autocommit=True) as db:
        db.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, item text)")
    up, down = f"db-{suffix}", f"bus-{suffix}"
    with console.server.http() as http:
        pg_url = PG.replace("postgres@", "postgres:pg-s3cret@")
        nats_url = "nats://watcher:nats-s3cret@127.0.0.1:9"  # nothing listens on port 9
        made = [
            http.post("/v1/connectors", json=body)
            for body in (
                {"name": up, "kind": "postgres", "url": pg_url, "topic": f"db.{table}",
                 "options": {"table": table}},
                {"name": down, "kind": "nats", "url": nats_url, "topic": "bus",
                 "options": {"subject": "orders"}},
            )
        ]  # fmt: skip
        assert [m.status_code for m in made] == [201, 201], [m.text for m in made]
        try:
            wait_for(
                lambda: (
                    http.get(f"/v1/connectors/{up}").json()["connected"]
                    and http.get(f"/v1/connectors/{down}").json()["last_error"]
                ),
                what="one connector to connect and the other to fail",
            )
            page = console.sign_in_with_key(console.server.api_key, then="/ui/connectors")
            expect(page.locator("tr", has_text=up)).to_contain_text("connected")
            expect(page.locator("tr", has_text=up)).to_contain_text(f"db.{table}")
            expect(page.locator("tr", has_text=down)).to_contain_text("not connected")
            expect(page.locator("tr", has_text=down)).to_contain_text("127.0.0.1:9")
            html = page.content()
            assert "pg-s3cret" not in html and "nats-s3cret" not in html
            console.shot("connectors")
        finally:
            for name in (up, down):
                http.delete(f"/v1/connectors/{name}")
            with psycopg.connect(PG, autocommit=True) as db:
                db.execute(f"DROP TABLE {table}")


def test_a_loaded_image_is_listed_and_a_deployer_deletes_it(
    console: Console, tmp_path: Path
) -> None:
    archive, ref = build_image(tmp_path, "stdio")
    try:
        assert f"loaded {ref}" in console.server.cli("image-load", str(archive)).stdout
        page = console.sign_in_with_key(_new_key(console, "developer"), then="/ui/images")
        row = page.locator("#images tbody tr", has_text=ref)
        expect(row).to_contain_text("MB")
        expect(row).to_contain_text("ago")
        console.shot("images")
        page.on("dialog", _accept)
        row.get_by_role("button", name="Delete").click()
        expect(page.locator("#images .flash")).to_contain_text(f"deleted {ref}")
        expect(page.locator("#images tbody tr", has_text=ref)).to_have_count(0)
        with console.server.http() as http:
            assert http.get(f"/v1/images/{ref}").status_code == 404
    finally:
        subprocess.run(["podman", "rmi", "--force", ref], capture_output=True)


def test_a_platform_admin_sees_the_nodes_and_a_lone_node_is_not_drained(console: Console) -> None:
    page = console.sign_in_with_key(console.server.api_key)
    page.locator("header nav a", has_text="Nodes").click()
    page.wait_for_url(console.url("/ui/nodes"))
    with console.server.http() as http:
        (node,) = http.get("/v1/nodes").json()
    row = page.locator("table.nodes tbody tr", has_text=node["name"])
    expect(row).to_contain_text("ready")
    expect(row).to_contain_text(f"{node['memory']['budget_mb']} MB")
    console.shot("nodes")
    console.expect_error(r"(status of|Error Code) 409")
    page.on("dialog", _accept)
    row.get_by_role("button", name="Drain").click()
    expect(page.locator("#flash")).to_contain_text("runs one node")
