"""GET /metrics after known work: the counts, who may read them, and bounded labels."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from pratai.server import Platform
from pratai.settings import Settings
from tests.helpers import make_zip

pytestmark = pytest.mark.asyncio(loop_scope="function")

SOURCE = """
def main(payload):
    if payload.get("fail"):
        raise ValueError("asked to")
    return payload
"""


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    s = Settings.from_env({"PRATAI_HOME": str(tmp_path / "home")})
    yield s
    if not s.sandbox_dir.is_relative_to(s.home):
        shutil.rmtree(s.sandbox_dir, ignore_errors=True)


@pytest_asyncio.fixture(loop_scope="function")
async def platform(
    settings: Settings, assemble: Callable[[Settings], Platform]
) -> AsyncIterator[tuple[Platform, str]]:
    made = assemble(settings)
    admin = await made.start()  # ASGITransport runs no lifespan
    assert admin is not None
    try:
        yield made, admin
    finally:
        await made.close()


def client(platform: Platform, host: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=platform.app(), client=(host, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://pratai.test")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:  # fmt: skip
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_the_counts_of_known_work(platform: tuple[Platform, str]) -> None:
    made, admin = platform
    auth = {"Authorization": f"Bearer {admin}"}
    async with client(made) as http:
        package = make_zip({"main.py": SOURCE})
        files = {"file": ("f.zip", package, "application/zip")}
        deployed = await http.post("/v1/functions", data={"name": "echo"}, files=files,
                                   headers=auth)  # fmt: skip
        assert deployed.status_code == 201, deployed.text
        for payload in ({"n": 1}, {"n": 2}, {"fail": True}):
            await http.post("/v1/functions/echo/invoke", json=payload, headers=auth)
        assert (await http.get("/v1/nothing-here", headers=auth)).status_code == 404
        answer = await http.get("/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        found = samples(answer.text)

    fn = {"project": "default", "function": "echo"}
    assert value(found, "pratai_invocations_total", **fn, status="succeeded", trigger="sync") == 2
    assert value(found, "pratai_invocations_total", **fn, status="failed", trigger="sync") == 1
    assert value(found, "pratai_invocation_duration_seconds_count", **fn) == 3
    assert value(found, "pratai_cold_starts_total", **fn) == 1  # then warm
    assert value(found, "pratai_builds_total", state="ready") == 1
    invoke = {"method": "POST", "route": "/v1/functions/{name}/invoke"}
    assert value(found, "pratai_http_requests_total", **invoke, status="2xx") == 3
    assert value(found, "pratai_http_requests_total", method="GET", route="unmatched",
                 status="4xx") == 1  # fmt: skip
    assert value(found, "pratai_warm_instances", state="idle") == 1
    assert value(found, "pratai_node_memory_budget_bytes") == made.settings.node_memory_mb * 2**20
    # bounded labels: no ids, keys or raw paths
    assert admin.split(".")[0] not in answer.text and "nothing-here" not in answer.text

    async with client(made) as http:
        assert (await http.delete("/v1/functions/echo", headers=auth)).status_code == 204
        gone = samples((await http.get("/metrics")).text)
    assert not any(dict(labels).get("function") == "echo" for _, labels in gone)


async def test_metrics_answer_loopback_or_the_bearer_of_the_token(
    platform: tuple[Platform, str], tmp_path: Path, assemble: Callable[[Settings], Platform]
) -> None:
    made, _ = platform
    async with client(made, host="10.1.2.3") as http:
        refused = await http.get("/metrics")
        assert refused.status_code == 403 and "PRATAI_METRICS_TOKEN" in refused.json()["message"]

    guarded = Settings.from_env(
        {"PRATAI_HOME": str(tmp_path / "other"), "PRATAI_METRICS_TOKEN": "s3cret-token"}
    )
    other = assemble(guarded)
    await other.start()
    try:
        async with client(other, host="10.1.2.3") as http:
            assert (await http.get("/metrics")).status_code == 401
            wrong = {"Authorization": "Bearer nope"}
            assert (await http.get("/metrics", headers=wrong)).status_code == 401
            right = {"Authorization": "Bearer s3cret-token"}
            allowed = await http.get("/metrics", headers=right)
            assert allowed.status_code == 200 and "pratai_invocations_total" in allowed.text
    finally:
        await other.close()
