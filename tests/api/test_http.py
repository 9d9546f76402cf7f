"""The HTTP layer in-process: the app of `Platform.assemble` with every real part behind it,
driven through httpx's ASGI transport. Authentication, roles, the mapping of errors to status
codes and JSON bodies, the invoke endpoint's answers and the OpenAPI document."""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

import pratai
from pratai.core.models import ApiKey, Project, Role, now
from pratai.core.provisioning import host_cpus
from pratai.core.tenants import _hash
from pratai.server import Platform
from pratai.settings import Settings
from pratai.store.sql import SqlStore
from tests.helpers import code, make_zip, wait_for_async

pytestmark = [
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed"),
    pytest.mark.asyncio(loop_scope="function"),
]

PAYLOAD_LIMIT = 1024
PACKAGE_LIMIT = 4096
ECHO = make_zip(
    {
        "main.py": code("""
            def main(payload):
                print("got", type(payload).__name__)
                if isinstance(payload, bytes):
                    return {"bytes": payload.decode()}
                return {"echo": payload}
        """)
    }
)
ECHO_2 = make_zip({"main.py": "def main(p):\n    return 'v2'\n"})

# every /v1 operation the API offers
V1_ROUTES = {
    ("POST", "/v1/functions"),
    ("GET", "/v1/functions"),
    ("GET", "/v1/functions/{name}"),
    ("PATCH", "/v1/functions/{name}"),
    ("DELETE", "/v1/functions/{name}"),
    ("GET", "/v1/functions/{name}/versions"),
    ("POST", "/v1/functions/{name}/rollback"),
    ("POST", "/v1/functions/{name}/invoke"),
    ("GET", "/v1/functions/{name}/logs"),
    ("GET", "/v1/invocations"),
    ("GET", "/v1/invocations/{invocation_id}"),
    ("GET", "/v1/invocations/{invocation_id}/tree"),
    ("GET", "/v1/node"),
    ("POST", "/v1/events/{topic}"),
    ("GET", "/v1/events/{topic}"),
    ("POST", "/v1/dead-letter/{event_id}/redrive"),
    ("GET", "/v1/triggers"),
    ("POST", "/v1/triggers"),
    ("DELETE", "/v1/triggers/{trigger_id}"),
    ("POST", "/v1/connectors"),
    ("GET", "/v1/connectors"),
    ("GET", "/v1/connectors/{name}"),
    ("DELETE", "/v1/connectors/{name}"),
    ("GET", "/v1/whoami"),
    ("POST", "/v1/projects"),
    ("GET", "/v1/projects"),
    ("POST", "/v1/users"),
    ("PUT", "/v1/users/{name}/password"),
    ("POST", "/v1/keys"),
    ("GET", "/v1/keys"),
    ("DELETE", "/v1/keys/{key_id}"),
    ("GET", "/v1/audit"),
    ("POST", "/v1/secrets"),
    ("GET", "/v1/secrets"),
    ("DELETE", "/v1/secrets/{name}"),
    ("GET", "/v1/runtimes"),
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs"),
    ("POST", "/v1/jobs/callable"),
    ("GET", "/v1/jobs/{job_id}"),
    ("GET", "/v1/jobs/{job_id}/result"),
    ("GET", "/v1/jobs/{job_id}/output"),
    ("POST", "/v1/jobs/{job_id}/cancel"),
    ("POST", "/v1/saved-jobs"),
    ("GET", "/v1/saved-jobs"),
    ("GET", "/v1/saved-jobs/{name}"),
    ("DELETE", "/v1/saved-jobs/{name}"),
    ("POST", "/v1/saved-jobs/{name}/run"),
    ("PUT", "/v1/saved-jobs/{name}/schedule"),
    ("POST", "/v1/images"),
    ("GET", "/v1/images"),
    ("GET", "/v1/images/{ref}"),
    ("DELETE", "/v1/images/{ref}"),
    ("POST", "/v1/node-tokens"),
    ("GET", "/v1/node-tokens"),
    ("DELETE", "/v1/node-tokens/{token_id}"),
    ("GET", "/v1/nodes"),
    ("POST", "/v1/nodes/{name}/drain"),
    ("DELETE", "/v1/nodes/{name}/drain"),
}


@dataclass
class Api:
    platform: Platform
    client: httpx.AsyncClient
    admin: str
    project: Project

    async def key(self, role: Role) -> str:
        return await self.platform.services.tenants.create_key(self.project, role)

    async def request(
        self, method: str, path: str, token: str | None = None, **kw: Any
    ) -> httpx.Response:
        headers = kw.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return await self.client.request(method, path, headers=headers, **kw)

    async def deploy(
        self, token: str, name: str = "echo", package: bytes = ECHO, **form: str
    ) -> httpx.Response:
        return await self.request(
            "POST",
            "/v1/functions",
            token,
            data={"name": name, **form},
            files={"file": ("package.zip", package, "application/zip")},
        )


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body


async def finished(api: Api, invocation_id: str, token: str) -> dict[str, Any]:
    """The invocation's record once it is no longer queued or running."""

    async def probe() -> dict[str, Any] | None:
        shown = await api.request("GET", f"/v1/invocations/{invocation_id}", token)
        assert shown.status_code == 200, shown.text
        record: dict[str, Any] = shown.json()
        return record if record["status"] not in ("queued", "running") else None

    record: dict[str, Any] = await wait_for_async(probe, timeout=15, what="the invocation to end")
    return record


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    s = Settings.from_env(
        {
            "PRATAI_HOME": str(tmp_path / "home"),
            "PRATAI_MAX_PAYLOAD_BYTES": str(PAYLOAD_LIMIT),
            "PRATAI_MAX_PACKAGE_BYTES": str(PACKAGE_LIMIT),
        }
    )
    yield s
    if not s.sandbox_dir.is_relative_to(s.home):
        shutil.rmtree(s.sandbox_dir, ignore_errors=True)


@pytest_asyncio.fixture(loop_scope="function")
async def api(settings: Settings, assemble: Callable[[Settings], Platform]) -> AsyncIterator[Api]:
    platform = assemble(settings)
    admin = await platform.start()  # ASGITransport runs no lifespan
    try:
        assert admin is not None
        project = await platform.services.tenants.ensure_project()
        transport = httpx.ASGITransport(app=platform.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://pratai.test") as client:
            yield Api(platform, client, admin, project)
    finally:
        await platform.close()


# --- authentication -----------------------------------------------------------------------


async def test_healthz_needs_no_key(api: Api) -> None:
    answer = await api.request("GET", "/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "version": pratai.__version__}


async def test_missing_or_malformed_authorization_is_401(api: Api) -> None:
    for headers in (
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer   "},
        {"Authorization": f"Basic {api.admin}"},
        {"Authorization": api.admin},
    ):
        answer = await api.request("GET", "/v1/functions", headers=headers)
        body = error_of(answer, 401, "unauthorized")
        assert "missing API key" in body["message"], headers
        assert answer.headers["www-authenticate"] == "Bearer"


async def test_the_invoke_path_answers_alike_with_or_without_a_query_string(api: Api) -> None:
    """Without one, the call takes InvokeShortcut instead of the route: same answers."""
    assert (await api.deploy(api.admin)).status_code == 201
    viewer = await api.key(Role.VIEWER)
    for path in ("/v1/functions/echo/invoke", "/v1/functions/echo/invoke?async=false"):
        answer = await api.request("POST", path, json={})
        assert error_of(answer, 401, "unauthorized")["message"].startswith("missing API key")
        assert answer.headers["www-authenticate"] == "Bearer"
        answer = await api.request("POST", path, "pk_nope.secret", json={})
        assert error_of(answer, 401, "unauthorized")["message"] == "invalid API key"
        answer = await api.request("POST", path, viewer, json={})
        assert error_of(answer, 403, "forbidden")["message"] == "role viewer may not invoke"
        answer = await api.request("POST", path, api.admin, json={"n": 1})
        assert answer.status_code == 200 and answer.json()["result"] == {"echo": {"n": 1}}
        assert answer.json()["trigger"] == "sync"


async def test_unknown_or_wrong_keys_are_401(api: Api) -> None:
    key_id, _, secret = api.admin.partition(".")
    for token in (
        "garbage",
        "pk_0000000000000000.secret",
        f"{key_id}.{secrets.token_urlsafe(32)}",  # a real key id with the wrong secret
        f"{key_id}.",
        f".{secret}",
        f"{key_id}.{secret}x",
    ):
        answer = await api.request("GET", "/v1/functions", token)
        body = error_of(answer, 401, "unauthorized")
        assert body["message"] == "invalid API key", token
        assert answer.headers["www-authenticate"] == "Bearer"
    assert (await api.request("GET", "/v1/functions", api.admin)).status_code == 200


async def _stored_key(
    api: Api, revoked_at: float | None = None, expires_at: float | None = None
) -> str:
    """A key made the way `Tenants.create_key` does, with revocation or expiry set."""
    key_id, secret = "pk_" + secrets.token_hex(8), secrets.token_urlsafe(32)
    key = ApiKey(
        id=key_id,
        project_id=api.project.id,
        role=Role.ADMIN,
        secret_hash=_hash(secret),
        revoked_at=revoked_at,
        expires_at=expires_at,
    )
    await api.platform.store.create_key(key)
    return f"{key_id}.{secret}"


async def test_revoked_and_expired_keys_are_401(api: Api) -> None:
    revoked = await _stored_key(api, revoked_at=now() - 1)
    expired = await _stored_key(api, expires_at=now() - 1)
    valid = await _stored_key(api, expires_at=now() + 3600)

    body = error_of(await api.request("GET", "/v1/functions", revoked), 401, "unauthorized")
    assert "revoked" in body["message"]
    body = error_of(await api.request("GET", "/v1/functions", expired), 401, "unauthorized")
    assert "expired" in body["message"]
    assert (await api.request("GET", "/v1/functions", valid)).status_code == 200


# --- roles -------------------------------------------------------------------------------


async def _cannot_change_anything(api: Api, token: str, role: str) -> None:
    attempts = [
        await api.deploy(token, "sneaky"),
        await api.request("PATCH", "/v1/functions/echo", token, data={"memory": "256"}),
        await api.request("POST", "/v1/functions/echo/rollback", token, json={"version": 1}),
        await api.request("DELETE", "/v1/functions/echo", token),
    ]
    for answer in attempts:
        body = error_of(answer, 403, "forbidden")
        assert body["message"] == f"role {role} may not deploy"
    shown = (await api.request("GET", "/v1/functions/echo", api.admin)).json()
    assert shown["memory_mb"] == 128 and shown["latest_version"] == 1
    names = [f["name"] for f in (await api.request("GET", "/v1/functions", api.admin)).json()]
    assert names == ["echo"]


async def test_viewer_can_read_but_not_invoke_or_deploy(api: Api) -> None:
    assert (await api.deploy(api.admin)).status_code == 201
    viewer = await api.key(Role.VIEWER)

    for path in (
        "/v1/functions",
        "/v1/functions/echo",
        "/v1/functions/echo/versions",
        "/v1/functions/echo/logs",
        "/v1/invocations",
    ):
        assert (await api.request("GET", path, viewer)).status_code == 200, path
    assert [f["name"] for f in (await api.request("GET", "/v1/functions", viewer)).json()] == [
        "echo"
    ]

    for path in ("/v1/functions/echo/invoke", "/v1/functions/echo/invoke?async=true"):
        body = error_of(await api.request("POST", path, viewer, json={}), 403, "forbidden")
        assert body["message"] == "role viewer may not invoke"
    assert (await api.request("GET", "/v1/invocations", api.admin)).json() == []  # nothing ran

    await _cannot_change_anything(api, viewer, "viewer")


async def test_invoker_can_invoke_but_not_deploy(api: Api) -> None:
    assert (await api.deploy(api.admin)).status_code == 201
    invoker = await api.key(Role.INVOKER)

    answer = await api.request("POST", "/v1/functions/echo/invoke", invoker, json={"a": 1})
    assert answer.status_code == 200 and answer.json()["result"] == {"echo": {"a": 1}}
    queued = await api.request("POST", "/v1/functions/echo/invoke?async=true", invoker, json={})
    assert queued.status_code == 202
    assert (await finished(api, queued.json()["id"], invoker))["status"] == "succeeded"
    assert (await api.request("GET", "/v1/functions/echo", invoker)).status_code == 200

    await _cannot_change_anything(api, invoker, "invoker")


async def test_developer_can_deploy_update_roll_back_and_delete(api: Api) -> None:
    developer = await api.key(Role.DEVELOPER)

    created = await api.deploy(developer, memory="256", timeout="5", description="hi")
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["name"], body["state"], body["active_version"]) == ("echo", "ready", 1)
    assert (body["memory_mb"], body["timeout_s"], body["description"]) == (256, 5.0, "hi")

    updated = await api.request(
        "PATCH",
        "/v1/functions/echo",
        developer,
        files={"file": ("v2.zip", ECHO_2, "application/zip")},
    )
    assert updated.status_code == 200 and updated.json()["active_version"] == 2
    answer = await api.request("POST", "/v1/functions/echo/invoke", developer, json={})
    assert answer.json()["result"] == "v2"

    back = await api.request("POST", "/v1/functions/echo/rollback", developer, json={"version": 1})
    assert back.status_code == 200 and back.json()["active_version"] == 1
    answer = await api.request("POST", "/v1/functions/echo/invoke", developer, json=7)
    assert answer.json()["result"] == {"echo": 7}

    versions = (await api.request("GET", "/v1/functions/echo/versions", developer)).json()
    assert [(v["version"], v["state"], v["active"]) for v in versions] == [
        (1, "ready", True),
        (2, "ready", False),
    ]

    deleted = await api.request("DELETE", "/v1/functions/echo", developer)
    assert deleted.status_code == 204 and deleted.content == b""
    error_of(await api.request("GET", "/v1/functions/echo", developer), 404, "not_found")


async def test_show_says_what_cpu_each_instance_is_given(api: Api) -> None:
    created = await api.deploy(api.admin, memory="1024")
    assert created.json()["provisioned"] == {"cpu_weight": 800, "cpus_max": 1.0}
    await api.request("PATCH", "/v1/functions/echo", api.admin, data={"memory": "4096"})
    shown = (await api.request("GET", "/v1/functions/echo", api.admin)).json()
    # one CPU per 1769 MB, at most the CPUs of this machine, `pratai serve`'s one node
    expected = min(round(4096 / 1769, 2), host_cpus())
    assert shown["provisioned"] == {"cpu_weight": 3200, "cpus_max": expected}


async def test_only_admins_see_the_node(api: Api) -> None:
    """Its pools span every project, so no project-scoped role may read them."""
    for role in (Role.VIEWER, Role.INVOKER, Role.DEVELOPER):
        answer = await api.request("GET", "/v1/node", await api.key(role))
        assert error_of(answer, 403, "forbidden")["message"] == f"role {role} may not operate"
    answer = await api.request("GET", "/v1/node", api.admin)
    assert answer.status_code == 200 and answer.json()["pools"] == []


# --- errors ------------------------------------------------------------------------------


async def test_unknown_function_or_invocation_is_404(api: Api) -> None:
    for method, path in (
        ("GET", "/v1/functions/nope"),
        ("GET", "/v1/functions/nope/versions"),
        ("GET", "/v1/functions/nope/logs"),
        ("POST", "/v1/functions/nope/invoke"),
        ("POST", "/v1/functions/nope/invoke?async=true"),
        ("DELETE", "/v1/functions/nope"),
        ("GET", "/v1/invocations?function=nope"),
    ):
        body = error_of(await api.request(method, path, api.admin), 404, "not_found")
        assert "'nope'" in body["message"] and body["details"] == {"function": "nope"}, path
    body = error_of(await api.request("GET", "/v1/invocations/feed", api.admin), 404, "not_found")
    assert body["details"] == {"invocation": "feed"}


async def test_payload_over_the_limit_is_413(api: Api) -> None:
    assert (await api.deploy(api.admin)).status_code == 201
    path = "/v1/functions/echo/invoke"
    over = b'"' + b"x" * (PAYLOAD_LIMIT - 1) + b'"'

    body = error_of(
        await api.request("POST", path, api.admin, content=over), 413, "payload_too_large"
    )
    assert body["details"] == {"limit": PAYLOAD_LIMIT} and str(PAYLOAD_LIMIT) in body["message"]

    async def chunks() -> AsyncIterator[bytes]:  # no content-length: counted while read
        for _ in range(4):
            yield b" " * (PAYLOAD_LIMIT // 2)

    answer = await api.request("POST", path + "?async=true", api.admin, content=chunks())
    assert error_of(answer, 413, "payload_too_large")["details"] == {"limit": PAYLOAD_LIMIT}
    assert (await api.request("GET", "/v1/invocations", api.admin)).json() == []

    at_limit = b'"' + b"x" * (PAYLOAD_LIMIT - 2) + b'"'
    answer = await api.request(
        "POST", path, api.admin, content=at_limit, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 200 and answer.json()["status"] == "succeeded"


async def test_package_over_the_limit_is_413(api: Api) -> None:
    big = make_zip(
        {"main.py": "def main(p):\n    return p\n", "blob.bin": secrets.token_bytes(5000)}
    )
    assert len(big) > PACKAGE_LIMIT
    body = error_of(await api.deploy(api.admin, package=big), 413, "payload_too_large")
    assert body["details"] == {"limit": PACKAGE_LIMIT}
    assert (await api.request("GET", "/v1/functions", api.admin)).json() == []


async def test_bad_deploys_are_4xx_with_a_message(api: Api) -> None:
    missing_name = await api.request(
        "POST",
        "/v1/functions",
        api.admin,
        files={"file": ("package.zip", ECHO, "application/zip")},
    )
    body = error_of(missing_name, 400, "invalid_input")
    assert "name" in body["message"]
    assert [d["field"] for d in body["details"]] == ["body.name"]

    missing_file = await api.request("POST", "/v1/functions", api.admin, data={"name": "echo"})
    body = error_of(missing_file, 400, "invalid_input")  # a zip or a container image
    assert "--file" in body["message"] and "--image" in body["message"]

    bad_memory = await api.deploy(api.admin, memory="lots")
    assert "body.memory" in error_of(bad_memory, 400, "invalid_input")["message"]

    error_of(await api.deploy(api.admin, memory="8193"), 400, "invalid_input")
    error_of(await api.deploy(api.admin, "Not A Name"), 400, "invalid_name")
    error_of(await api.deploy(api.admin, package=b"not a zip"), 400, "invalid_package")
    assert (await api.request("GET", "/v1/functions", api.admin)).json() == []

    assert (await api.deploy(api.admin)).status_code == 201
    error_of(await api.deploy(api.admin), 409, "conflict")
    rollback = await api.request("POST", "/v1/functions/echo/rollback", api.admin, json={})
    assert "version" in error_of(rollback, 400, "invalid_input")["message"]


async def test_a_refused_route_or_trigger_leaves_no_function_behind(api: Api) -> None:
    assert (await api.deploy(api.admin, "first", route="GET /p")).status_code == 201
    clash = await api.deploy(
        api.admin, "second", route="get /p/", event="message", subscribe_to="news"
    )
    assert error_of(clash, 409, "conflict")["message"] == "the project already routes GET /p"
    bad_auth = await api.deploy(api.admin, "second", route="GET /q", route_auth="root")
    assert "route auth" in error_of(bad_auth, 400, "invalid_input")["message"]
    bad_trigger = await api.deploy(api.admin, "second", event="timer", cron="every day")
    assert "cron" in error_of(bad_trigger, 400, "invalid_input")["message"]

    listed = await api.request("GET", "/v1/functions", api.admin)
    assert [f["name"] for f in listed.json()] == ["first"]
    assert (await api.request("GET", "/v1/triggers", api.admin)).json() == []
    document = await api.request("GET", "/fn/default/openapi.json")
    assert list(document.json()["paths"]) == ["/p"]
    # nothing of the refused deploys is left to clash with
    again = await api.deploy(api.admin, "second", route="GET /q", event="message", subscribe_to="n")
    assert again.status_code == 201, again.text


# --- invoking ----------------------------------------------------------------------------


async def test_sync_invoke_answers_with_the_invocation(api: Api) -> None:
    assert (await api.deploy(api.admin)).status_code == 201
    answer = await api.request("POST", "/v1/functions/echo/invoke", api.admin, json={"n": 2})
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {
        "id", "function", "version", "mode", "status", "result", "error", "stdout", "stderr",
        "cold_start", "init_ms", "duration_ms", "peak_memory_kb", "attempt", "trigger",
        "event_id", "parent_id", "created_at", "started_at", "finished_at",
    }  # fmt: skip
    assert (body["function"], body["version"], body["mode"], body["trigger"]) == (
        "echo", 1, "sync", "sync",
    )  # fmt: skip
    assert (body["status"], body["result"], body["error"]) == (
        "succeeded",
        {"echo": {"n": 2}},
        None,
    )
    assert body["stdout"] == "got dict\n" and body["cold_start"] is True
    assert body["created_at"] <= body["started_at"] <= body["finished_at"]
    assert len(body["id"]) == 32

    shown = await api.request("GET", f"/v1/invocations/{body['id']}", api.admin)
    assert shown.status_code == 200
    assert {k: shown.json()[k] for k in ("status", "result", "stdout")} == {
        "status": "succeeded",
        "result": {"echo": {"n": 2}},
        "stdout": "got dict\n",
    }

    # a body that is not JSON reaches the function as bytes, on the warm instance
    raw = await api.request(
        "POST",
        "/v1/functions/echo/invoke",
        api.admin,
        content=b"plain words",
        headers={"content-type": "text/plain"},
    )
    assert raw.json()["result"] == {"bytes": "plain words"} and raw.json()["cold_start"] is False


async def test_async_invoke_answers_202_and_completes(api: Api) -> None:
    assert (await api.deploy(api.admin)).status_code == 201
    answer = await api.request(
        "POST", "/v1/functions/echo/invoke?async=true", api.admin, json={"later": True}
    )
    assert answer.status_code == 202
    body = answer.json()
    assert set(body) == {"id", "status"} and body["status"] == "queued"

    record = await finished(api, body["id"], api.admin)
    assert (record["status"], record["mode"]) == ("succeeded", "async")
    assert record["result"] == {"echo": {"later": True}}
    listed = (await api.request("GET", "/v1/invocations?function=echo", api.admin)).json()
    assert [i["id"] for i in listed] == [body["id"]]


async def test_invoking_a_function_whose_build_failed_is_409(api: Api) -> None:
    broken = make_zip(
        {
            "main.py": "def main(p):\n    return p\n",
            "requirements.txt": "pratai-no-such-package-zzz==1.0\n",
        }
    )
    created = await api.deploy(api.admin, "broken", broken)
    assert created.status_code == 201 and created.json()["state"] == "building"
    await api.platform.services.functions.wait_built()
    shown = (await api.request("GET", "/v1/functions/broken", api.admin)).json()
    assert shown["state"] == "build_failed" and "pratai-no-such-package-zzz" in shown["build_log"]
    answer = await api.request("POST", "/v1/functions/broken/invoke", api.admin, json={})
    assert "build_failed" in error_of(answer, 409, "conflict")["message"]


# --- the API document ----------------------------------------------------------------------


async def test_openapi_lists_every_v1_route(api: Api) -> None:
    answer = await api.request("GET", "/openapi.json")
    assert answer.status_code == 200
    document = answer.json()
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        if path.startswith("/v1")
        for method in operations
    }
    assert documented == V1_ROUTES
    # and each of them is served, behind a key (a missing route would answer 404 or 405)
    for method, path in sorted(documented):
        concrete = path.replace("{name}", "echo").replace("{invocation_id}", "feed")
        for param in (
            "{topic}",
            "{event_id}",
            "{trigger_id}",
            "{key_id}",
            "{job_id}",
            "{ref}",
            "{token_id}",
        ):
            concrete = concrete.replace(param, "x")
        answer = await api.request(method, concrete)
        assert error_of(answer, 401, "unauthorized"), (method, path)
    assert document["info"]["version"] == pratai.__version__
    assert (await api.request("GET", "/docs")).status_code == 200


async def test_the_document_declares_every_error_with_its_body(api: Api) -> None:
    document = (await api.request("GET", "/openapi.json")).json()
    error_body = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            answers = operation["responses"]
            assert "422" not in answers, (method, path)  # invalid input is 400, always
            for status, answer in answers.items():
                if status.startswith(("4", "5")):
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == error_body, (method, path, status)
            named = "{" in path and "{topic}" not in path  # a topic exists once it has events
            if path.startswith("/v1") and named and method in ("get", "delete"):
                assert "404" in answers, (method, path)
    assert {"401", "403", "429"} <= set(document["paths"]["/v1/whoami"]["get"]["responses"])
    assert "409" in document["paths"]["/v1/keys/{key_id}"]["delete"]["responses"]
    # the rules the API enforces are in the schemas
    status = next(
        p for p in document["paths"]["/v1/jobs"]["get"]["parameters"] if p["name"] == "status"
    )
    assert {"$ref": "#/components/schemas/Status"} in status["schema"]["anyOf"]
    assert "queued" in document["components"]["schemas"]["Status"]["enum"]
    project = document["components"]["schemas"]["ProjectIn"]["properties"]["name"]
    assert re.fullmatch(project["pattern"], "my-project")
    assert not re.fullmatch(project["pattern"], "My Project")


async def test_unknown_status_and_bad_json_types_are_400(api: Api) -> None:
    error_of(await api.request("GET", "/v1/jobs?status=q", api.admin), 400, "invalid_input")
    bad_type = await api.request("POST", "/v1/jobs", api.admin, json={"command": "echo"})
    error_of(bad_type, 400, "invalid_input")
    not_a_bool = await api.request(
        "POST", "/v1/jobs", api.admin, json={"command": ["true"], "network": 0}
    )
    assert "network" in error_of(not_a_bool, 400, "invalid_input")["message"]


async def test_405_names_every_method_the_path_has(api: Api) -> None:
    answer = await api.request("PUT", "/v1/functions/echo", api.admin)
    assert answer.status_code == 405
    assert {m.strip() for m in answer.headers["allow"].split(",")} == {"GET", "PATCH", "DELETE"}
    answer = await api.request("DELETE", "/v1/functions", api.admin)
    assert {m.strip() for m in answer.headers["allow"].split(",")} == {"GET", "POST"}


# --- lifecycle ---------------------------------------------------------------------------


async def test_close_returns_promptly_right_after_an_async_invoke(settings: Settings) -> None:
    """Shutting down (`pratai serve` on SIGTERM) just after work was queued must not hang."""
    platform = Platform.assemble(settings)
    admin = await platform.start()
    closing: asyncio.Future[None] | None = None
    try:
        transport = httpx.ASGITransport(app=platform.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://pratai.test") as client:
            headers = {"Authorization": f"Bearer {admin}"}
            files = {"file": ("package.zip", ECHO, "application/zip")}
            created = await client.post(
                "/v1/functions", headers=headers, data={"name": "echo"}, files=files
            )
            assert created.status_code == 201
            queued = await client.post("/v1/functions/echo/invoke?async=true", headers=headers)
            assert queued.status_code == 202
        closing = asyncio.ensure_future(platform.close())
        done, _ = await asyncio.wait({closing}, timeout=10)
        assert done, "Platform.close() did not return within 10 s"
    finally:
        if closing is None:
            await platform.close()
        elif not closing.done():
            await platform.node.close()  # cancel the workers again so the close can finish
            await closing


async def test_close_returns_promptly_while_a_job_runs(settings: Settings) -> None:
    """A running job is killed at shutdown, and its job stays queued-or-running in the store
    (so the next start runs it again) instead of holding the shutdown."""
    platform = Platform.assemble(settings)
    admin = await platform.start()
    closing: asyncio.Future[None] | None = None
    try:
        transport = httpx.ASGITransport(app=platform.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://pratai.test") as client:
            headers = {"Authorization": f"Bearer {admin}"}
            job = await client.post(
                "/v1/jobs", headers=headers, json={"command": ["sh", "-c", "echo up; sleep 60"]}
            )
            assert job.status_code == 202
            job_id = job.json()["id"]

            async def printed() -> dict[str, Any] | None:
                answer = await client.get(f"/v1/jobs/{job_id}", headers=headers)
                shown: dict[str, Any] = answer.json()
                return shown if shown["stdout"] else None

            shown = await wait_for_async(printed, timeout=20, what="the job to print")
            assert shown["status"] == "running" and shown["stdout"] == "up\n"
        closing = asyncio.ensure_future(platform.close())
        done, _ = await asyncio.wait({closing}, timeout=10)
        assert done, "Platform.close() did not return within 10 s"
        closing.result()
    finally:
        if closing is None:
            await platform.close()
    store = SqlStore(settings.store_url)
    await store.open()
    try:
        stored = await store.get_job(job_id)
        assert stored is not None and stored.status == "running"
    finally:
        await store.close()
