"""Test helpers: zips built in memory and a real `pratai serve` process."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from pratai.settings import Settings


def make_zip(files: dict[str, str | bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            archive.writestr(name, data)
    return buffer.getvalue()


def code(source: str) -> str:
    return textwrap.dedent(source).lstrip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Server:
    home: Path
    port: int
    env: dict[str, str]
    cwd: Path | None = None  # `python -m pratai` imports pratai from here first
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.home.parent / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115 - the server keeps it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pratai", "serve"],
            env=self.env,
            stdout=out,
            stderr=out,
            cwd=self.cwd,
        )

        def healthy() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"server exited:\n{self.log.read_text()}")
            try:
                return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout=60, what="pratai serve to answer /healthz")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def api_key(self) -> str:
        return str(json.loads((self.home / "credentials.json").read_text())["api_key"])

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.api_key}"}, timeout=60
        )

    def cli(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Runs the CLI as a user would after `make run`: no flags, credentials from PRATAI_HOME.

        The user has a home of their own, so a `pratai login` of whoever runs the tests (which
        would win over PRATAI_HOME's file) cannot leak in."""
        env = {k: v for k, v in self.env.items() if k not in ("PRATAI_URL", "PRATAI_API_KEY")}
        env["HOME"] = str(self.home.parent / "user")
        done = subprocess.run(
            [sys.executable, "-m", "pratai", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"pratai {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done

    def cli_json(self, *args: str):
        return json.loads(self.cli(*args, "-o", "json").stdout)


_SANDBOX_DIRS: list[Path] = []


def start_server(tmp: Path, cwd: Path | None = None, **env: str) -> Server:
    home = tmp / "home"
    port = free_port()
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PRATAI_")},
        "PRATAI_HOME": str(home),
        "PRATAI_PORT": str(port),
        **env,
    }
    server = Server(home=home, port=port, env=full_env, cwd=cwd)
    sandbox_dir = Settings.from_env(full_env).sandbox_dir
    if not sandbox_dir.is_relative_to(home):
        _SANDBOX_DIRS.append(sandbox_dir)
    server.start()
    return server


PG_SERVER = os.environ.get("PRATAI_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def fresh_pg_database(prefix: str) -> Iterator[str]:
    """The URL of a new, empty database on the test PostgreSQL server, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_SERVER, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_SERVER.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_SERVER, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
