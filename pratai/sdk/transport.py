"""The sync client's requests on `http.client`: one keep-alive connection per thread.

A job's round trip is two small requests (create, then the result's long-poll), and most of a
warm round trip is per-request overhead. httpx spends about half a millisecond of CPU per
request building and parsing its models; `http.client` does the same exchange in a fraction of
that (bench/sdk.py measures the round trip). Bodies, multipart ones included, come encoded
(`protocol.Request`); replies go back undecoded (`protocol.Reply`)."""

from __future__ import annotations

import http.client
import select
import socket
import threading
import urllib.parse

from pratai.errors import ApiError
from pratai.sdk.protocol import Reply, Request
from pratai.wire import unreachable

__all__ = ["FastHttp"]

# what a keep-alive connection that the server closed while idle raises when reused
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


def _closed_by_peer(sock: socket.socket) -> bool:
    """An idle keep-alive connection that is readable has been closed by the server."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class FastHttp:
    def __init__(self, url: str, api_key: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._url = url
        self._auth = f"Bearer {api_key}"
        self._timeout = timeout
        self._local = threading.local()
        self._opened: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection, and whether it was used before (so may be stale)."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.sock is not None and _closed_by_peer(conn.sock):
            conn.close()  # the next request reconnects
        if conn is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = kind(self._host, self._port, timeout=self._timeout)
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
            return conn, False
        return conn, conn.sock is not None

    def send(self, request: Request) -> Reply:
        target = self._prefix + request.target
        sent = {"Authorization": self._auth, "Accept": "application/json", **request.headers}
        for attempt in range(2):
            conn, reused = self._connection()
            try:
                conn.request(request.method, target, body=request.content, headers=sent)
                response = conn.getresponse()
                data = response.read()
                break
            except _STALE as exc:
                conn.close()
                if reused and attempt == 0:
                    continue  # closed by the server between two requests: once more, anew
                raise ApiError(0, f"lost the connection to Pratai at {self._url} ({exc})") from exc
            except ConnectionRefusedError as exc:
                conn.close()
                raise unreachable(self._url, exc) from exc
            except BaseException:
                conn.close()  # a timeout or an interrupt mid-exchange: the connection is spent
                raise
        return Reply(response.status, response.reason, data)

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()
