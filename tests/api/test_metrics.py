"""GET /metrics after known work: the counts, who may read them, and bounded labels."""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from pratai.metrics import CONTENT_TYPE, Metrics
from pratai.metrics_port import MetricsPort
from pratai.server import Platform
from pratai.settings import Settings
from tests.helpers import free_port, make_zip, nats_servers, wait_for_async

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
        assert (await http.request("BREW", "/v1/functions", headers=auth)).status_code == 405
        answer = await http.get("/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        found = samples(answer.text)
        assert "_created" not in answer.text  # no second series of creation times

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
    # any method name a client sends would be a new series: the unknown ones are "other"
    assert value(found, "pratai_http_requests_total", method="other", route="/v1/functions",
                 status="4xx") == 1  # fmt: skip
    assert value(found, "pratai_warm_instances", state="idle") == 1
    assert value(found, "pratai_node_memory_budget_bytes") == made.settings.node_memory_mb * 2**20
    # bounded labels: no ids, keys or raw paths
    assert admin.split(".")[0] not in answer.text and "nothing-here" not in answer.text
    assert "BREW" not in answer.text

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


async def scrape(made: Platform) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with client(made) as http:
        answer = await http.get("/metrics")
        assert answer.status_code == 200, answer.text
        return samples(answer.text)


async def deploy(http: httpx.AsyncClient, auth: dict[str, str], name: str) -> None:
    files = {"file": ("f.zip", make_zip({"main.py": SOURCE}), "application/zip")}
    made = await http.post("/v1/functions", data={"name": name}, files=files, headers=auth)
    assert made.status_code == 201, made.text


async def test_the_queue_depth_then_the_wait_once_a_node_takes_the_work(
    platform: tuple[Platform, str],
) -> None:
    """With its node stopped, async work piles up in the queue; once the node is back it
    drains, and each run counts its wait."""
    made, admin = platform
    auth = {"Authorization": f"Bearer {admin}"}
    await made.node.close()  # the node takes nothing from the queue now
    await made.job_runner.close()
    async with client(made) as http:
        await deploy(http, auth, "later")
        for n in range(3):
            accepted = await http.post("/v1/functions/later/invoke?async=true", json={"n": n},
                                       headers=auth)  # fmt: skip
            assert accepted.status_code == 202, accepted.text
        job = await http.post("/v1/jobs", json={"command": ["true"]}, headers=auth)
        assert job.status_code == 202, job.text
    found = await scrape(made)
    assert value(found, "pratai_invocations_queued", project="default") == 3
    assert value(found, "pratai_invocations_running", project="default") == 0
    assert value(found, "pratai_jobs_queued", project="default") == 1

    made.node.start(made.broker, made.services.invocations)
    made.job_runner.start(made.broker, made.services.jobs)

    async def drained() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        found = await scrape(made)
        done = value(found, "pratai_invocations_total", project="default", function="later",
                     status="succeeded", trigger="async")  # fmt: skip
        ended = value(found, "pratai_jobs_total", project="default", status="succeeded")
        return found if done == 3 and ended == 1 else None

    found = await wait_for_async(drained, timeout=60, what="the queue to drain")
    assert value(found, "pratai_invocations_queued", project="default") == 0  # still there, at 0
    assert value(found, "pratai_jobs_queued", project="default") == 0
    wait = "pratai_invocation_queue_wait_seconds"
    assert value(found, f"{wait}_count", project="default", function="later") == 3
    assert value(found, f"{wait}_sum", project="default", function="later") > 0
    assert value(found, "pratai_node_calls_total", status="succeeded") == 3


async def test_timer_firings_are_counted_once_a_tick(platform: tuple[Platform, str]) -> None:
    made, admin = platform
    auth = {"Authorization": f"Bearer {admin}"}
    async with client(made) as http:
        await deploy(http, auth, "ticking")
        timer = {"function": "ticking", "event": "timer", "frequency": 1.0}
        created = await http.post("/v1/triggers", json=timer, headers=auth)
        assert created.status_code == 201, created.text
    a_minute_on = time.time() + 61  # the first tick is due a minute after the trigger's creation
    assert await made.scheduler.tick(a_minute_on) == 1
    assert await made.scheduler.tick(a_minute_on + 1) == 0  # the same tick: not again
    found = await scrape(made)
    assert value(found, "pratai_timer_firings_total", project="default") == 1


async def test_connectors_up_or_down_and_the_messages_they_forward(
    platform: tuple[Platform, str], tmp_path: Path
) -> None:
    import nats

    made, admin = platform
    auth = {"Authorization": f"Bearer {admin}"}
    with nats_servers(tmp_path) as (server,):
        async with client(made) as http:
            for name, url in (("orders", server.url), ("nowhere", "nats://127.0.0.1:9")):
                body = {"name": name, "kind": "nats", "url": url, "topic": "incoming",
                        "options": {"subject": "shop.orders"}}  # fmt: skip
                created = await http.post("/v1/connectors", json=body, headers=auth)
                assert created.status_code == 201, created.text

        async def up() -> bool:
            found = await scrape(made)
            return value(found, "pratai_connector_up", project="default", connector="orders",
                         kind="nats") == 1  # fmt: skip

        await wait_for_async(up, what="the orders connector to connect")
        nc = await nats.connect(server.url)
        for n in range(3):
            await nc.publish("shop.orders", str(n).encode())
        await nc.flush()
        await nc.close()

        async def forwarded() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
            found = await scrape(made)
            count = value(found, "pratai_connector_messages_total", project="default",
                          connector="orders")  # fmt: skip
            return found if count == 3 else None

        found = await wait_for_async(forwarded, what="3 messages forwarded")
        down = {"project": "default", "connector": "nowhere", "kind": "nats"}
        assert ("pratai_connector_up", tuple(sorted(down.items()))) in found  # listed...
        assert value(found, "pratai_connector_up", **down) == 0  # ... as down
        async with client(made) as http:
            await http.delete("/v1/connectors/nowhere", headers=auth)
        gone = await scrape(made)
        assert ("pratai_connector_up", tuple(sorted(down.items()))) not in gone


async def test_metrics_off_serves_nothing_and_counts_nothing(
    tmp_path: Path, assemble: Callable[[Settings], Platform]
) -> None:
    off = Settings.from_env({"PRATAI_HOME": str(tmp_path / "off"), "PRATAI_METRICS": "off"})
    made = assemble(off)
    admin = await made.start()
    assert admin is not None and made.services.metrics is None
    try:
        async with client(made) as http:
            await deploy(http, {"Authorization": f"Bearer {admin}"}, "quiet")
            assert (await http.get("/metrics")).status_code == 404
    finally:
        await made.close()


async def test_a_port_of_its_own_answers_by_the_same_rule(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What a scheduler or node run apart serves on PRATAI_METRICS_PORT; a reading that fails
    does not fail the scrape."""
    port = free_port()
    env = {"PRATAI_HOME": str(tmp_path), "PRATAI_METRICS_PORT": str(port)}
    metrics = Metrics()
    metrics.node_calls.labels("succeeded").inc(2)

    async def broken() -> None:
        raise RuntimeError("the store is away")

    metrics.samplers.append(broken)
    for token in ("", "s3cret-token"):
        served = MetricsPort(Settings.from_env({**env, "PRATAI_METRICS_TOKEN": token}), metrics)
        await served.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                right = {"Authorization": f"Bearer {token}"} if token else {}
                answer = await http.get("/metrics", headers=right)
                assert answer.status_code == 200
                assert answer.headers["content-type"] == CONTENT_TYPE
                found = samples(answer.text)
                assert value(found, "pratai_node_calls_total", status="succeeded") == 2
                if token:
                    assert (await http.get("/metrics")).status_code == 401
                    wrong = {"Authorization": "Bearer nope"}
                    assert (await http.get("/metrics", headers=wrong)).status_code == 401
                assert (await http.get("/", headers=right)).status_code == 404
                assert (await http.post("/metrics", headers=right)).status_code == 405
            taken = MetricsPort(Settings.from_env({**env, "PRATAI_METRICS_TOKEN": token}), metrics)
            await taken.start()  # the port is in use: said, not fatal
            assert f"metrics not served on port {port}" in caplog.text
        finally:
            await served.close()
    assert "a metrics reading failed" in caplog.text
