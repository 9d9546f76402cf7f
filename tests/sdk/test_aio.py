"""`pratai.AsyncClient`, against a real server."""

from __future__ import annotations

import asyncio
import os
import time
import traceback
from pathlib import Path

import pytest

import pratai
from tests.helpers import wait_for_async

pytestmark = pytest.mark.asyncio(loop_scope="function")


def double(x: int) -> int:
    return 2 * x


def fail(message: str) -> None:
    raise KeyError(message)


async def test_submit_and_result(aclient: pratai.AsyncClient) -> None:
    base = 40

    job = await aclient.submit(lambda x: x + base, 2)
    assert isinstance(job, pratai.AsyncJob) and job.id
    assert await job.result(timeout=60) == 42
    assert job.status == "succeeded"
    again = await aclient.get_job(job.id)
    assert await again.result() == 42
    assert job.id in {j.id for j in await aclient.list_jobs(status="succeeded", limit=1000)}


async def test_many_jobs_at_once(aclient: pratai.AsyncClient) -> None:
    jobs = await asyncio.gather(*(aclient.submit(double, i) for i in range(20)))
    assert await asyncio.gather(*(j.result() for j in jobs)) == [2 * i for i in range(20)]


async def test_remote_exception(aclient: pratai.AsyncClient) -> None:
    job = await aclient.submit(fail, "missing")
    with pytest.raises(KeyError, match="missing") as caught:
        await job.result()
    assert "in fail" in "".join(traceback.format_exception(caught.value))


async def test_map(aclient: pratai.AsyncClient) -> None:
    assert await aclient.map(double, range(500)) == [2 * i for i in range(500)]
    with pytest.raises(ZeroDivisionError):
        await aclient.map(lambda x: 1 / x, [1, 0, 2], chunksize=1)


def slow_echo(x: int) -> int:
    time.sleep(30)
    return x


async def test_a_map_that_gives_up_cancels_its_jobs(aclient: pratai.AsyncClient) -> None:
    """Jobs whose results nobody will read are cancelled on the server, as the blocking map's."""
    before = {j.id for j in await aclient.list_jobs(limit=1000)}
    with pytest.raises(TimeoutError):
        await aclient.map(slow_echo, range(3), chunksize=1, timeout=2)

    async def statuses() -> list[str] | None:
        found = [j.status for j in await aclient.list_jobs(limit=1000) if j.id not in before]
        return found if found == ["cancelled"] * 3 else None

    await wait_for_async(statuses, timeout=30, what="the map's three jobs to be cancelled")


async def test_submit_with_options_and_cancel(aclient: pratai.AsyncClient) -> None:
    def slow() -> None:
        import time

        time.sleep(30)

    job = await aclient.submit_with(slow, timeout_s=60, memory_mb=128)
    with pytest.raises(TimeoutError):
        await job.result(timeout=0.1)
    assert await job.cancel()
    assert (await job.refresh())["status"] == "cancelled"


async def test_runtime_mismatch(server) -> None:
    async with pratai.AsyncClient(server.url, server.api_key, python="3.99") as other:
        with pytest.raises(pratai.RuntimeMismatch):
            await other.submit(double, 1)


async def test_functions_and_events(aclient: pratai.AsyncClient, tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "main.py").write_text("def main(p):\n    return {'twice': p['n'] * 2}\n")
    name = f"async-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    fn = await aclient.functions.create(name, path=folder, memory=128)
    assert fn["state"] == "ready"
    assert name in {f["name"] for f in await aclient.functions.list()}
    assert await aclient.functions.invoke(name, {"n": 4}) == {"twice": 8}
    inv = await aclient.functions.invoke_async(name, {"n": 5})
    assert await inv.result(timeout=30) == {"twice": 10}
    assert await aclient.events.publish(f"topic-{name}", {"id": 1})
