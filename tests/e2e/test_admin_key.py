"""No API call can lock the platform out, and the operator has a local way back in.

Each test runs a server of its own (its keys get revoked), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Server, start_server


@pytest.fixture(params=["sqlite", "postgresql"])
def platform(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    env = {}
    if request.param == "postgresql":
        env["PRATAI_DATABASE_URL"] = request.getfixturevalue("pg_url")
    server = start_server(tmp_path, **env)
    yield server
    server.stop()


def _as(server: Server, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def _id(token: str) -> str:
    return token.partition(".")[0]


def test_the_last_admin_key_of_the_platform_cannot_be_revoked(platform: Server) -> None:
    first = platform.api_key
    refused = platform.cli("key-revoke", _id(first), check=False)
    assert refused.returncode == 1
    assert "nobody could administer the platform" in refused.stderr
    assert "pratai key-create --role admin" in refused.stderr
    with _as(platform, first) as admin:
        answer = admin.delete(f"/v1/keys/{_id(first)}")
        assert answer.status_code == 409
        assert answer.json()["error"] == "conflict"
        assert "pratai admin-key" in answer.json()["message"]
        assert admin.get("/v1/whoami").json()["platform_admin"] is True  # still in
        # an admin key that expires would leave the platform locked out when it does
        expiring = admin.post("/v1/keys", json={"role": "admin", "expires": "1d"}).json()
        assert admin.delete(f"/v1/keys/{_id(first)}").status_code == 409
        second = admin.post("/v1/keys", json={"role": "admin"}).json()
        assert admin.delete(f"/v1/keys/{_id(first)}").status_code == 204
    with _as(platform, second["token"]) as admin:
        assert admin.delete(f"/v1/keys/{second['id']}").status_code == 409
        assert admin.delete(f"/v1/keys/{expiring['id']}").status_code == 204
        # only the platform's admin keys are kept: not other roles, not other projects'
        assert admin.post("/v1/projects", json={"name": "acme"}).status_code == 201
        acme = admin.post("/v1/keys", json={"project": "acme", "role": "admin"}).json()
        assert admin.delete(f"/v1/keys/{acme['id']}").status_code == 204
        developer = admin.post("/v1/keys", json={"role": "developer"}).json()
        assert admin.delete(f"/v1/keys/{developer['id']}").status_code == 204
        assert admin.get("/v1/whoami").status_code == 200


def test_the_operator_mints_an_admin_key_from_the_data_folder(platform: Server) -> None:
    first = platform.api_key
    credentials = platform.home / "credentials.json"

    minted = platform.cli("admin-key")  # the server's settings: PRATAI_HOME, DATABASE_URL
    token = minted.stdout.strip()
    assert token.startswith("pk_") and minted.stdout.count("\n") == 1
    assert "shown once and saved nowhere" in minted.stderr
    assert json.loads(credentials.read_text())["api_key"] == first  # saved nowhere
    with _as(platform, token) as admin:
        me = admin.get("/v1/whoami").json()
        assert (me["project"], me["role"], me["platform_admin"]) == ("default", "admin", True)
        # with the minted key in, the first-start key may go; the minted one is then kept
        assert admin.delete(f"/v1/keys/{_id(first)}").status_code == 204
        assert admin.delete(f"/v1/keys/{_id(token)}").status_code == 409
    with _as(platform, first) as gone:
        assert gone.get("/v1/whoami").status_code == 401

    # no API involved: it works with the server stopped, and --save restores the CLI's file
    platform.stop()
    saved = platform.cli("admin-key", "--save")
    assert json.loads(credentials.read_text())["api_key"] == saved.stdout.strip()
    assert str(credentials) in saved.stderr
    platform.start()
    assert "admin of project default" in platform.cli("whoami").stdout


def test_admin_key_refuses_a_place_without_a_store(tmp_path: Path, pg_url: str) -> None:
    empty = tmp_path / "empty"

    def admin_key(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pratai", "admin-key"],
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = admin_key(PRATAI_HOME=str(empty))
    assert done.returncode == 1 and done.stdout == ""
    assert f"no Pratai store at {empty / 'pratai.sqlite3'}" in done.stderr
    assert not empty.exists()  # nothing was created
    done = admin_key(PRATAI_HOME=str(empty), PRATAI_DATABASE_URL=pg_url)
    assert done.returncode == 1 and done.stdout == ""
    assert "no Pratai store in postgresql" in done.stderr
