"""`client.map` and `client.executor()`, against a real server."""

from __future__ import annotations

import concurrent.futures
import socket
import traceback
from collections.abc import Iterator

import pytest

import pratai
from pratai.sdk.executor import JobFuture, auto_chunksize
from pratai.settings import Settings
from tests.helpers import Server, wait_for


def square(x: int) -> int:
    return x * x


def inverse(x: int) -> float:
    return 1 / x


def test_map_over_1000_items_is_ordered_and_chunked(client: pratai.Client) -> None:
    before = {j.id for j in client.list_jobs(limit=1000)}
    assert list(client.map(square, range(1000))) == [x * x for x in range(1000)]
    # auto chunking: 1000 items with 32 in flight is 125 jobs of 8, not 1000 jobs
    created = {j.id for j in client.list_jobs(limit=1000)} - before
    assert len(created) == -(-1000 // auto_chunksize(1000, 32))


def test_map_with_several_iterables_and_a_chunksize(client: pratai.Client) -> None:
    results = client.map(pow, [2, 3, 4], [5, 2, 0], chunksize=2)
    assert list(results) == [32, 9, 1]


def test_map_raises_an_items_exception_when_iteration_reaches_it(client: pratai.Client) -> None:
    results = client.map(inverse, [1, 2, 0, 4], chunksize=1)
    assert next(results) == 1.0
    assert next(results) == 0.5
    with pytest.raises(ZeroDivisionError) as caught:
        next(results)
    assert "Remote traceback" in "".join(traceback.format_exception(caught.value))


def _fail_first(i: int) -> int:
    import time

    if i == 0:
        raise ValueError("first")
    time.sleep(60)
    return i


def test_leaving_a_map_early_cancels_its_other_jobs(client: pratai.Client) -> None:
    before = {j.id for j in client.list_jobs(limit=1000)}
    results = client.map(_fail_first, range(4), chunksize=1)
    with pytest.raises(ValueError, match="first"):
        next(results)
    created = [j for j in client.list_jobs(limit=1000) if j.id not in before]
    statuses = sorted(j.wait(timeout=60) for j in created)
    assert len(created) >= 2
    assert statuses == ["cancelled"] * (len(created) - 1) + ["succeeded"]


def test_executor_futures(client: pratai.Client) -> None:
    offset = 7
    with client.executor(max_workers=8) as ex:
        futures = [ex.submit(lambda x: x + offset, x) for x in range(40)]
        assert all(isinstance(f, concurrent.futures.Future) for f in futures)
        done = concurrent.futures.as_completed(futures, timeout=120)
        assert sorted(f.result() for f in done) == [x + offset for x in range(40)]
        failing = ex.submit(inverse, 0)
        assert isinstance(failing.exception(timeout=60), ZeroDivisionError)
        assert list(ex.map(square, range(10), chunksize=3)) == [x * x for x in range(10)]


def test_executor_shutdown_waits_for_the_futures(client: pratai.Client) -> None:
    ex = client.executor(max_workers=4)
    futures = [ex.submit(square, x) for x in range(10)]
    ex.shutdown(wait=True)
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [x * x for x in range(10)]
    with pytest.raises(RuntimeError):
        ex.submit(square, 1)


def _wait_on(port: int) -> str:
    """Blocks until the test lets it go (closes its socket)."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=120) as conn:
            conn.recv(1)
    except OSError:
        pass
    return "released"


@pytest.fixture
def blocked_pool(client: pratai.Client, server: Server) -> Iterator[list[pratai.Job]]:
    """Every instance the node runs for jobs with network=True (and the default memory and no
    requirements) busy with a job that waits on a socket of this test: the next such job
    stays queued until the test lets them go."""
    slots = Settings.from_env(server.env).default_concurrency
    gate = socket.create_server(("127.0.0.1", 0), backlog=slots * 2)
    port = gate.getsockname()[1]
    fillers = [
        client.submit_with(_wait_on, (port,), network=True, timeout_s=120) for _ in range(slots)
    ]
    try:
        wait_for(
            lambda: all(f.refresh()["status"] == "running" for f in fillers),
            timeout=120,
            what="every filler job to run",
        )
        yield fillers
    finally:
        gate.close()  # the fillers' connections are reset: they finish
        for filler in fillers:
            filler.wait(timeout=120)


def test_executor_cancels_a_queued_job_server_side(
    client: pratai.Client, blocked_pool: list[pratai.Job]
) -> None:
    with client.executor(max_workers=2, network=True) as ex:
        future = ex.submit(square, 3)
        assert isinstance(future, JobFuture)
        job = wait_for(lambda: future.job, what="the job to be created")
        assert job.status == "queued"
        assert future.cancel() is True
        assert future.cancelled()
        with pytest.raises(concurrent.futures.CancelledError):
            future.result()
        assert client.get_job(job.id).status == "cancelled"

        queued = ex.submit(square, 4)
        wait_for(lambda: queued.job, what="the second job to be created")
        ex.shutdown(wait=False, cancel_futures=True)
        assert queued.cancelled()
    assert client.get_job(queued.job.id).status == "cancelled"
    assert all(f.refresh()["status"] == "running" for f in blocked_pool)  # they never moved


def test_a_finished_future_cannot_be_cancelled(client: pratai.Client) -> None:
    with client.executor(max_workers=1) as ex:
        future = ex.submit(square, 5)
        assert future.result(timeout=60) == 25
        assert future.cancel() is False
