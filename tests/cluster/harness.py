"""A whole Pratai cluster of real processes on this machine, for the cluster tests.

NATS (one server or three) listens on a bridge the test makes; apis and schedulers run on the
host with a fresh PostgreSQL database; each node runs in a network namespace of its own, joined
to the bridge by a veth pair, from which it reaches NATS and nothing else (PostgreSQL listens on
loopback, which a namespace does not share).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from tests.helpers import NatsServer, free_port, fresh_pg_database, nats_servers, wait_for


def _byte() -> int:
    return secrets.randbelow(250) + 1


def can_make_namespaces() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@dataclass
class Bridge:
    """A bridge with its own /24, and a namespace per node attached to it."""

    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    subnet: str = field(
        default_factory=lambda: f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250)}"
    )
    namespaces: list[str] = field(default_factory=list)
    addresses: dict[str, str] = field(default_factory=dict)  # a namespace's, on the bridge

    @property
    def name(self) -> str:
        return f"prb{self.tag}"

    @property
    def host_ip(self) -> str:
        return f"{self.subnet}.1"

    def create(self) -> None:
        _ip("link", "add", self.name, "type", "bridge")
        _ip("addr", "add", f"{self.host_ip}/24", "dev", self.name)
        _ip("link", "set", self.name, "up")

    def namespace(self) -> str:
        """A new namespace on the bridge; returns its name."""
        index = len(self.namespaces) + 2
        ns = f"prn{self.tag}{index}"
        outside, inside = f"pva{self.tag}{index}", f"pvb{self.tag}{index}"
        _ip("netns", "add", ns)
        self.namespaces.append(ns)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", outside, "master", self.name)
        _ip("link", "set", outside, "up")
        _ip("link", "set", inside, "netns", ns)
        self.addresses[ns] = f"{self.subnet}.{index}"
        _ip("-n", ns, "addr", "add", f"{self.addresses[ns]}/24", "dev", inside)
        _ip("-n", ns, "link", "set", inside, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        return ns

    def remove(self) -> None:
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.name], capture_output=True)


@dataclass
class Proc:
    """One Pratai process (`pratai api|scheduler|node`), its output in a log file."""

    role: str
    home: Path
    env: dict[str, str]
    netns: str | None = None
    host_sys: bool = False  # in `netns`, with the host's /sys (and cgroups), for podman
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.home.parent / f"{self.home.name}.log"

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pratai", self.role]
        if self.netns is not None and self.host_sys:  # the network namespace alone
            command = ["nsenter", f"--net=/run/netns/{self.netns}", *command]
        elif self.netns is not None:  # `ip netns exec` also mounts a /sys of the namespace's
            command = ["ip", "netns", "exec", self.netns, *command]
        out = open(self.log, "ab")  # noqa: SIM115 - the process keeps it
        self.process = subprocess.Popen(command, env=self.env, stdout=out, stderr=out)

    def alive(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(f"pratai {self.role} exited:\n{self.log.read_text()}")
        return True

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a stopped one cannot stop otherwise
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Cluster:
    tmp: Path
    bridge: Bridge | None
    nats: list[NatsServer]
    database_url: str
    secrets_key: str = field(default_factory=lambda: Fernet.generate_key().decode())
    apis: list[Proc] = field(default_factory=list)
    schedulers: list[Proc] = field(default_factory=list)
    nodes: list[Proc] = field(default_factory=list)
    node_token: str = ""

    @property
    def broker_url(self) -> str:
        return ",".join(server.url for server in self.nats)

    def _env(self, home: Path, **extra: str) -> dict[str, str]:
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("PRATAI_")},
            "PRATAI_HOME": str(home),
            "PRATAI_BROKER_URL": self.broker_url,
            "PRATAI_NATS_REPLICAS": str(min(3, len(self.nats))),
            "PRATAI_HEARTBEAT_S": "0.5",
            "PRATAI_NODE_LOST_S": "3",
            **extra,
        }

    def start_api(self) -> Proc:
        home = self.tmp / f"api{len(self.apis)}"
        port = free_port()
        env = self._env(
            home,
            PRATAI_DATABASE_URL=self.database_url,
            PRATAI_SECRETS_KEY=self.secrets_key,
            PRATAI_PORT=str(port),
        )
        api = Proc("api", home, env)
        api.start()
        self.apis.append(api)
        wait_for(lambda: api.alive() and _healthy(port), timeout=60, what="pratai api to answer")
        return api

    def start_scheduler(self, **extra: str) -> Proc:
        home = self.tmp / f"scheduler{len(self.schedulers)}"
        env = self._env(
            home,
            PRATAI_DATABASE_URL=self.database_url,
            PRATAI_SECRETS_KEY=self.secrets_key,
            **extra,
        )
        scheduler = Proc("scheduler", home, env)
        scheduler.start()
        self.schedulers.append(scheduler)
        return scheduler

    def start_node(
        self,
        name: str,
        *,
        memory_mb: int = 2048,
        slots: int = 8,
        wait: bool = True,
        own_podman: bool = False,
        **extra: str,
    ) -> Proc:
        """`own_podman`: the node runs container images with an image store of its own (not
        the host's, which the apis load into), and sees the host's cgroups, which runc needs:
        it enters only the network namespace (`ip netns exec` mounts a /sys without them)."""
        if not self.node_token:
            self.node_token = (
                self.http().post("/v1/node-tokens", json={"name": "tests"}).json()["token"]
            )
        home = self.tmp / f"node-{name}"
        env = self._env(
            home,
            PRATAI_NODE_TOKEN=self.node_token,
            PRATAI_NODE_NAME=name,
            PRATAI_NODE_MEMORY_MB=str(memory_mb),
            PRATAI_NODE_SLOTS=str(slots),
            **(self.podman_env(name) if own_podman else {}),
            **extra,
        )
        netns = self.bridge.namespace() if self.bridge else None
        node = Proc("node", home, env, netns=netns, host_sys=own_podman)
        node.start()
        self.nodes.append(node)
        if wait:
            self.wait_node_state(name, "ready")
        return node

    def podman_env(self, name: str) -> dict[str, str]:
        """The environment of node `name`'s own podman image store (in the test's folder)."""
        root = self.tmp / f"podman-{name}"
        conf = root / "storage.conf"
        if not conf.exists():
            driver = subprocess.run(
                ["podman", "info", "--format", "{{.Store.GraphDriverName}}"],
                capture_output=True, text=True, check=True,
            ).stdout.strip()  # fmt: skip
            root.mkdir(parents=True)
            conf.write_text(
                f'[storage]\ndriver = "{driver}"\n'
                f'graphroot = "{root}/graph"\nrunroot = "{root}/run"\n'
            )
        return {"CONTAINERS_STORAGE_CONF": str(conf)}

    def node_podman(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        """podman on node `name`'s own image store (`start_node(own_podman=True)`)."""
        env = {**os.environ, **self.podman_env(name)}
        return subprocess.run(["podman", *args], env=env, capture_output=True, text=True)

    def api_url(self, index: int = 0) -> str:
        return f"http://127.0.0.1:{self.apis[index].env['PRATAI_PORT']}"

    @property
    def admin_key(self) -> str:
        credentials = json.loads((self.apis[0].home / "credentials.json").read_text())
        return str(credentials["api_key"])

    def http(self, index: int = 0, timeout: float = 120) -> httpx.Client:
        return httpx.Client(
            base_url=self.api_url(index),
            headers={"Authorization": f"Bearer {self.admin_key}"},
            timeout=timeout,
        )

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRATAI_")}
        env |= {"PRATAI_URL": self.api_url(), "PRATAI_API_KEY": self.admin_key}
        env["HOME"] = str(self.tmp / "user")
        done = subprocess.run(
            [sys.executable, "-m", "pratai", *args], env=env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(f"pratai {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done

    def node_states(self) -> dict[str, str]:
        with self.http() as http:
            return {node["name"]: node["state"] for node in http.get("/v1/nodes").json()}

    def wait_node_state(self, name: str, state: str, timeout: float = 60) -> None:
        def reached() -> bool:
            for proc in self.nodes:
                if proc.env["PRATAI_NODE_NAME"] == name and state not in ("lost", "stopped"):
                    proc.alive()
            return self.node_states().get(name) == state

        wait_for(reached, timeout=timeout, what=f"node {name} to be {state}")

    def stop(self) -> None:
        for proc in [*self.nodes, *self.schedulers, *self.apis]:
            proc.stop()


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def cluster(tmp: Path, *, nats_count: int = 1, namespaces: bool = True) -> Iterator[Cluster]:
    """NATS, a fresh database, no pratai process yet (start them with `start_*`)."""
    with ExitStack() as stack:
        bridge = Bridge() if namespaces else None
        if bridge is not None:
            bridge.create()
            stack.callback(bridge.remove)
        host = bridge.host_ip if bridge else "127.0.0.1"
        servers = stack.enter_context(nats_servers(tmp, nats_count, host=host))
        database_url = stack.enter_context(fresh_pg_database("pratai_cluster"))
        made = Cluster(tmp, bridge, servers, database_url)
        try:
            yield made
        finally:
            made.stop()


def outcome(record: dict[str, Any]) -> tuple[Any, ...]:
    return record["status"], record.get("result")
