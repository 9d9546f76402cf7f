"""A NATS JetStream broker, for work shared by many machines.

One stream per Pratai (`PRATAI`, work-queue retention, file storage, `replicas` copies) holds
every queue: a message of queue `q` with id `m` has the subject `pratai.q.<q>.<m, base64url>`.
The stream keeps one message per subject and refuses a second (discard-new per subject), so
publishing an id that is still queued or leased is a no-op, and an acked id can be used again:
the rule of the other brokers, with no time window. The `Nats-Msg-Id` header carries a nonce of
each `publish` call, so a call that retries over a reconnect lands once (JetStream's duplicate
window, `DUPLICATE_WINDOW_S`, outlasts a call's retries).

Each queue has one durable pull consumer, shared by every consumer of every process (competing
consumers). A delivery's lease is the consumer's AckWait: the `lease_s` of `consume`. When a
`consume` asks for another lease than the durable's, the durable is updated (the last one asked
wins, for the messages already out too) and a warning is logged: Pratai's processes use one
lease per queue. `extend` sends in-progress acks, every half AckWait, until the lease it asks
for has run; if the process dies they stop and the message comes back after one AckWait.
`nack` with a delay is a NAK with that delay; `attempts` is JetStream's delivery count.

A consumer waits in a pull request with a long expiry and idle heartbeats: a publish wakes it at
once; it asks again after a reconnect or when the heartbeats stop (a server restarted), and rides
out the errors meanwhile. `publish` returns once the server has stored the message, retrying
(for `retry_s`) while it cannot: nothing accepted is lost. `ack` and `nack` wait for the server's
answer (for `request_s`). `close` gives back at once the deliveries its consumers have not
finished; those of a process that dies come back after their lease.

Needs nats-server 2.9 or later (discard-new per subject, heartbeats of pull requests).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import re
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError

from pratai.broker.base import Delivery
from pratai.jetstream import ensure_stream

log = logging.getLogger("pratai.broker")

T = TypeVar("T")

DUPLICATE_WINDOW_S = 120.0
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")  # a subject token and a consumer name, both
_SUBJECT_FULL = 10077  # JetStream's error code: the subject already holds its one message


class _Freed(Exception):
    """The stream refused an id as still queued, but it was acked meanwhile: publish again."""


_TRANSIENT = (
    _Freed,
    nats.errors.TimeoutError,  # no answer: reconnecting, or a server restarting
    nats.errors.NoRespondersError,
    nats.errors.OutboundBufferLimitError,  # too much buffered while reconnecting
    NoStreamResponseError,  # JetStream still loading its streams
)


@dataclass
class _Held(Delivery):
    reply: str = field(default="", repr=False)  # the JetStream subject that acks this delivery


def _token(message_id: str) -> str:
    return base64.urlsafe_b64encode(message_id.encode()).decode().rstrip("=")


def _message_id(subject: str) -> str:
    token = subject.rsplit(".", 1)[-1]
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, APIError):  # 503: JetStream unavailable for now (no leader yet, ...)
        return exc.code == 503 and exc.err_code != _SUBJECT_FULL
    return isinstance(exc, _TRANSIENT)


def _raise_a_swallowed_cancel() -> None:
    """nats-py waits for answers with asyncio.wait_for, which on Python 3.11 can swallow a cancel
    that lands as the answer arrives (gh-86296); a consumer would then never stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _status(msg: Msg) -> str | None:
    return msg.headers.get("Status") if msg.headers else None


class JetStreamBroker:
    def __init__(
        self,
        servers: list[str],
        *,
        replicas: int = 1,
        stream: str = "PRATAI",
        prefix: str = "pratai",
        retry_s: float = 60.0,
        request_s: float = 5.0,
        pull_s: float = 30.0,
        heartbeat_s: float = 5.0,
        reconnect_wait_s: float = 1.0,
    ) -> None:
        if not (_TOKEN.fullmatch(stream) and _TOKEN.fullmatch(prefix)):
            raise ValueError("the stream and its subject prefix are letters, digits, - and _")
        if retry_s >= DUPLICATE_WINDOW_S:
            raise ValueError(f"retry_s must stay under the {DUPLICATE_WINDOW_S} s dedupe window")
        self.servers = servers
        self.replicas = replicas
        self.stream = stream
        self.prefix = prefix
        self.retry_s = retry_s  # how long publish, ack and nack keep trying while NATS is away
        self.request_s = request_s  # one request's wait for its answer
        self.pull_s = pull_s  # a waiting consumer's pull request expires after this long
        self.heartbeat_s = heartbeat_s
        self.reconnect_wait_s = reconnect_wait_s
        self.pulls = 0  # pull requests sent so far: how often consumers went to wait
        self._nc: Client | None = None
        self._closed = asyncio.Event()
        self._waiting: set[asyncio.Queue[Msg | None]] = set()  # each waiting consumer's inbox
        self._ack_wait: dict[str, float] = {}  # queue -> the AckWait its durable has
        self._consumer_lock = asyncio.Lock()
        # the deliveries handed out and not yet acked or nacked: reply -> in-progress acks
        self._out: dict[str, asyncio.Task[None] | None] = {}

    # --- lifecycle --------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, then create the stream (or update it to this replica count)."""
        if self._nc is not None:
            return
        self._closed = asyncio.Event()
        nc = Client()
        try:
            async with asyncio.timeout(self.retry_s):
                await nc.connect(
                    self.servers,
                    name="pratai",
                    max_reconnect_attempts=-1,  # a consumer outlives any outage
                    reconnect_time_wait=self.reconnect_wait_s,  # type: ignore[arg-type]
                    reconnected_cb=self._reconnected,
                    disconnected_cb=self._disconnected,
                    error_cb=self._error,
                )
        except TimeoutError:
            await nc.close()
            where = ", ".join(self.servers)
            raise ConnectionError(f"cannot reach NATS at {where} in {self.retry_s} s") from None
        self._nc = nc
        try:
            await self._retrying(self._create_stream)
        except BaseException:
            await self.close()
            raise

    async def _create_stream(self) -> None:
        config = api.StreamConfig(
            name=self.stream,
            subjects=[f"{self.prefix}.q.>"],
            retention=api.RetentionPolicy.WORK_QUEUE,
            storage=api.StorageType.FILE,
            num_replicas=self.replicas,
            discard=api.DiscardPolicy.NEW,
            discard_new_per_subject=True,
            max_msgs_per_subject=1,
            duplicate_window=DUPLICATE_WINDOW_S,
        )
        await ensure_stream(self._js(), config)

    async def close(self) -> None:
        """Ends the consumers, and gives back at once what they hold unfinished (a stopping
        process's work goes to another, or to this one when it starts again)."""
        self._closed.set()
        self._wake_all()
        out, self._out = self._out, {}
        self._ack_wait.clear()
        nc, self._nc = self._nc, None
        if nc is None:
            return
        with contextlib.suppress(nats.errors.Error):
            for reply, keeper in out.items():
                if keeper is not None:
                    keeper.cancel()
                await nc.publish(reply, b"-NAK")
            await nc.flush(math.ceil(self.request_s))
        await nc.close()

    def _js(self) -> JetStreamContext:
        if self._nc is None:
            raise RuntimeError("JetStreamBroker is not open")
        return self._nc.jetstream(timeout=self.request_s)

    def _conn(self) -> Client:
        if self._nc is None:
            raise RuntimeError("JetStreamBroker is not open")
        return self._nc

    def _wake_all(self) -> None:
        for inbox in self._waiting:
            inbox.put_nowait(None)

    async def _reconnected(self) -> None:
        log.info("reconnected to NATS")
        self._wake_all()  # their pull requests may have died with the old connection

    async def _disconnected(self) -> None:
        if self._nc is not None and not self._closed.is_set():  # not while first connecting
            log.warning("lost the connection to NATS; reconnecting")

    async def _error(self, exc: Exception) -> None:
        log.debug("NATS: %r", exc)

    async def _retrying(self, attempt: Callable[[], Awaitable[T]], within: float = 0.0) -> T:
        """`attempt()`, again while NATS is unreachable or JetStream not ready, for `within`
        seconds (default: `retry_s`)."""
        deadline = time.monotonic() + (within or self.retry_s)
        pause = 0.05
        while True:
            try:
                return await attempt()
            except Exception as exc:
                if not _transient(exc) or time.monotonic() + pause > deadline:
                    raise
                log.debug("NATS not ready (%r); trying again", exc)
            finally:
                _raise_a_swallowed_cancel()
            await asyncio.sleep(pause)
            pause = min(1.0, pause * 2)

    # --- the Broker interface ---------------------------------------------------------

    def _subject(self, queue: str, message_id: str) -> str:
        if not _TOKEN.fullmatch(queue):
            raise ValueError(f"queue {queue!r}: letters, digits, - and _ only")
        return f"{self.prefix}.q.{queue}.{_token(message_id)}"

    async def publish(self, queue: str, body: bytes, *, message_id: str | None = None) -> str:
        mid = message_id or uuid.uuid4().hex
        subject = self._subject(queue, mid)
        headers = {"Nats-Msg-Id": uuid.uuid4().hex}  # this call's retries land once

        async def attempt() -> None:
            try:
                await self._js().publish(subject, bytes(body), headers=headers)
            except APIError as exc:
                if exc.err_code != _SUBJECT_FULL:
                    raise
                if not await self._holds(subject):
                    raise _Freed from exc

        await self._retrying(attempt)
        return mid

    async def _holds(self, subject: str) -> bool:
        try:
            await self._js().get_last_msg(self.stream, subject)
        except NotFoundError:
            return False
        return True

    async def consume(self, queue: str, *, lease_s: float = 60.0) -> AsyncGenerator[Delivery, None]:
        """Yields deliveries until the broker closes, each from one pull request."""
        self._subject(queue, "")  # a valid queue name
        await self._retrying(lambda: self._ensure_consumer(queue, lease_s))
        nc = self._conn()
        inbox = nc.new_inbox()
        arrived: asyncio.Queue[Msg | None] = asyncio.Queue()  # None: wake up and ask again
        sub = await nc.subscribe(inbox + ".*", cb=arrived.put)
        self._waiting.add(arrived)
        try:
            asked = 0
            reply = ""
            pause = 0.05
            while not self._closed.is_set():
                _raise_a_swallowed_cancel()
                if not reply and arrived.empty():
                    asked += 1
                    reply = f"{inbox}.{asked}"
                    await self._pull(queue, reply)
                msg = await self._next(arrived)
                if msg is None:  # woken, or silence: that request may be gone
                    reply = ""
                    continue
                status = _status(msg)
                if status is None:  # a message (under its own subject): a request is spent
                    reply = ""
                    pause = 0.05
                    yield self._delivery(queue, msg)
                elif msg.subject == reply and status != "100":  # this request ended
                    reply = ""
                    if status not in ("404", "408"):  # not "nothing yet": 409, 503 ...
                        log.debug("pull on %s ended with %s; asking again", queue, status)
                        await asyncio.sleep(pause)
                        pause = min(2.0, pause * 2)
                        await self._restore(queue, lease_s)
        finally:
            self._waiting.discard(arrived)
            await self._let_go(sub, arrived)

    async def _ensure_consumer(self, queue: str, lease_s: float) -> None:
        """The queue's durable consumer, with AckWait `lease_s`."""
        async with self._consumer_lock:
            if self._ack_wait.get(queue) == lease_s:
                return
            js = self._js()
            try:
                was = (await js.consumer_info(self.stream, queue)).config.ack_wait
            except NotFoundError:
                was = None
            if was != lease_s:
                if was is not None:
                    log.warning("queue %s: lease (AckWait) %s s -> %s s", queue, was, lease_s)
                config = api.ConsumerConfig(
                    name=queue,
                    durable_name=queue,
                    filter_subject=f"{self.prefix}.q.{queue}.*",
                    ack_policy=api.AckPolicy.EXPLICIT,
                    ack_wait=lease_s,
                    max_deliver=-1,
                )
                await js.add_consumer(self.stream, config)  # creates, or updates AckWait
            self._ack_wait[queue] = lease_s

    async def _restore(self, queue: str, lease_s: float) -> None:
        """The stream and the queue's consumer again, should a server have lost them."""
        self._ack_wait.pop(queue, None)
        try:
            await self._create_stream()
            await self._ensure_consumer(queue, lease_s)
        except Exception as exc:  # NATS still away: the next pull finds out
            log.debug("queue %s: cannot check its consumer yet: %r", queue, exc)

    async def _pull(self, queue: str, reply: str) -> None:
        request = {
            "batch": 1,
            "expires": int(self.pull_s * 1e9),
            "idle_heartbeat": int(self.heartbeat_s * 1e9),
        }
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{queue}"
        self.pulls += 1
        # buffered while reconnecting; lost with a restarting server (the heartbeats tell)
        with contextlib.suppress(nats.errors.Error):
            await self._conn().publish(subject, json.dumps(request).encode(), reply=reply)

    async def _next(self, arrived: asyncio.Queue[Msg | None]) -> Msg | None:
        """What arrives next; None after two heartbeats of silence."""
        try:
            async with asyncio.timeout(2 * self.heartbeat_s + 1):
                return await arrived.get()
        except TimeoutError:
            return None

    def _delivery(self, queue: str, msg: Msg) -> _Held:
        self._out[msg.reply] = None
        attempts = msg.metadata.num_delivered
        return _Held(queue, _message_id(msg.subject), msg.data, attempts, reply=msg.reply)

    async def _let_go(self, sub: Subscription, arrived: asyncio.Queue[Msg | None]) -> None:
        """Stop listening; give back, at once, what arrived after the consumer stopped."""
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()
        while not arrived.empty():
            msg = arrived.get_nowait()
            if msg is not None and _status(msg) is None:
                with contextlib.suppress(nats.errors.Error):
                    await self._conn().publish(msg.reply, b"-NAK")

    async def ack(self, delivery: Delivery) -> None:
        await self._answer(delivery, b"+ACK")

    async def nack(self, delivery: Delivery, *, delay_s: float = 0.0) -> None:
        delay = f' {{"delay": {int(delay_s * 1e9)}}}' if delay_s > 0 else ""
        await self._answer(delivery, b"-NAK" + delay.encode())

    async def _answer(self, delivery: Delivery, verdict: bytes) -> None:
        """Send an ack or a NAK and wait, for one request's time, for the server to take it.
        Past that (a server killed may not remember its last deliveries when it restarts, and
        leaves their acks unanswered) the message may come back after its lease: at least
        once."""
        reply = _reply(delivery)
        keeper = self._out.pop(reply, None)
        if keeper is not None:
            keeper.cancel()
        each = self.request_s / 4
        try:
            await self._retrying(lambda: self._conn().request(reply, verdict, each), self.request_s)
        except nats.errors.Error as exc:
            log.warning("NATS did not take %s of %s: %r", verdict.decode(), delivery.id, exc)

    async def extend(self, delivery: Delivery, lease_s: float) -> None:
        reply = _reply(delivery)
        old = self._out.get(reply)
        if old is not None:
            old.cancel()
        await self._progress(reply)
        ack_wait = self._ack_wait.get(delivery.queue, 0.0)
        if lease_s > ack_wait > 0 and reply in self._out:  # not acked or nacked yet
            self._out[reply] = asyncio.create_task(
                self._keep(reply, time.monotonic() + lease_s, ack_wait / 2)
            )

    async def _keep(self, reply: str, until: float, every: float) -> None:
        """In-progress acks until one lease from the last covers `until`."""
        while time.monotonic() + 2 * every < until:
            await asyncio.sleep(every)
            await self._progress(reply)

    async def _progress(self, reply: str) -> None:
        with contextlib.suppress(nats.errors.Error):
            await self._conn().publish(reply, b"+WPI")


def _reply(delivery: Delivery) -> str:
    if not isinstance(delivery, _Held):
        raise TypeError("a delivery of another broker")
    return delivery.reply
