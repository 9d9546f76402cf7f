"""What only NatsArtifacts does: machines (here: stores with caches of their own) share blobs
through one bucket, a corrupted cached copy is never handed out, a get outlives a restart of
the server, and an outage longer than `retry_s` ends in Unavailable. The ArtifactStore contract
itself is in tests/contracts/test_artifacts_contract.py."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js import JetStreamContext, api

from pratai.artifacts.nats import CHUNK, NatsArtifacts
from pratai.errors import NotFound, Unavailable
from tests.helpers import NatsServer, nats_servers, wait_for

# a server restarting: noticed and ridden out in about a second
QUICK: dict[str, Any] = {"request_s": 1.0, "reconnect_wait_s": 0.1}


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with nats_servers(tmp_path_factory.mktemp("nats")) as servers:
        yield servers[0].url


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of the test's own, to restart or stop."""
    with nats_servers(tmp_path) as (one,):
        yield one


class Machines:
    """NatsArtifacts on one bucket, each with a cache folder of its own; closed after."""

    def __init__(self, url: str, root: Path) -> None:
        self.url = url
        self.root = root
        self.bucket = f"t{uuid.uuid4().hex[:12]}"
        self.opened: list[NatsArtifacts] = []

    def new(self, **options: Any) -> NatsArtifacts:
        cache = self.root / f"cache-{len(self.opened)}"
        store = NatsArtifacts([self.url], cache, bucket=self.bucket, **{**QUICK, **options})
        self.opened.append(store)
        return store

    def close(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture
def machines(nats_url: str, tmp_path: Path) -> Iterator[Machines]:
    m = Machines(nats_url, tmp_path)
    try:
        yield m
    finally:
        m.close()


@pytest.fixture
def machines_on_own_server(server: NatsServer, tmp_path: Path) -> Iterator[Machines]:
    m = Machines(server.url, tmp_path)
    try:
        yield m
    finally:
        m.close()


def stream_info(machines: Machines) -> api.StreamInfo:
    """The bucket's stream, as the server has it."""

    async def info() -> api.StreamInfo:
        nc = await nats.connect(machines.url)
        try:
            return await nc.jetstream().stream_info(f"OBJ_{machines.bucket}")
        finally:
            await nc.close()

    return asyncio.run(info())


def test_what_one_machine_puts_another_gets(machines: Machines) -> None:
    a, b, c = machines.new(), machines.new(), machines.new()
    data = os.urandom(300_000)
    digest = a.put(data)
    assert b.get(digest) == data
    assert c.path(digest).read_bytes() == data
    assert c.path(digest).is_relative_to(c.cache.root)
    b.delete(digest)
    with pytest.raises(NotFound):
        machines.new().get(digest)
    assert stream_info(machines).state.messages == 1  # its chunks purged; a deleted mark


def test_a_20_mb_blob_roundtrips(machines: Machines) -> None:
    a, b = machines.new(), machines.new()
    data = os.urandom(20 * 1024 * 1024)
    digest = a.put(data)
    assert b.get(digest) == data
    assert b.path(digest).read_bytes() == data
    assert [p.name for p in b.path(digest).parent.iterdir()] == [digest[2:]]  # no temp files


def test_threads_of_one_machine_get_one_blob_at_once(machines: Machines) -> None:
    data = os.urandom(2_000_000)
    digest = machines.new().put(data)
    b = machines.new()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: b.get(digest), range(8)))
    assert all(blob == data for blob in got)


def test_the_blobs_are_objects_other_nats_clients_read(machines: Machines) -> None:
    data = os.urandom(500_000)
    a = machines.new(replicas=1)
    digest = a.put(data)

    async def read() -> bytes | None:
        nc = await nats.connect(machines.url)
        try:
            objects = await nc.jetstream().object_store(machines.bucket)
            return (await objects.get(digest)).data
        finally:
            await nc.close()

    got = asyncio.run(read())
    assert got == data
    config = stream_info(machines).config
    assert (config.storage, config.num_replicas) == (api.StorageType.FILE, 1)


def test_a_corrupted_cached_copy_is_fetched_again(machines: Machines) -> None:
    a = machines.new()
    data = os.urandom(200_000)
    digest = a.put(data)
    cached = a.cache.location(digest)
    for read in (a.get, lambda d: a.path(d).read_bytes()):
        cached.write_bytes(b"x" * len(data))  # the same size, other bytes
        assert read(digest) == data
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == digest


def test_a_get_outlives_a_restart_of_the_server(
    machines_on_own_server: Machines, server: NatsServer
) -> None:
    """kill -9 between a put and a get (by another machine): the get, made while the server is
    away, returns the blob once it is back on the same store folder."""
    a, b = machines_on_own_server.new(), machines_on_own_server.new()
    data = os.urandom(1_000_000)
    digest = a.put(data)
    b.open()
    server.kill()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        got = pool.submit(b.get, digest)
        wait_for(lambda: b._operations, timeout=10, what="the get to be under way")
        assert not got.done()
        server.start()
        assert got.result(timeout=30) == data
    assert a.put(data) == digest  # and puts work again


class Restart:
    """Restarts the server (kill -9, then the same port and store) as the `at`-th call of a
    nats-py method the test patches starts, and counts the calls that `counts`."""

    def __init__(
        self, server: NatsServer, at: int, counts: Callable[[dict[str, Any]], bool]
    ) -> None:
        self.server = server
        self.at = at
        self.counts = counts
        self.calls = 0
        self.starting: threading.Thread | None = None

    def wrap(self, real: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def call(js: JetStreamContext, *args: Any, **kwargs: Any) -> Any:
            if self.counts(kwargs):
                self.calls += 1
                if self.calls == self.at:
                    self.server.kill()
                    self.starting = threading.Thread(target=self.server.start)
                    self.starting.start()
            return await real(js, *args, **kwargs)

        return call

    def join(self) -> None:
        assert self.starting is not None, "the transfer ended before the restart"
        self.starting.join()


def test_a_download_cut_by_a_restart_resumes_at_its_chunk(
    machines_on_own_server: Machines, server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = machines_on_own_server.new(), machines_on_own_server.new()
    data = os.urandom(40 * CHUNK)
    digest = a.put(data)
    restart = Restart(server, at=10, counts=lambda kwargs: bool(kwargs.get("next")))
    monkeypatch.setattr(JetStreamContext, "get_msg", restart.wrap(JetStreamContext.get_msg))
    assert b.get(digest) == data
    restart.join()
    assert restart.calls < 40 + 5  # each chunk asked for about once: not from the start again


def test_an_upload_cut_by_a_restart_resumes_at_its_chunk(
    machines_on_own_server: Machines, server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = machines_on_own_server.new(), machines_on_own_server.new()
    data = os.urandom(40 * CHUNK)
    chunks = f"$O.{machines_on_own_server.bucket}.C."
    restart = Restart(server, at=10, counts=lambda kwargs: True)
    real = JetStreamContext.publish

    async def publish(js: JetStreamContext, subject: str, *args: Any, **kw: Any) -> Any:
        call = restart.wrap(real) if subject.startswith(chunks) else real
        return await call(js, subject, *args, **kw)

    monkeypatch.setattr(JetStreamContext, "publish", publish)
    digest = a.put(data)
    restart.join()
    assert restart.calls < 40 + 5
    assert b.get(digest) == data
    assert stream_info(machines_on_own_server).state.messages == 40 + 1  # each chunk once, a meta


def test_nats_gone_for_good_is_unavailable_within_retry_s(
    machines_on_own_server: Machines, server: NatsServer
) -> None:
    a = machines_on_own_server.new(retry_s=2.0, request_s=0.5)
    b = machines_on_own_server.new(retry_s=2.0, request_s=0.5)
    never_opened = machines_on_own_server.new(retry_s=2.0, request_s=0.5)
    data = os.urandom(100_000)
    digest = a.put(data)
    b.open()
    server.kill()
    a.cache.location(digest).write_bytes(b"junk")  # a's copy corrupted: nothing to serve
    bound = 2.0 + 0.5 + 1.5  # retry_s, the request under way, leeway
    for call in (
        lambda: b.get(digest),
        lambda: a.get(digest),
        lambda: b.put(b"new"),
        lambda: never_opened.get(digest),
    ):
        started = time.monotonic()
        with pytest.raises(Unavailable, match="NATS"):
            call()
        assert time.monotonic() - started < bound
    # threads that ask at once while it cannot connect wait one retry_s, not one each
    late = machines_on_own_server.new(retry_s=2.0, request_s=0.5)
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        gets = [pool.submit(late.get, digest) for _ in range(4)]
        for get in gets:
            with pytest.raises(Unavailable, match="cannot reach NATS"):
                get.result(timeout=30)
    assert time.monotonic() - started < bound
