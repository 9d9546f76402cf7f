"""A real `pratai serve` in a throwaway folder, for the benchmarks."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from pratai.settings import Settings


@dataclass
class Running:
    url: str
    port: int
    key: str
    home: Path  # PRATAI_HOME
    scratch: Path  # the throwaway folder (logs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url} exited early")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


@contextmanager
def pratai_server(**extra_env: str) -> Iterator[Running]:
    scratch = Path(tempfile.mkdtemp(prefix="pratai-bench-"))
    port = free_port()
    env = {
        **os.environ,
        "PRATAI_HOME": str(scratch / "home"),
        "PRATAI_PORT": str(port),
        **extra_env,
    }
    logs = open(scratch / "server.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "pratai", "serve"], env=env, stdout=logs, stderr=logs
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthz", server)
        key = json.loads((scratch / "home" / "credentials.json").read_text())["api_key"]
        yield Running(url, port, key, scratch / "home", scratch)
    finally:
        server.terminate()
        server.wait()
        logs.close()
        shutil.rmtree(Settings.from_env(env).sandbox_dir, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
