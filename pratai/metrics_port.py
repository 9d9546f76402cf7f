"""Who may read the metrics, and `GET /metrics` on PRATAI_HOST:PRATAI_METRICS_PORT for a
scheduler or node run apart.

The port runs on the process's own event loop, so a scrape can read what lives there (a scheduler's
queue depth comes from the store), and it applies the rule of the api's /metrics: with
PRATAI_METRICS_TOKEN set, the bearer of that token; without it, clients on loopback only. It
speaks just enough HTTP/1.1 for a scraper: one GET a connection, then it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging

from pratai.metrics import CONTENT_TYPE, Metrics
from pratai.settings import Settings

log = logging.getLogger("pratai.metrics")

_HEAD_LIMIT = 16 * 1024  # a request head longer than this is refused
_READ_S = 10.0  # a client that sends no full request head in this time is dropped
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            404: "Not Found", 405: "Method Not Allowed"}  # fmt: skip


def refusal(token: str, authorization: str, client: str) -> tuple[int, str] | None:
    """Why a scrape is refused (HTTP status, message), or None: with PRATAI_METRICS_TOKEN set,
    only the bearer of that token may read the metrics; without it, only a client on
    loopback."""
    if token:
        scheme, _, given = authorization.partition(" ")
        matches = hmac.compare_digest(given.strip().encode(), token.encode())  # any characters
        if scheme.lower() != "bearer" or not matches:
            return 401, "GET /metrics needs `Authorization: Bearer <PRATAI_METRICS_TOKEN>`"
        return None
    if not _loopback(client):
        return 403, "/metrics answers loopback only; set PRATAI_METRICS_TOKEN to scrape it"
    return None


def _loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


class MetricsPort:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listens when PRATAI_METRICS_PORT is set; a port that is taken is logged, not fatal
        (the process's work matters more than its metrics)."""
        port = self.settings.metrics_port
        if not port:
            return
        try:
            self._server = await asyncio.start_server(
                self._serve, self.settings.host, port, limit=_HEAD_LIMIT
            )
        except OSError as exc:
            log.warning("metrics not served on port %d: %s", port, exc)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_S)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                return
            peer = writer.get_extra_info("peername")
            status, body, content_type = await self._answer(head, peer[0] if peer else "")
            reason = _REASONS.get(status, "")
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, head: bytes, client: str) -> tuple[int, bytes, str]:
        text = "text/plain; charset=utf-8"
        request_line, *lines = head.decode("latin-1").split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return 400, b"a request line, please: GET /metrics HTTP/1.1\n", text
        method, target = parts[0], parts[1].partition("?")[0]
        if target != "/metrics":
            return 404, b"metrics are at /metrics\n", text
        if method != "GET":
            return 405, b"GET /metrics only\n", text
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        refused = refusal(self.settings.metrics_token, headers.get("authorization", ""), client)
        if refused is not None:
            return refused[0], refused[1].encode() + b"\n", text
        await self.metrics.refresh()
        return 200, self.metrics.render(), CONTENT_TYPE
