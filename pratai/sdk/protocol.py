"""The SDK's I/O-free core: each server call is an *exchange*, a generator that yields what it
needs done (a `Request` to send, a `Pause` to wait out) and is sent each request's `Reply`.

What to ask, how to read the answer, when to ask again and when to give up are decided here
once, in the sans-I/O style of h11; `Client` (http.client) and `AsyncClient` (httpx) only carry
the exchanges out (`Conversation`). An exchange that waits reads time from a `clock` argument, so
a test drives one through a timeout by hand instead of sleeping."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx

from pratai import wire
from pratai.errors import ApiError
from pratai.sdk.errors import from_api_error

__all__ = [
    "Clock",
    "Conversation",
    "Deadline",
    "Exchange",
    "Pause",
    "Reply",
    "Request",
    "backoff",
    "call",
    "decode",
    "form_request",
    "json_request",
]

T = TypeVar("T")
Clock = Callable[[], float]
Params = Sequence[tuple[str, str | Sequence[str]]]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: Params = ()
    content: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def target(self) -> str:
        """The path with its query string, as sent."""
        if not self.params:
            return self.path
        return f"{self.path}?{urllib.parse.urlencode(self.params, doseq=True)}"


@dataclass(frozen=True)
class Reply:
    status: int
    reason: str
    content: bytes


@dataclass(frozen=True)
class Pause:
    """Wait this long before the next step (a wait the server cannot hold for us)."""

    seconds: float


# An exchange is sent None after a Pause and the Reply after a Request.
Exchange = Generator[Request | Pause, Reply | None, T]


class Conversation(Generic[T]):
    """An exchange being carried out: iterating gives its steps, `reply` answers the last
    Request, and once the iteration has ended `result` is what the exchange returned."""

    result: T

    def __init__(self, exchange: Exchange[T]) -> None:
        self._exchange = exchange
        self._reply: Reply | None = None

    def __iter__(self) -> Iterator[Request | Pause]:
        return self

    def __next__(self) -> Request | Pause:
        reply, self._reply = self._reply, None
        try:
            return self._exchange.send(reply)
        except StopIteration as stop:
            self.result = stop.value
            raise

    def reply(self, reply: Reply) -> None:
        self._reply = reply


def decode(reply: Reply) -> Any:
    """The JSON body of a success; the ApiError (or the SDK's subclass) of an error reply."""
    try:
        return wire.decode(reply.status, reply.reason, reply.content)
    except ApiError as exc:
        raise from_api_error(exc) from None


def call(request: Request) -> Exchange[Any]:
    """One request: its decoded body."""
    reply = yield request
    assert reply is not None, "a Request is answered with its Reply"
    return decode(reply)


def json_request(method: str, path: str, body: Any, params: Params = ()) -> Request:
    headers = {"Content-Type": "application/json"}
    return Request(method, path, params, json.dumps(body).encode(), headers)


def form_request(
    method: str, path: str, form: Mapping[str, Any], package: bytes | None = None
) -> Request:
    """The form of `wire.fields(form)`, multipart when it carries a package zip. httpx encodes it:
    building its Request sends nothing."""
    files = {"file": ("package.zip", package)} if package is not None else None
    built = httpx.Request(method, "http://pratai.invalid", data=wire.fields(form), files=files)
    kind = built.headers.get("Content-Type")
    return Request(
        method, path, content=built.read(), headers={"Content-Type": kind} if kind else {}
    )


class Deadline:
    """`timeout` seconds from now on `clock`; None never passes."""

    def __init__(self, timeout: float | None, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._end = None if timeout is None else clock() + timeout

    def passed(self) -> bool:
        return self._end is not None and self._clock() >= self._end

    def left(self, most: float) -> float:
        """Seconds left, at most `most` (a server-side wait's own bound), to the millisecond."""
        if self._end is None:
            return most
        return round(max(0.0, min(most, self._end - self._clock())), 3)


def backoff(first: float, most: float = 0.25) -> Iterator[Pause]:
    """Pauses that double from `first` up to `most`."""
    pause = first
    while True:
        yield Pause(pause)
        pause = min(pause * 2, most)
