"""The Invocations service with a real store, the embedded broker and a real node (bubblewrap
sandboxes): sync and async invocations, crash recovery, limits and logs. The node's workers are
not started, so each test takes deliveries from the broker itself."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from pratai.artifacts.filesystem import FilesystemArtifacts
from pratai.broker.base import Delivery
from pratai.broker.embedded import EmbeddedBroker
from pratai.core.functions import DeploySpec, FunctionOptions, Functions
from pratai.core.invocations import INVOCATIONS_QUEUE, Invocations, decode_result
from pratai.core.models import (
    BuildState,
    Function,
    FunctionVersion,
    Invocation,
    Project,
    Status,
    new_id,
    now,
)
from pratai.core.ports import Store
from pratai.core.tenants import Tenants
from pratai.core.workspace import Workspace
from pratai.drivers.process import ProcessDriver
from pratai.errors import Conflict, NotFound, PayloadTooLarge
from pratai.node.agent import Node
from pratai.settings import Settings
from pratai.store import open_store
from tests.helpers import code, make_zip, wait_for_async

pytestmark = [
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed"),
    pytest.mark.asyncio(loop_scope="function"),
]

PAYLOAD_LIMIT = 1024
COUNTER = code("""
    calls = 0

    def main(payload):
        global calls
        calls += 1
        return {"calls": calls, "payload": payload}
""")
PRINTER = code("""
    import sys

    def main(payload):
        print("out", payload)
        print("err", payload, file=sys.stderr)
        return payload
""")


@dataclass
class Env:
    store: Store
    broker: EmbeddedBroker
    functions: Functions
    invocations: Invocations
    project: Project

    async def deploy(self, name: str, source: str) -> Function:
        package = make_zip({"main.py": source})
        view = await self.functions.deploy(self.project, DeploySpec(name=name, package=package))
        assert view.state == BuildState.READY
        return view.function

    async def next_delivery(self, timeout: float = 5.0) -> Delivery:
        deliveries = self.broker.consume(INVOCATIONS_QUEUE, lease_s=60)
        try:
            return await asyncio.wait_for(anext(deliveries), timeout)
        finally:
            await deliveries.aclose()

    async def stored(self, invocation_id: str) -> Invocation:
        found = await self.store.get_invocation_by_id(invocation_id)
        assert found is not None
        return found


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    s = Settings.from_env(
        {"PRATAI_HOME": str(tmp_path / "home"), "PRATAI_MAX_PAYLOAD_BYTES": str(PAYLOAD_LIMIT)}
    )
    yield s
    if not s.sandbox_dir.is_relative_to(s.home):
        shutil.rmtree(s.sandbox_dir, ignore_errors=True)


@pytest_asyncio.fixture(loop_scope="function")
async def env(settings: Settings) -> AsyncIterator[Env]:
    workspace = Workspace(settings, FilesystemArtifacts(settings.artifacts_dir))
    store = open_store(f"sqlite:///{settings.home / 'pratai.sqlite3'}")
    broker = EmbeddedBroker(str(settings.home / "broker.sqlite3"))
    await store.open()
    await broker.open()
    node = Node(settings, ProcessDriver(settings), workspace)
    functions = Functions(settings, store, workspace, evictor=node)
    invocations = Invocations(settings, store, broker, executor=node)
    functions.listeners.append(invocations.forget)
    try:
        project = await Tenants(store).ensure_project()
        yield Env(store, broker, functions, invocations, project)
    finally:
        await node.close()
        await functions.wait_built()
        await broker.close()
        await store.close()


async def test_sync_invoke_runs_and_records_the_outcome(env: Env) -> None:
    await env.deploy("counter", COUNTER)
    done = await env.invocations.invoke(env.project, "counter", b'{"n": 1}')
    assert done.status == Status.SUCCEEDED and done.mode == "sync"
    assert decode_result(done) == {"calls": 1, "payload": {"n": 1}}
    assert done.cold_start is True and done.finished_at is not None

    stored = await env.stored(done.id)
    assert stored.status == Status.SUCCEEDED and decode_result(stored) == decode_result(done)
    assert stored.payload == b'{"n": 1}'  # kept: the console shows it and runs it again
    assert (await env.invocations.get(env.project, done.id)).id == done.id


async def test_again_queues_a_new_run_with_the_same_input(env: Env) -> None:
    await env.deploy("counter", COUNTER)
    done = await env.invocations.invoke(env.project, "counter", b'{"n": 5}')
    again = await env.invocations.again(env.project, done.id)
    assert again.id != done.id and (again.mode, again.status) == ("async", Status.QUEUED)
    assert (await env.stored(again.id)).payload == b'{"n": 5}'
    ran = await env.invocations.run_queued(again.id)
    assert ran is not None and decode_result(ran) == {"calls": 2, "payload": {"n": 5}}
    other = Project(id=new_id(), name="other")
    with pytest.raises(NotFound):
        await env.invocations.again(other, done.id)


async def test_changed_settings_get_fresh_instances(env: Env) -> None:
    await env.deploy("counter", COUNTER)
    first = await env.invocations.invoke(env.project, "counter", b"{}")
    warm = await env.invocations.invoke(env.project, "counter", b"{}")
    assert (first.cold_start, warm.cold_start) == (True, False)
    assert decode_result(warm)["calls"] == 2

    await env.functions.update(env.project, "counter", None, FunctionOptions(memory_mb=256))
    after = await env.invocations.invoke(env.project, "counter", b"{}")
    assert after.cold_start is True and decode_result(after)["calls"] == 1


async def test_submit_stores_queued_and_publishes_the_id(env: Env) -> None:
    await env.deploy("counter", COUNTER)
    queued = await env.invocations.submit(env.project, "counter", b'{"n": 2}')
    assert queued.status == Status.QUEUED and queued.mode == "async"

    stored = await env.stored(queued.id)
    assert stored.status == Status.QUEUED and stored.version == 1
    assert stored.payload == b'{"n": 2}'  # durable: a node can run it after a crash

    delivery = await env.next_delivery()
    assert delivery.body == queued.id.encode()
    assert delivery.id == queued.id and delivery.attempts == 1
    await env.broker.ack(delivery)


async def test_run_queued_runs_once_and_is_idempotent(env: Env) -> None:
    await env.deploy("counter", COUNTER)
    queued = await env.invocations.submit(env.project, "counter", b'{"n": 3}')

    done = await env.invocations.run_queued(queued.id)
    assert done is not None and done.status == Status.SUCCEEDED
    assert decode_result(done) == {"calls": 1, "payload": {"n": 3}}
    stored = await env.stored(queued.id)
    assert stored.status == Status.SUCCEEDED and stored.started_at is not None
    assert decode_result(stored) == {"calls": 1, "payload": {"n": 3}}

    again = await env.invocations.run_queued(queued.id)  # e.g. a redelivered message
    assert again is not None and again.status == Status.SUCCEEDED
    assert decode_result(again) == decode_result(stored)
    assert again.finished_at == stored.finished_at
    # the handler did not run a second time: the warm instance has served one call so far
    follow_up = await env.invocations.invoke(env.project, "counter", b"null")
    assert decode_result(follow_up)["calls"] == 2

    assert await env.invocations.run_queued(new_id()) is None


async def test_run_queued_after_the_function_was_deleted(env: Env) -> None:
    await env.deploy("counter", COUNTER)
    queued = await env.invocations.submit(env.project, "counter", b"{}")
    await env.functions.delete(env.project, "counter")
    # the invocation went with its function: a node that gets the message has nothing to run
    assert await env.invocations.run_queued(queued.id) is None
    with pytest.raises(NotFound):
        await env.invocations.get(env.project, queued.id)


async def test_recover_requeues_async_work_and_fails_sync_work(env: Env) -> None:
    function = await env.deploy("counter", COUNTER)

    def record(mode: str, status: Status, **kw: object) -> Invocation:
        return Invocation(
            id=new_id(),
            project_id=env.project.id,
            function_id=function.id,
            function_name=function.name,
            version=1,
            mode=mode,
            status=status,
            payload=b'"left over"' if mode == "async" else b"",
            **kw,  # type: ignore[arg-type]
        )

    queued = record("async", Status.QUEUED)
    running = record("async", Status.RUNNING, started_at=now())
    sync = record("sync", Status.RUNNING, started_at=now())
    finished = record("async", Status.SUCCEEDED, result="1", finished_at=now())
    for inv in (queued, running, sync, finished):
        await env.store.create_invocation(inv)

    assert await env.invocations.recover() == 2

    after_queued, after_running = await env.stored(queued.id), await env.stored(running.id)
    assert (after_queued.status, after_queued.attempt) == (Status.QUEUED, 1)
    assert (after_running.status, after_running.attempt) == (Status.QUEUED, 2)
    after_sync = await env.stored(sync.id)
    assert after_sync.status == Status.FAILED and after_sync.finished_at is not None
    assert after_sync.error is not None and after_sync.error["type"] == "PlatformRestarted"
    assert await env.stored(finished.id) == finished

    bodies = set()
    for _ in range(2):
        delivery = await env.next_delivery()
        bodies.add(delivery.body.decode())
        await env.broker.ack(delivery)
    assert bodies == {queued.id, running.id}

    # the requeued work then completes
    for inv in (queued, running):
        done = await env.invocations.run_queued(inv.id)
        assert done is not None and done.status == Status.SUCCEEDED
        assert decode_result(done)["payload"] == "left over"
    assert (await env.stored(running.id)).attempt == 2


async def test_payload_over_the_limit_is_refused(env: Env) -> None:
    await env.deploy("counter", COUNTER)
    too_big = json.dumps("x" * (PAYLOAD_LIMIT - 1)).encode()  # limit + 1 bytes
    assert len(too_big) == PAYLOAD_LIMIT + 1
    with pytest.raises(PayloadTooLarge, match=str(PAYLOAD_LIMIT)) as refused:
        await env.invocations.invoke(env.project, "counter", too_big)
    assert refused.value.status == 413 and refused.value.details["limit"] == PAYLOAD_LIMIT
    with pytest.raises(PayloadTooLarge):
        await env.invocations.submit(env.project, "counter", too_big)
    assert await env.invocations.recent(env.project) == []  # nothing was recorded

    at_limit = json.dumps("x" * (PAYLOAD_LIMIT - 2)).encode()
    assert len(at_limit) == PAYLOAD_LIMIT
    done = await env.invocations.invoke(env.project, "counter", at_limit)
    assert done.status == Status.SUCCEEDED


async def test_invoking_without_a_ready_version_is_a_conflict(env: Env) -> None:
    # a build that failed: no version was ever ready
    broken = make_zip(
        {
            "main.py": "def main(p):\n    return p\n",
            "requirements.txt": "pratai-no-such-package-zzz==1.0\n",
        }
    )
    await env.functions.deploy(env.project, DeploySpec(name="broken", package=broken))
    await env.functions.wait_built()
    with pytest.raises(Conflict, match="build_failed"):
        await env.invocations.invoke(env.project, "broken", b"{}")
    with pytest.raises(Conflict, match="build_failed"):
        await env.invocations.submit(env.project, "broken", b"{}")

    # a version still building
    package = make_zip({"main.py": "def main(p):\n    return p\n"})
    pending = Function(id=new_id(), project_id=env.project.id, name="pending", latest_version=1)
    await env.store.create_function(
        pending,
        FunctionVersion(
            pending.id, 1, env.functions.workspace.artifacts.put(package), "main.main", None
        ),
    )
    with pytest.raises(Conflict, match="building"):
        await env.invocations.invoke(env.project, "pending", b"{}")

    with pytest.raises(NotFound):
        await env.invocations.invoke(env.project, "nope", b"{}")
    assert await env.invocations.recent(env.project) == []


async def test_logs_oldest_first_and_the_cursor_follows(env: Env) -> None:
    function = await env.deploy("printer", PRINTER)
    first = await env.invocations.invoke(env.project, "printer", b"1")
    second = await env.invocations.invoke(env.project, "printer", b"2")
    # queued work has no output yet and is not listed
    await env.invocations.submit(env.project, "printer", b"99")

    lines, cursor = await env.invocations.logs(env.project, function, None)
    assert [(ln.invocation_id, ln.stream, ln.text) for ln in lines] == [
        (first.id, "stdout", "out 1"),
        (first.id, "stderr", "err 1"),
        (second.id, "stdout", "out 2"),
        (second.id, "stderr", "err 2"),
    ]
    assert cursor is not None and cursor == second.finished_at

    nothing_new, same = await env.invocations.logs(env.project, function, cursor)
    assert nothing_new == [] and same == cursor

    third = await env.invocations.invoke(env.project, "printer", b"3")
    newer, next_cursor = await env.invocations.logs(env.project, function, cursor)
    assert [(ln.invocation_id, ln.text) for ln in newer] == [
        (third.id, "out 3"),
        (third.id, "err 3"),
    ]
    assert next_cursor == third.finished_at and next_cursor is not None and next_cursor > cursor


SLEEPER = code("""
    import time

    def main(payload):
        time.sleep(payload["seconds"])
        return "slept"
""")


async def test_a_quick_sync_call_is_stored_once_with_its_outcome(env: Env) -> None:
    await env.deploy("counter", COUNTER)
    await env.invocations.invoke(env.project, "counter", b"{}")  # the cold start
    writes: list[str] = []
    create, update = env.store.create_invocation, env.store.update_invocation

    async def counted_create(invocation: Invocation) -> None:
        writes.append(f"create {invocation.status}")
        await create(invocation)

    async def counted_update(invocation: Invocation, *, attempt: int | None = None) -> bool:
        writes.append(f"update {invocation.status}")
        return await update(invocation, attempt=attempt)

    env.store.create_invocation = counted_create  # type: ignore[method-assign]
    env.store.update_invocation = counted_update  # type: ignore[method-assign]
    done = await env.invocations.invoke(env.project, "counter", b'{"n": 2}')
    assert writes == ["create succeeded"]
    stored = await env.stored(done.id)
    assert (stored.status, stored.payload) == (Status.SUCCEEDED, b'{"n": 2}')
    assert stored.started_at is not None and stored.finished_at is not None


async def test_a_long_sync_call_shows_as_running_while_it_runs(env: Env) -> None:
    function = await env.deploy("sleeper", SLEEPER)
    await env.invocations.invoke(env.project, "sleeper", b'{"seconds": 0}')  # the cold start
    call = asyncio.ensure_future(
        env.invocations.invoke(env.project, "sleeper", b'{"seconds": 1.5}')
    )

    async def running() -> Invocation | None:
        found = await env.store.list_invocations(env.project.id, function.id, limit=5)
        return next((i for i in found if i.status == Status.RUNNING), None)

    shown = await wait_for_async(running, timeout=1.0, what="the call to show as running")
    assert shown.mode == "sync" and shown.payload == b'{"seconds": 1.5}'
    done = await call
    assert done.id == shown.id and done.status == Status.SUCCEEDED
    assert (await env.stored(done.id)).status == Status.SUCCEEDED
