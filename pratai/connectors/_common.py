"""What every connector kind shares: URL redaction, payload decoding, backoff, reconnecting.

A kind subclasses `ReconnectingConnector` and implements `_session(emit)`: connect, call
`self._connected()` once the source is ready, forward messages with `self._forward(emit, incoming)`
(or emit and count by hand where the source needs its own retry, as AMQP's nack does), and return
or raise when the connection is gone. `run()` turns every failure into `status.last_error`, waits
with exponential backoff and jitter, and connects again, until it is cancelled.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from pratai.connectors.base import ConnectorStatus, Emit, Incoming

MASK = "***"
BACKOFF_START = 0.2
BACKOFF_CAP = 5.0

# Query parameters that carry secrets in the URLs the kinds accept (libpq, redis-py, nats).
_SECRET_PARAMS = {"password", "pass", "passwd", "pwd", "sslpassword", "token", "secret", "key"}
# Schemes whose lone userinfo (no ":") is a secret token, not a user name: nats://TOKEN@host.
_TOKEN_SCHEMES = {"nats", "tls", "ws", "wss"}
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
_USERINFO_FALLBACK = re.compile(r"(//[^/:@\s]*):[^@/\s]*@")
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def redact_url(url: str) -> str:
    """`url` with every credential masked: `amqp://guest:guest@h/` → `amqp://guest:***@h/`.

    Masks the password of the userinfo, a lone NATS token (`nats://TOKEN@h`), and query
    parameters such as `?password=`. Never raises: a URL it cannot parse is masked by pattern.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            if ":" in userinfo:
                user = userinfo.split(":", 1)[0]
                userinfo = f"{user}:{MASK}"
            elif parts.scheme.lower() in _TOKEN_SCHEMES and userinfo:
                userinfo = MASK
            netloc = f"{userinfo}@{hostport}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(k.lower() in _SECRET_PARAMS for k, _ in pairs):
                query = urlencode(
                    [(k, MASK if k.lower() in _SECRET_PARAMS else v) for k, v in pairs],
                    safe="*",
                )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return _USERINFO_FALLBACK.sub(rf"\1:{MASK}@", url)


def url_secrets(url: str) -> list[str]:
    """The secret strings inside `url` (raw and percent-decoded), to scrub from error messages."""
    found: list[str] = []
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo = netloc.rpartition("@")[0]
            if ":" in userinfo:
                found.append(userinfo.split(":", 1)[1])
            elif parts.scheme.lower() in _TOKEN_SCHEMES:
                found.append(userinfo)
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key.lower() in _SECRET_PARAMS:
                found.extend([value, quote(value, safe="")])
    except ValueError:
        return []
    more = [unquote(s) for s in found]
    # Longest first, so a secret that contains another is replaced whole.
    return sorted({s for s in found + more if len(s) >= 2}, key=len, reverse=True)


def scrub(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """`text` with URLs redacted, `password=...` keywords masked and every known secret masked."""
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    text = _KEYWORD_PASSWORD.sub(rf"\1{MASK}", text)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def decode_payload(body: bytes) -> Any:
    """JSON-decoded when `body` is JSON, else utf-8 text, else the bytes themselves."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return body
    try:
        return json.loads(text)
    except ValueError:
        return text


class Backoff:
    """Exponential backoff with full jitter in the upper half: 0.2 s doubling up to 5 s."""

    def __init__(self, start: float = BACKOFF_START, cap: float = BACKOFF_CAP) -> None:
        self.start = start
        self.cap = cap
        self._next = start

    def reset(self) -> None:
        self._next = self.start

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self.cap, self._next * 2)
        return random.uniform(delay / 2, delay)

    async def sleep(self) -> None:
        await asyncio.sleep(self.next_delay())


class ConnectionLost(Exception):
    """The source closed the connection without an error of its own."""


class ReconnectingConnector:
    """The reconnect loop, status keeping and emit-retry shared by every kind."""

    kind: str = ""

    def __init__(self, url: str) -> None:
        self.url = url
        self.status = ConnectorStatus()
        self._secrets = url_secrets(url)
        self._backoff = Backoff()

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.safe_url}>"

    async def run(self, emit: Emit) -> None:
        """Forward messages until cancelled; every failure is recorded, then retried."""
        while True:
            try:
                await self._session(emit)
                raise ConnectionLost("connection closed by the server")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._record_error(exc)
            finally:
                self.status.connected = False
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # A client library swallowed the cancellation (nats-py's connect does, in a
                # window): stop anyway, or a delete of this connector would wait forever.
                raise asyncio.CancelledError
            await self._backoff.sleep()

    async def _session(self, emit: Emit) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _connected(self) -> None:
        self.status.connected = True
        self.status.connected_at = time.time()
        self._backoff.reset()

    def _record_error(self, exc: BaseException, context: str = "") -> None:
        message = str(exc) or type(exc).__name__
        if not message.startswith(type(exc).__name__):
            message = f"{type(exc).__name__}: {message}"
        if context:
            message = f"{context}: {message}"
        self.status.last_error = scrub(message, self._secrets)[:1000]
        self.status.last_error_at = time.time()

    async def _forward(self, emit: Emit, incoming: Incoming) -> None:
        """Emit `incoming`, retrying with backoff until `emit` returns; counts it as forwarded."""
        retry = Backoff()
        while True:
            try:
                await emit(incoming)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._record_error(exc, "emit failed")
                await retry.sleep()
                continue
            self.status.forwarded += 1
            return
