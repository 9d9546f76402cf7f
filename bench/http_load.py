"""A small keep-alive HTTP/1.1 load generator on raw asyncio streams (little client overhead)."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms)


def _request(host: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        f"Content-Length: {len(body)}",
        "Content-Type: application/json",
    ]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> int:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def run_load(
    host: str,
    port: int,
    path: str,
    headers: dict[str, str],
    body: bytes,
    concurrency: int,
    requests: int,
    warmup: int = 50,
    expect: int = 200,
) -> LoadResult:
    raw = _request(f"{host}:{port}", path, headers, body)
    latencies: list[float] = []
    remaining = requests
    barrier = asyncio.Barrier(concurrency + 1)

    async def worker() -> None:
        nonlocal remaining
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for _ in range(max(1, warmup // concurrency)):
                await _one(reader, writer, raw)
            await barrier.wait()
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                status = await _one(reader, writer, raw)
                latencies.append((time.perf_counter() - started) * 1000)
                if status != expect:
                    raise RuntimeError(f"HTTP {status} during the benchmark")
        finally:
            writer.close()

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await barrier.wait()  # the clock starts once every connection has warmed up
    started = time.perf_counter()
    await asyncio.gather(*tasks)
    return LoadResult(requests, time.perf_counter() - started, latencies)
