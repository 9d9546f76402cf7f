"""Content-addressed blobs in a NATS JetStream object store, shared by many machines.

One bucket (default `pratai-artifacts`: the stream `OBJ_pratai-artifacts`, file storage,
`replicas` copies) holds each blob as an object named by its sha256 hex digest, in the object
store's own layout (chunks of 128 KiB under `$O.<bucket>.C.<nuid>`, then a meta message under
`$O.<bucket>.M.<name in base64url>`), so `nats object get` and the other clients read them too.

Each machine keeps what it wrote or read in a local cache (a FilesystemArtifacts). `get` and
`path` serve the cache, checking the blob against its digest every time (a corrupted copy is
dropped and fetched again: never handed out), and fetch what is missing, chunk by chunk into a
temp file of the cache, renamed once the whole blob matches its digest: a blob of 1 GB is never
held in memory by a fetch (`get` returns it, so holds it once; `path` does not). `put` stores in
the bucket (nothing to do when the object is there) and in the cache.

Every request waits `request_s` for its answer; a transfer that NATS interrupts (a server
restarting, a reconnect, a replica behind) resumes at the chunk it was at, and an operation
gives up, raising Unavailable, once NATS has let it make no progress for `retry_s`. Chunks are
published with a `Nats-Msg-Id`, so a chunk sent again over a reconnect is stored once.

The methods block: async code calls them through asyncio.to_thread. The nats-py client runs on
an event loop of the store's own, in a daemon thread; `open` starts it (the first call does, if
no one did) and `close` ends it.

`delete` removes the object from the bucket and this machine's cache. Other machines' caches
keep their copy (still the right bytes: content addressing) until they delete it too.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import functools
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext, api
from nats.js.errors import (
    APIError,
    BadObjectMetaError,
    NoStreamResponseError,
    NotFoundError,
    ObjectNotFoundError,
)
from nats.js.object_store import ObjectStore
from nats.nuid import NUID

from pratai.artifacts.filesystem import FilesystemArtifacts, checked_digest
from pratai.errors import NotFound, PrataiError, Unavailable
from pratai.jetstream import ensure_stream

log = logging.getLogger("pratai.artifacts")

T = TypeVar("T")

CHUNK = 128 * 1024  # the object store's usual chunk size
DUPLICATE_WINDOW_S = 120.0  # the bucket's: longer than any chunk's retries
_BUCKET = re.compile(r"[A-Za-z0-9_-]+")
_DIGEST_TYPE = "SHA-256="
_MSG_ID = "Nats-Msg-Id"  # JetStream stores a message once per id (in the dedupe window)
_ROLLUP = "Nats-Rollup"  # "sub": the message replaces the others of its subject
_STRIPES = 64  # locks that keep two threads of a process from fetching one blob at once


class _Missing(Exception):
    """The bucket lacks a chunk the object's meta names: a replica behind, or the object
    deleted meanwhile (the next attempt reads the meta again)."""


_TRANSIENT = (
    _Missing,
    nats.errors.TimeoutError,  # no answer: reconnecting, or a server restarting
    nats.errors.NoRespondersError,  # no stream (yet) behind a subject
    nats.errors.OutboundBufferLimitError,  # too much buffered while reconnecting
    nats.errors.StaleConnectionError,
    nats.errors.ConnectionReconnectingError,
    NoStreamResponseError,  # JetStream still loading its streams
)


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, APIError) and not isinstance(exc, NotFoundError):
        return exc.code == 503  # JetStream unavailable for now (no leader yet, ...)
    return isinstance(exc, _TRANSIENT)


def _raise_a_swallowed_cancel() -> None:
    """nats-py waits for answers with asyncio.wait_for, which on Python 3.11 can swallow a
    cancel that lands as the answer arrives (gh-86296): `close` would wait for nothing."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _nats_digest(name: str) -> str:
    """The object store's digest of a blob whose sha256 hex digest is `name`."""
    return _DIGEST_TYPE + base64.urlsafe_b64encode(bytes.fromhex(name)).decode()


def _holds(info: api.ObjectInfo, name: str) -> bool:
    """Whether an object's meta says it holds the blob `name`."""
    digest = info.digest or ""
    if info.deleted or not info.nuid or not digest.upper().startswith(_DIGEST_TYPE):
        return False
    encoded = digest[len(_DIGEST_TYPE) :]
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (ValueError, binascii.Error):
        return False
    return raw == bytes.fromhex(name)


def _file_digest(path: Path) -> str | None:
    """The sha256 hex digest of a file, or None if it is not there."""
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    except FileNotFoundError:
        return None
    return h.hexdigest()


class _Progress:
    """When an operation last moved forward: its start, or its last chunk."""

    def __init__(self) -> None:
        self.at = time.monotonic()

    def touch(self) -> None:
        self.at = time.monotonic()


@dataclass
class _Fetch:
    """How far a fetch got, kept across its attempts."""

    nuid: str = ""
    seq: int = 1  # the stream sequence from which to look for the next chunk
    size: int = 0
    hasher: Any = field(default_factory=hashlib.sha256)


class NatsArtifacts:
    """`ArtifactStore` over a JetStream object store, with a local cache in `cache_dir`."""

    def __init__(
        self,
        servers: list[str],
        cache_dir: Path,
        *,
        replicas: int = 1,
        bucket: str = "pratai-artifacts",
        retry_s: float = 60.0,
        request_s: float = 5.0,
        reconnect_wait_s: float = 1.0,
    ) -> None:
        if not _BUCKET.fullmatch(bucket):
            raise ValueError("the bucket name is letters, digits, - and _")
        if retry_s >= DUPLICATE_WINDOW_S:
            raise ValueError(f"retry_s must stay under the {DUPLICATE_WINDOW_S} s dedupe window")
        self.servers = servers
        self.cache = FilesystemArtifacts(cache_dir)
        self.replicas = replicas
        self.bucket = bucket
        self.stream = f"OBJ_{bucket}"
        self.retry_s = retry_s  # how long an operation waits for NATS to let it move on
        self.request_s = request_s  # one request's wait for its answer
        self.reconnect_wait_s = reconnect_wait_s
        self._lock = threading.Lock()  # open and close
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._failed: tuple[float, str] | None = None  # when NATS was last found away, and why
        self._nc: Client | None = None
        self._bucket_ready = False
        self._operations: set[asyncio.Task[Any]] = set()
        self._nuid = NUID()
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]

    # --- lifecycle (any thread) ---------------------------------------------------------

    def open(self) -> None:
        """Connect and create the bucket (or set its replica count); raises Unavailable when
        NATS does not answer within `retry_s`. Opening twice is a no-op."""
        asked = time.monotonic()
        with self._lock:
            if self._closed:
                raise Unavailable("the artifact store is closed")
            if self._loop is not None:
                return
            self._raise_if_failed_since(asked)
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="pratai-artifacts", daemon=True)
            thread.start()
            try:
                progress = _Progress()
                self._wait(loop, self._connect(progress), progress)
            except BaseException as exc:
                self._stop(loop, thread)
                if isinstance(exc, Unavailable):
                    self._failed = (time.monotonic(), exc.message)
                raise
            self._loop, self._thread = loop, thread

    def close(self) -> None:
        """Ends the connection and its thread; calls under way raise Unavailable."""
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            self._stop(loop, thread)

    def __enter__(self) -> NatsArtifacts:
        self.open()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _stop(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._disconnect(), loop).result(self.request_s + 5)
        except Exception as exc:
            log.warning("artifacts: closing the NATS connection: %r", exc)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(self.request_s + 5)
        if not thread.is_alive():
            loop.close()

    def _wait(
        self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], progress: _Progress
    ) -> T:
        """Runs `coro` on the store's loop, and waits for it; if it stops moving for longer
        than its own deadlines allow, cancels it and raises Unavailable."""
        try:
            future = asyncio.run_coroutine_threadsafe(self._tracked(coro), loop)
        except RuntimeError:  # the loop closed meanwhile
            coro.close()
            raise Unavailable("the artifact store is closed") from None
        stuck_s = self.retry_s + 2 * self.request_s + 5
        while True:
            concurrent.futures.wait([future], timeout=1.0)
            if future.done():
                break
            if self._closed and self._loop is not loop:  # closing: it may never run
                future.cancel()
                raise Unavailable("the artifact store closed during the call")
            if time.monotonic() - progress.at > stuck_s:
                future.cancel()
                raise Unavailable(f"NATS at {self._where()} did not answer for {stuck_s:g} s")
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise Unavailable("the artifact store closed during the call") from None

    def _run(self, operation: Callable[[_Progress], Coroutine[Any, Any, T]]) -> T:
        self.open()  # the first call connects, if no one opened the store
        loop = self._loop
        if loop is None:
            raise Unavailable("the artifact store is closed")
        progress = _Progress()
        try:
            return self._wait(loop, operation(progress), progress)
        except Unavailable as exc:
            self._failed = (time.monotonic(), exc.message)
            raise

    def _raise_if_failed_since(self, asked: float) -> None:
        """A thread that waited (to open, to fetch a blob) while another found NATS away
        raises that at once, rather than wait `retry_s` in its turn."""
        failed = self._failed
        if failed is not None and failed[0] >= asked:
            raise Unavailable(failed[1])

    async def _tracked(self, coro: Awaitable[T]) -> T:
        task = asyncio.current_task()
        assert task is not None
        self._operations.add(task)
        try:
            return await coro
        finally:
            self._operations.discard(task)

    def _where(self) -> str:
        return ", ".join(self.servers)

    # --- the ArtifactStore interface (any thread) -----------------------------------------

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self._run(functools.partial(self._upload, digest, data))
        if not self.cache.location(digest).is_file():
            self.cache.write(digest, lambda f: f.write(data))
        return digest

    def get(self, digest: str) -> bytes:
        d = checked_digest(digest)
        try:
            data = self.cache.location(d).read_bytes()
        except FileNotFoundError:
            pass
        else:
            if hashlib.sha256(data).hexdigest() == d:
                return data
            self._drop_corrupt(d)
            del data
        return self._fetch(d).read_bytes()

    def path(self, digest: str) -> Path:
        """The cached file, checked against its digest (it is read whole each time)."""
        d = checked_digest(digest)
        cached = self.cache.location(d)
        found = _file_digest(cached)
        if found == d:
            return cached
        if found is not None:
            self._drop_corrupt(d)
        return self._fetch(d)

    def delete(self, digest: str) -> None:
        d = checked_digest(digest)
        self._run(functools.partial(self._remove, d))
        self.cache.delete(d)

    def _drop_corrupt(self, digest: str) -> None:
        log.warning("artifact %s: the cached copy does not match its digest; fetching it", digest)
        self.cache.delete(digest)

    def _fetch(self, digest: str) -> Path:
        """The blob, fetched into the cache (by one thread of this process at a time)."""
        asked = time.monotonic()
        with self._stripes[int(digest[:2], 16) % _STRIPES]:
            self._raise_if_failed_since(asked)
            cached = self.cache.location(digest)
            if cached.is_file():  # another thread fetched it meanwhile
                return cached

            def fill(out: BinaryIO) -> None:
                self._run(functools.partial(self._download, digest, out))

            return self.cache.write(digest, fill)

    # --- on the store's loop ----------------------------------------------------------------

    async def _connect(self, progress: _Progress) -> None:
        """Connects, then creates the bucket: within `retry_s` in all."""
        nc = Client()
        try:
            async with asyncio.timeout(self.retry_s):
                await nc.connect(
                    self.servers,
                    name="pratai-artifacts",
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=self.reconnect_wait_s,  # type: ignore[arg-type]
                    disconnected_cb=self._disconnected,
                    reconnected_cb=self._reconnected,
                    error_cb=self._error,
                )
        except TimeoutError:
            await nc.close()
            where = self._where()
            raise Unavailable(f"cannot reach NATS at {where} in {self.retry_s:g} s") from None
        self._nc = nc
        try:
            await self._retrying(self._create_bucket, progress, "to create the bucket")
        except BaseException:
            self._nc = None
            await nc.close()
            raise

    async def _disconnect(self) -> None:
        operations = list(self._operations)
        for task in operations:
            task.cancel()
        await asyncio.gather(*operations, return_exceptions=True)
        nc, self._nc = self._nc, None
        if nc is not None:
            try:
                await nc.close()
            except (nats.errors.Error, OSError) as exc:  # the server gone: nothing to flush
                log.debug("artifacts: closing the NATS connection: %r", exc)
        # what nats-py cancelled and left (its subscriptions' tasks), before the loop stops
        rest = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)
        await asyncio.get_running_loop().shutdown_default_executor()

    async def _disconnected(self) -> None:
        if self._nc is not None:
            log.warning("artifacts: lost the connection to NATS; reconnecting")

    async def _reconnected(self) -> None:
        log.info("artifacts: reconnected to NATS")

    async def _error(self, exc: Exception) -> None:
        log.debug("artifacts: NATS: %r", exc)

    async def _create_bucket(self) -> None:
        config = api.StreamConfig(
            name=self.stream,
            subjects=[f"$O.{self.bucket}.C.>", f"$O.{self.bucket}.M.>"],
            storage=api.StorageType.FILE,
            num_replicas=self.replicas,
            discard=api.DiscardPolicy.NEW,
            allow_rollup_hdrs=True,
            allow_direct=True,
            duplicate_window=DUPLICATE_WINDOW_S,
        )
        await ensure_stream(self._js(), config)
        self._bucket_ready = True

    def _js(self) -> JetStreamContext:
        if self._nc is None:
            raise Unavailable("the artifact store is closed")
        return self._nc.jetstream(timeout=self.request_s)

    def _objects(self) -> ObjectStore:
        return ObjectStore(name=self.bucket, stream=self.stream, js=self._js())

    def _chunks(self, nuid: str) -> str:
        return f"$O.{self.bucket}.C.{nuid}"

    def _meta(self, name: str) -> str:
        return f"$O.{self.bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"

    async def _retrying(
        self, attempt: Callable[[], Awaitable[T]], progress: _Progress, what: str
    ) -> T:
        """`attempt()`, again while NATS is away or not ready, until it has let the operation
        make no progress for `retry_s`; then Unavailable."""
        pause = 0.05
        while True:
            try:
                return await attempt()
            except Exception as exc:
                if not _transient(exc):
                    raise
                if time.monotonic() + pause - progress.at > self.retry_s:
                    raise Unavailable(
                        f"the artifact store (NATS at {self._where()}) did not answer {what} "
                        f"for {self.retry_s:g} s"
                    ) from exc
                log.debug("artifacts: NATS not ready (%r); trying again", exc)
            finally:
                _raise_a_swallowed_cancel()
            await asyncio.sleep(pause)
            pause = min(1.0, pause * 2)

    async def _info(self, name: str, *, show_deleted: bool = False) -> api.ObjectInfo | None:
        try:
            return await self._objects().get_info(name, show_deleted=show_deleted)
        except ObjectNotFoundError:
            return None

    async def _publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        if not self._bucket_ready:  # a server that lost it (a new one on the same address)
            await self._create_bucket()
        try:
            await self._js().publish(subject, payload, stream=self.stream, headers=headers)
        except nats.errors.NoRespondersError:
            self._bucket_ready = False
            raise

    async def _upload(self, name: str, data: bytes, progress: _Progress) -> None:
        """Stores `data` as object `name`, unless the bucket holds it already."""

        async def lookup() -> api.ObjectInfo | None:
            try:
                return await self._info(name)
            except BadObjectMetaError:  # unreadable: replaced below
                return None

        old = await self._retrying(lookup, progress, "a lookup")
        if old is not None and _holds(old, name):
            return
        nuid = self._nuid.next().decode()
        chunks = self._chunks(nuid)
        stored = False
        try:
            view = memoryview(data)
            count = 0
            for offset in range(0, len(data), CHUNK):
                count += 1
                chunk = bytes(view[offset : offset + CHUNK])
                headers = {_MSG_ID: f"{nuid}.{count}"}
                send = functools.partial(self._publish, chunks, chunk, headers)
                await self._retrying(send, progress, "a chunk")
                progress.touch()
            again = await self._retrying(lookup, progress, "a lookup")
            if again is not None and _holds(again, name):  # another machine was quicker
                return
            info = api.ObjectInfo(
                name=name,
                bucket=self.bucket,
                nuid=nuid,
                size=len(data),
                chunks=count,
                digest=_nats_digest(name),
                mtime=datetime.now(UTC).isoformat(),
                options=api.ObjectMetaOptions(max_chunk_size=CHUNK),
            )
            meta = json.dumps(info.as_dict()).encode()
            headers = {_ROLLUP: "sub", _MSG_ID: f"{nuid}.meta"}
            send = functools.partial(self._publish, self._meta(name), meta, headers)
            await self._retrying(send, progress, "the object's meta")
            stored = True
        finally:
            if not stored:  # chunks no meta names
                await self._purge(chunks)
        if old is not None and old.nuid:  # the chunks of what this replaced
            await self._purge(self._chunks(old.nuid))

    async def _purge(self, chunks: str) -> None:
        """Best effort: what it leaves only takes room."""
        try:
            await self._js().purge_stream(self.stream, subject=chunks)
        except Exception as exc:
            log.warning("artifacts: could not purge %s: %r", chunks, exc)

    async def _download(self, name: str, out: BinaryIO, progress: _Progress) -> None:
        """Writes object `name` into `out`, checked against its digest."""
        fetch = _Fetch()
        attempt = functools.partial(self._download_from, name, out, fetch, progress)
        await self._retrying(attempt, progress, "a download")
        if fetch.hasher.hexdigest() != name:
            raise PrataiError(f"artifact {name} in NATS does not match its digest", digest=name)

    async def _download_from(
        self, name: str, out: BinaryIO, fetch: _Fetch, progress: _Progress
    ) -> None:
        """From where `fetch` got to (or from the start, if the object changed meanwhile)."""
        try:
            info = await self._info(name)
        except BadObjectMetaError:
            info = None
        if info is None or not _holds(info, name):
            raise NotFound(f"no artifact {name}", digest=name)
        if info.nuid != fetch.nuid:
            fetch.nuid, fetch.seq, fetch.size, fetch.hasher = info.nuid, 1, 0, hashlib.sha256()
            out.seek(0)
            out.truncate()
        size = info.size or 0
        chunks = self._chunks(info.nuid)
        loop = asyncio.get_running_loop()
        while fetch.size < size:
            try:
                msg = await self._js().get_msg(
                    self.stream, seq=fetch.seq, subject=chunks, direct=True, next=True
                )
            except NotFoundError:
                raise _Missing from None
            data = msg.data or b""
            await loop.run_in_executor(None, out.write, data)
            fetch.hasher.update(data)
            fetch.size += len(data)
            fetch.seq = (msg.seq or fetch.seq) + 1
            progress.touch()
        if fetch.size != size:
            raise PrataiError(f"artifact {name} in NATS is not the size it says", digest=name)

    async def _remove(self, name: str, progress: _Progress) -> None:
        """Marks the object deleted, then drops its chunks (again, for one deleted before)."""
        info = await self._retrying(
            functools.partial(self._info, name, show_deleted=True), progress, "a lookup"
        )
        if info is None or not info.nuid:
            return
        if not info.deleted:
            gone = api.ObjectInfo(
                name=name,
                bucket=self.bucket,
                nuid=info.nuid,
                size=0,
                chunks=0,
                digest="",
                mtime="",
                deleted=True,
            )
            meta = json.dumps(gone.as_dict()).encode()
            send = functools.partial(self._publish, self._meta(name), meta, {_ROLLUP: "sub"})
            await self._retrying(send, progress, "a delete")
        chunks = self._chunks(info.nuid)
        await self._retrying(
            lambda: self._js().purge_stream(self.stream, subject=chunks), progress, "a purge"
        )
