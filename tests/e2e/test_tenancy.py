"""Projects, users, keys and roles; nothing of one project is visible from another."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from tests.helpers import Server, wait_for

ECHO = {"main.py": "def main(p):\n    return p\n"}


def _as(server: Server, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


@pytest.fixture(scope="module")
def other_project(server: Server) -> dict[str, str]:
    """Project `other` with a developer user; returns their token."""
    if not any(p["name"] == "other" for p in server.cli_json("project-list")):
        server.cli("project-create", "other")
    created = server.cli_json("user-create", "olga", "--project", "other", "--role", "developer")
    return {"token": created["token"]}


def test_users_keys_and_roles(server: Server, other_project) -> None:
    with _as(server, other_project["token"]) as olga:
        me = olga.get("/v1/whoami").json()
        assert (me["project"], me["role"], me["platform_admin"]) == ("other", "developer", False)
        # a developer may hand out weaker keys in their own project, never stronger ones
        invoker = olga.post("/v1/keys", json={"role": "invoker"}).json()
        assert invoker["project"] == "other" and invoker["token"].startswith(invoker["id"])
        too_strong = olga.post("/v1/keys", json={"role": "admin"})
        assert too_strong.status_code == 403
        assert olga.post("/v1/projects", json={"name": "mine"}).status_code == 403
        listed = olga.get("/v1/keys").json()
        assert invoker["id"] in [k["id"] for k in listed]
        assert all("token" not in k and "secret_hash" not in k for k in listed)
    with _as(server, invoker["token"]) as inv:
        assert inv.get("/v1/functions").status_code == 200
        assert inv.post("/v1/keys", json={"role": "viewer"}).status_code == 201
        assert inv.post("/v1/keys", json={"role": "developer"}).status_code == 403


def test_revoked_and_expired_keys_are_refused(server: Server) -> None:
    revoked = server.cli_json("key-create", "--role", "viewer")
    expiring = server.cli_json("key-create", "--role", "viewer", "--expires", "2s")
    for token in (revoked["token"], expiring["token"]):
        with _as(server, token) as client:
            assert client.get("/v1/functions").status_code == 200
    assert "revoked" in server.cli("key-revoke", revoked["id"]).stdout
    with _as(server, revoked["token"]) as client:
        answer = client.get("/v1/functions")
        assert answer.status_code == 401 and "revoked" in answer.json()["message"]

    def refused_as_expired() -> bool:
        with _as(server, expiring["token"]) as client:
            answer = client.get("/v1/functions")
        return answer.status_code == 401 and "expired" in answer.json()["message"]

    wait_for(refused_as_expired, timeout=30, what="the key to be refused once its 2 s are over")
    states = {k["id"]: k for k in server.cli_json("key-list")}
    assert states[revoked["id"]]["revoked_at"] is not None


def test_login_writes_the_credentials_file(server: Server, tmp_path) -> None:
    key = server.cli_json("key-create", "--role", "viewer")["token"]
    creds = tmp_path / "credentials.json"
    env = {k: v for k, v in server.env.items() if not k.startswith("PRATAI_")}
    env["PRATAI_CREDENTIALS"] = str(creds)
    env["HOME"] = str(tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pratai", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = run("login", "--url", server.url, "--key", key)
    assert done.returncode == 0, done.stderr
    assert "viewer of project default" in done.stdout
    assert json.loads(creds.read_text()) == {"url": server.url, "api_key": key}
    assert oct(creds.stat().st_mode & 0o777) == "0o600"
    assert run("whoami").stdout.startswith("key ")
    bad = run("login", "--url", server.url, "--key", "pk_nope.nope")
    assert bad.returncode != 0 and "invalid API key" in bad.stderr


def test_a_login_wins_over_the_servers_credentials_and_whoami_says_so(
    server: Server, other_project, tmp_path
) -> None:
    """As in the README: the CLI runs where `pratai serve` left its admin key (PRATAI_HOME)."""
    env = {k: v for k, v in server.env.items() if k not in ("PRATAI_URL", "PRATAI_API_KEY")}
    env["HOME"] = str(tmp_path)
    login_file = tmp_path / ".config" / "pratai" / "credentials.json"

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pratai", *args],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
        )

    before = run("whoami")
    assert "admin of project default" in before.stdout
    assert f"credentials from {server.home / 'credentials.json'}" in before.stdout

    done = run("login", "--url", server.url, "--key", other_project["token"])
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no environment variable overrides this login
    after = run("whoami")
    assert after.returncode == 0, after.stderr
    assert "developer of project other" in after.stdout
    assert f"credentials from {login_file}" in after.stdout
    me = json.loads(run("whoami", "-o", "json").stdout)
    assert (me["project"], me["url"]) == ("other", server.url)
    assert me["credentials_from"].startswith(str(login_file))
    # olga's key cannot see the platform admin's projects: the CLI acts as her
    assert [p["name"] for p in json.loads(run("project-list", "-o", "json").stdout)] == ["other"]

    # the environment wins over the login, and `login` warns that it will
    admin = {"PRATAI_URL": server.url, "PRATAI_API_KEY": server.api_key}
    by_env = run("whoami", **admin)
    assert "admin of project default" in by_env.stdout
    assert "credentials from PRATAI_URL and PRATAI_API_KEY" in by_env.stdout
    again = run("login", "--url", server.url, "--key", other_project["token"], **admin)
    assert again.returncode == 0 and "PRATAI_URL and PRATAI_API_KEY" in again.stderr


def test_another_project_cannot_see_or_touch_anything(server: Server, deploy, other_project):
    """Walk every /v1 route of the OpenAPI document with a key of another project."""
    name = deploy(ECHO, "--event", "webhook")
    server.cli("trigger-create", name, "--event", "message", "--subscribe_to", "private-topic")
    invocation = server.cli_json("invoke", name, "--payload", '{"secret": "value"}')
    server.cli("event-publish", "private-topic", "--data", '{"secret": "value"}', "--id", "p-1")
    trigger_id = server.cli_json("trigger-list", name)[0]["id"]
    key_id = server.cli_json("key-list")[0]["id"]
    job_id = server.cli("job-submit", "--", "echo", "secret-output").stdout.strip()
    server.cli("job-save", name, "--", "echo", "saved")
    values = {
        "{job_id}": job_id,
        "{name}": name,
        "{invocation_id}": invocation["id"],
        "{trigger_id}": trigger_id,
        "{event_id}": "p-1",
        "{key_id}": key_id,
        "{topic}": "private-topic",
    }
    with server.http() as admin:
        spec = admin.get("/openapi.json").json()
    ghosts = {param: f"ghost{n}" for n, param in enumerate(values)}

    def fill(path: str, table: dict[str, str]) -> str:
        for param, value in table.items():
            path = path.replace(param, value)
        return path

    with _as(server, other_project["token"]) as olga:
        for path, operations in spec["paths"].items():
            if not path.startswith("/v1"):
                continue
            for method in operations:
                answer = olga.request(method.upper(), fill(path, values))
                if "{topic}" in path:  # topics are per project: this one is theirs, not ours
                    assert "p-1" not in answer.text and "value" not in answer.text
                elif "{" in path:
                    # indistinguishable from asking for something that does not exist at all
                    ghost = olga.request(method.upper(), fill(path, ghosts))
                    seen = answer.text
                    for param, value in values.items():
                        seen = seen.replace(value, ghosts[param])
                    assert (answer.status_code, seen) == (ghost.status_code, ghost.text), (
                        method,
                        path,
                    )
                    # the platform's own (node tokens, nodes): refused to all but its admins
                    refused = (403,) if path.startswith("/v1/node") else (404, 400)
                    assert answer.status_code in refused, (method, path)
                elif path == "/v1/audit":  # their own requests, with our names they typed
                    theirs = {k["id"] for k in olga.get("/v1/keys").json()}
                    assert {e["key_id"] for e in answer.json()} <= theirs
                else:
                    text = answer.text
                    assert name not in text and invocation["id"] not in text, (method, path)
                    assert trigger_id not in text and key_id not in text, (method, path)
                    assert job_id not in text and "secret-output" not in text, (method, path)
                    if path.startswith("/v1/node"):
                        assert answer.status_code == 403, (method, path)
        # their topic of the same name is theirs: it holds only what they published
        theirs = olga.get("/v1/events/private-topic").json()
        assert [e["source"] for e in theirs] == ["/pratai/api"] and "p-1" not in str(theirs)
    wait_for(
        lambda: len(server.cli_json("invocation-list", name)) == 2,
        what="the owner's two invocations",
    )
    assert len(server.cli_json("invocation-list", name)) == 2


def test_audit_log_records_who_did_what(server: Server, deploy) -> None:
    name = deploy(ECHO)
    server.cli("invoke", name, "--payload", '{"password": "hunter2"}')
    server.cli("function-delete", name)
    entries = server.cli_json("audit-list", "--limit", "200")
    mine = [e for e in entries if name in e["target"]]
    actions = {(e["action"], e["target"]) for e in mine}
    assert ("POST", f"/v1/functions/{name}/invoke") in actions
    assert ("DELETE", f"/v1/functions/{name}") in actions
    assert all(e["key_id"].startswith("pk_") for e in mine)
    assert "hunter2" not in server.cli("audit-list", "--limit", "200").stdout


def test_a_keys_own_rate_limit(server: Server) -> None:
    limited = server.cli_json("key-create", "--role", "viewer", "--rate-limit", "2/hour")
    assert limited["rate_limit"] == "2 per 3600 s"
    with _as(server, limited["token"]) as client:
        codes = [client.get("/v1/functions").status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        refused = client.get("/v1/functions")
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1


def test_a_viewer_can_change_nothing_anywhere(server: Server) -> None:
    """Every route that creates, changes, deletes or runs something refuses a viewer key."""
    viewer = server.cli_json("key-create", "--role", "viewer")["token"]
    with server.http() as admin:
        spec = admin.get("/openapi.json").json()
    # a viewer may still mint viewer keys, revoke its own key and set its own password: those
    # are checked apart (test_passwords in tests/console)
    own = {
        ("post", "/v1/keys"),
        ("delete", "/v1/keys/{key_id}"),
        ("put", "/v1/users/{name}/password"),
    }
    with _as(server, viewer) as client:
        for path, operations in spec["paths"].items():
            for method in operations:
                if method == "get" or not path.startswith("/v1") or (method, path) in own:
                    continue
                concrete = path
                for param in (
                    "{name}",
                    "{invocation_id}",
                    "{trigger_id}",
                    "{event_id}",
                    "{topic}",
                    "{key_id}",
                    "{job_id}",
                    "{ref}",
                ):
                    concrete = concrete.replace(param, "x")
                answer = client.request(method.upper(), concrete, json={})
                assert answer.status_code == 403, (method, path, answer.status_code)
        assert client.post("/v1/keys", json={"role": "invoker"}).status_code == 403


def test_user_password_sets_a_password_from_stdin_and_refuses_a_short_one(server: Server) -> None:
    name = f"pw{os.getpid()}{time.monotonic_ns() % 10**6}"
    server.cli("user-create", name, "--project", "default", "--role", "viewer")
    short = server.cli("user-password", name, "--password-stdin", stdin="short\n", check=False)
    assert short.returncode != 0 and "at least 8 characters" in short.stderr
    done = server.cli("user-password", name, "--password-stdin", stdin="long enough\n")
    assert done.stdout.strip() == f"password set for {name}"
    unknown = server.cli(
        "user-password", "nobody-here", "--password-stdin", stdin="long enough\n", check=False
    )
    assert unknown.returncode != 0 and "not found" in unknown.stderr
