"""The one settings object of a Pratai process, read from `PRATAI_*` variables at start.

| variable | default | allowed | meaning |
|---|---|---|---|
| PRATAI_HOME | ./.pratai | directory | data: database, artifacts, environments, credentials |
| PRATAI_HOST | 127.0.0.1 | host | where `pratai serve` listens |
| PRATAI_PORT | 8080 | integer 1-65535 | where `pratai serve` listens |
| PRATAI_DATABASE_URL | sqlite:///$PRATAI_HOME/pratai.sqlite3 | database URL | SQLite or Postgres |
| PRATAI_BROKER_URL | memory | memory, embedded, nats://host:port[,...] | work queue (see README) |
| PRATAI_NATS_REPLICAS | 1 | integer 1-5 | copies of the NATS stream: 1 (a server), 3 (a cluster) |
| PRATAI_SANDBOX_DIR | $PRATAI_HOME/sandbox | directory | all the sandboxes read (see below) |
| PRATAI_SANDBOX_PYTHON | /usr/bin/python3 | sandbox program | interpreter of functions and jobs |
| PRATAI_SANDBOX_NODE | /usr/bin/node | sandbox program | Node.js of `node20` functions |
| PRATAI_IDLE_TIMEOUT | 300 | seconds >= 0 | a warm instance idle this long is stopped |
| PRATAI_SPARE_SANDBOXES | 1 | integer 0-8 | sandboxes started ahead of cold starts (see below) |
| PRATAI_MAX_PAYLOAD_BYTES | 6291456 | integer >= 1 | request body limit for invocations |
| PRATAI_MAX_RESULT_BYTES | 6291456 | integer >= 1 | a larger return value is an error |
| PRATAI_MAX_OUTPUT_BYTES | 1048576 | integer >= 1 | stdout and stderr each keep this much |
| PRATAI_MAX_PACKAGE_BYTES | 52428800 | integer >= 1 | zip upload limit |
| PRATAI_MAX_IMAGE_BYTES | 1073741824 | integer >= 1 | image archive upload limit (`image-load`) |
| PRATAI_MAX_UNPACKED_BYTES | 262144000 | integer >= 1 | total unpacked size of a zip |
| PRATAI_MAX_COMPRESSION_RATIO | 200 | integer >= 1 | per-file ratio beyond which a zip is a bomb |
| PRATAI_MAX_PIDS | 64 | integer >= 1 | processes and threads per instance |
| PRATAI_DEFAULT_CONCURRENCY | 4 | integer >= 1 | invocations one function version runs at once |
| PRATAI_SECRETS_KEY | generated | Fernet keys | keys of secrets, newest first (core/secrets.py) |
| PRATAI_AUTH | keys | keys, keystone | keystone: Keystone v3 tokens, plus built-in keys |
| PRATAI_KEYSTONE_URL | | http(s) URL | Keystone endpoint (needed by PRATAI_AUTH=keystone) |
| PRATAI_KEYSTONE_SERVICE_TOKEN | | any | token Pratai validates user tokens with |
| PRATAI_RETRY_BASE_S | 1 | seconds >= 0 | first retry of an async invocation (then doubling) |
| PRATAI_NODE_MEMORY_MB | RAM less a reserve | integer >= 16 | a node's memory budget (see below) |
| PRATAI_NODE_TOKEN | | node token | `pratai node`: its token, from `pratai node-token-create` |
| PRATAI_NODE_NAME | the host name | name | `pratai node`: its name in the cluster, unique |
| PRATAI_NODE_SLOTS | 32 | integer >= 1 | `pratai node`: calls it runs at once, at most |
| PRATAI_HEARTBEAT_S | 2 | seconds > 0 | `pratai node`: how often it tells its state |
| PRATAI_NODE_LOST_S | 10 | seconds > 0 | a node silent this long is lost; its calls move |
| PRATAI_METRICS | on | on, off | off: no /metrics, and nothing is counted |
| PRATAI_METRICS_TOKEN | | any | bearer token of GET /metrics (unset: loopback clients only) |
| PRATAI_METRICS_PORT | 0 | integer 0-65535 | a scheduler or node serves /metrics here (0: no) |

Every variable is parsed and checked when the process starts (`Settings.from_env`); an unset or
empty variable takes its default. A bad value stops `pratai serve` at once with one line per bad
variable, e.g. `PRATAI_PORT='80.9': expected an integer from 1 to 65535`, and exit code 2. The
kinds of values:

- integer: digits only (`80.9`, `1e3` and `-1` are refused), within the range shown;
- seconds: a finite decimal number (`0.5`, `30`; not `nan`, `inf` or negative);
- directory: an existing directory, or a path under an existing directory where one can be made;
- database URL: `sqlite:///<absolute path>` or `postgresql://[user[:password]@]host[:port]/db`
  (`postgres://` too);
- sandbox program: an absolute path to an executable file under /usr, /bin or /sbin, the host
  folders a sandbox can see (symlinks are followed);
- Fernet keys: 32 url-safe base64-encoded bytes each (`Fernet.generate_key()`).

Values of secret variables are not repeated in errors, nor passwords in URLs.

The memory limits (`--memory`) of a node's instances, of functions and jobs alike, add up to at
most its memory budget, PRATAI_NODE_MEMORY_MB. By default it is the machine's RAM less a reserve
for the platform of 10% of the RAM, at least 512 MB (at most half the RAM). In a container
whose memory is limited, set it to that limit less the reserve (see `pratai/node/budget.py`).

When Pratai runs as root, sandboxes run as an unprivileged uid, which must be able to reach the
sandbox folder. If the data folder sits inside a private directory (such as /root), the sandbox
folder defaults to /var/tmp/pratai-sandbox-<hash of PRATAI_HOME> instead. The sandbox reads
nothing from where Pratai is installed: its runtime files are copied into the sandbox folder.

A cold start takes a spare sandbox when one waits (pratai/drivers/spares.py): a sandbox started
ahead, as isolated as any, that has loaded nothing until one function claims it, and is never
used by another. After each cold start a node starts PRATAI_SPARE_SANDBOXES of that shape
(runtime, requirements, network) again, for the last 4 shapes used; each waiting one holds about
10 MB outside the memory budget. 0 starts none (every cold start then starts its sandbox).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import socket
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pratai.errors import SettingsError


def _default_sandbox_python() -> str:
    return (
        "/usr/bin/python3" if Path("/usr/bin/python3").exists() else (shutil.which("python3") or "")
    )


def _default_sandbox_node() -> str:
    return "/usr/bin/node" if Path("/usr/bin/node").exists() else (shutil.which("node") or "")


def _default_node_memory_mb() -> int:
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    reserve = min(max(512, ram // 10), ram // 2)
    return ram - reserve


def _traversable_by_others(path: Path) -> bool:
    for folder in [path, *path.parents]:
        if folder.exists() and not folder.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def _default_sandbox_dir(home: Path) -> Path:
    inside = home / "sandbox"
    if os.geteuid() != 0 or _traversable_by_others(home):
        return inside
    digest = hashlib.sha256(str(home).encode()).hexdigest()[:12]
    return Path("/var/tmp") / f"pratai-sandbox-{digest}"


# ---------------------------------------------------------------- parsers: text -> value
# Each takes the variable's (non-empty) text and returns the typed value, or raises ValueError
# whose message says what is allowed.

Parser = Callable[[str], Any]


def _integer(low: int, high: int | None = None) -> Parser:
    allowed = f"an integer from {low} to {high}" if high else f"an integer >= {low}"

    def parse(raw: str) -> int:
        if not re.fullmatch(r"[0-9]+", raw.strip()):
            raise ValueError(allowed)
        value = int(raw)
        if value < low or (high is not None and value > high):
            raise ValueError(allowed)
        return value

    return parse


def _seconds(raw: str) -> float:
    allowed = "a number of seconds >= 0, e.g. 30 or 0.5"
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(allowed) from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(allowed)
    return value


def _choice(*options: str) -> Parser:
    def parse(raw: str) -> str:
        if raw not in options:
            raise ValueError(f"one of {', '.join(options)}")
        return raw

    return parse


def _text(raw: str) -> str:
    return raw


def _host(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9.:%_\-\[\]]+", raw):
        raise ValueError("a host name or IP address to listen on, e.g. 127.0.0.1 or 0.0.0.0")
    return raw


def _directory(raw: str) -> Path:
    """A directory Pratai can use, or one it can create (the parent that exists is writable)."""
    path = Path(raw).expanduser().resolve()
    existing = next(folder for folder in [path, *path.parents] if folder.exists())
    usable = existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)
    if not usable or (existing == path and not path.is_dir()):
        raise ValueError("a writable directory, or a path where one can be created")
    return path


def _database_url(raw: str) -> str:
    scheme, sep, rest = raw.partition("://")
    sqlite = scheme == "sqlite" and rest.startswith("/") and len(rest) > 1
    postgres = scheme in ("postgresql", "postgres", "postgresql+psycopg") and bool(rest)
    if not sep or not (sqlite or postgres):
        raise ValueError(
            "sqlite:///<absolute path> or postgresql://[user[:password]@]host[:port]/database"
        )
    return raw


def _broker_url(raw: str) -> str:
    servers = [urlsplit(server.strip()) for server in raw.split(",")]
    try:
        nats = all(s.scheme == "nats" and s.hostname and s.port != 0 for s in servers)
    except ValueError:  # a malformed port
        nats = False
    if raw not in ("memory", "embedded") and not nats:
        raise ValueError(
            "one of memory, embedded, or nats://host:port (comma-separated for a NATS cluster)"
        )
    return raw


def _http_url(raw: str) -> str:
    allowed = "an http:// or https:// URL, e.g. http://keystone:5000/v3"
    try:
        parts = urlsplit(raw)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a malformed host or port
        ok = False
    if not ok:
        raise ValueError(allowed)
    return raw


# The host folders a sandbox sees (see drivers/sandbox.py); /lib* hold no programs.
_SANDBOX_VISIBLE = ("/usr", "/bin", "/sbin")


def _sandbox_program(raw: str) -> str:
    real = Path(raw).resolve()
    if not (
        Path(raw).is_absolute()
        and real.is_file()
        and os.access(real, os.X_OK)
        and any(real.is_relative_to(root) for root in _SANDBOX_VISIBLE)
    ):
        raise ValueError(
            "an absolute path to an executable file under /usr, /bin or /sbin "
            "(the host folders a sandbox sees)"
        )
    return raw


def _fernet_keys(raw: str) -> str:
    from cryptography.fernet import Fernet

    keys = [key.strip() for key in raw.split(",") if key.strip()]
    try:
        for key in keys:
            Fernet(key)
    except ValueError:
        keys = []
    if not keys:
        raise ValueError(
            "Fernet keys (32 url-safe base64-encoded bytes each), comma-separated, newest first"
        )
    return raw


def _node_token(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_]+\.[A-Za-z0-9_-]+", raw):
        raise ValueError("a node token as `pratai node-token-create` prints it (<id>.<secret>)")
    return raw


def _node_name(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,63}", raw):
        raise ValueError("1-63 letters, digits, - or _ (it is a NATS subject token)")
    return raw


def _positive_seconds(raw: str) -> float:
    value = _seconds(raw)
    if value <= 0:
        raise ValueError("a number of seconds above 0")
    return value


@dataclass(frozen=True)
class _Variable:
    attribute: str
    parse: Parser
    secret: bool = False  # its value is not repeated in errors


VARIABLES: dict[str, _Variable] = {
    "PRATAI_HOME": _Variable("home", _directory),
    "PRATAI_HOST": _Variable("host", _host),
    "PRATAI_PORT": _Variable("port", _integer(1, 65535)),
    "PRATAI_DATABASE_URL": _Variable("database_url", _database_url),
    "PRATAI_BROKER_URL": _Variable("broker_url", _broker_url),
    "PRATAI_NATS_REPLICAS": _Variable("nats_replicas", _integer(1, 5)),
    "PRATAI_SANDBOX_DIR": _Variable("sandbox_dir", _directory),
    "PRATAI_SANDBOX_PYTHON": _Variable("sandbox_python", _sandbox_program),
    "PRATAI_SANDBOX_NODE": _Variable("sandbox_node", _sandbox_program),
    "PRATAI_IDLE_TIMEOUT": _Variable("idle_timeout", _seconds),
    "PRATAI_SPARE_SANDBOXES": _Variable("spare_sandboxes", _integer(0, 8)),
    "PRATAI_MAX_PAYLOAD_BYTES": _Variable("max_payload_bytes", _integer(1)),
    "PRATAI_MAX_RESULT_BYTES": _Variable("max_result_bytes", _integer(1)),
    "PRATAI_MAX_OUTPUT_BYTES": _Variable("max_output_bytes", _integer(1)),
    "PRATAI_MAX_PACKAGE_BYTES": _Variable("max_package_bytes", _integer(1)),
    "PRATAI_MAX_IMAGE_BYTES": _Variable("max_image_bytes", _integer(1)),
    "PRATAI_MAX_UNPACKED_BYTES": _Variable("max_unpacked_bytes", _integer(1)),
    "PRATAI_MAX_COMPRESSION_RATIO": _Variable("max_compression_ratio", _integer(1)),
    "PRATAI_MAX_PIDS": _Variable("max_pids", _integer(1)),
    "PRATAI_DEFAULT_CONCURRENCY": _Variable("default_concurrency", _integer(1)),
    "PRATAI_SECRETS_KEY": _Variable("secrets_key", _fernet_keys, secret=True),
    "PRATAI_AUTH": _Variable("auth", _choice("keys", "keystone")),
    "PRATAI_KEYSTONE_URL": _Variable("keystone_url", _http_url),
    "PRATAI_KEYSTONE_SERVICE_TOKEN": _Variable("keystone_service_token", _text, secret=True),
    "PRATAI_RETRY_BASE_S": _Variable("retry_base_s", _seconds),
    "PRATAI_NODE_MEMORY_MB": _Variable("node_memory_mb", _integer(16)),
    "PRATAI_NODE_TOKEN": _Variable("node_token", _node_token, secret=True),
    "PRATAI_NODE_NAME": _Variable("node_name", _node_name),
    "PRATAI_NODE_SLOTS": _Variable("node_slots", _integer(1)),
    "PRATAI_HEARTBEAT_S": _Variable("heartbeat_s", _positive_seconds),
    "PRATAI_NODE_LOST_S": _Variable("node_lost_s", _positive_seconds),
    "PRATAI_METRICS": _Variable("metrics", _choice("on", "off")),
    "PRATAI_METRICS_TOKEN": _Variable("metrics_token", _text, secret=True),
    "PRATAI_METRICS_PORT": _Variable("metrics_port", _integer(0, 65535)),
}


def _shown(raw: str, secret: bool) -> str:
    """The value as an error repeats it: secrets hidden, and any password in a URL."""
    if secret:
        return f"<hidden, {len(raw)} characters>"
    return repr(re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", raw))


def _node_name_of(host: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", host.split(".")[0])[:63] or "node"


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=lambda: Path(".pratai").resolve())
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str = ""
    broker_url: str = "memory"
    nats_replicas: int = 1
    sandbox_python: str = field(default_factory=_default_sandbox_python)
    sandbox_node: str = field(default_factory=_default_sandbox_node)
    sandbox_dir: Path = Path()  # empty means the default: $home/sandbox, or /var/tmp (see above)
    idle_timeout: float = 300.0
    spare_sandboxes: int = 1
    max_payload_bytes: int = 6 * 1024 * 1024
    max_result_bytes: int = 6 * 1024 * 1024
    max_output_bytes: int = 1024 * 1024
    max_package_bytes: int = 50 * 1024 * 1024
    max_image_bytes: int = 1024 * 1024 * 1024
    max_unpacked_bytes: int = 250 * 1024 * 1024
    max_compression_ratio: int = 200
    max_pids: int = 64
    default_concurrency: int = 4
    retry_base_s: float = 1.0
    secrets_key: str = ""
    auth: str = "keys"
    keystone_url: str = ""
    keystone_service_token: str = ""
    node_memory_mb: int = 0  # 0 means the default: RAM less a reserve (see above)
    node_token: str = ""
    node_name: str = field(default_factory=lambda: _node_name_of(socket.gethostname()))
    node_slots: int = 32
    heartbeat_s: float = 2.0
    node_lost_s: float = 10.0
    metrics: str = "on"
    metrics_token: str = ""
    metrics_port: int = 0

    def __post_init__(self) -> None:
        if self.sandbox_dir == Path():
            object.__setattr__(self, "sandbox_dir", _default_sandbox_dir(self.home))
        if self.node_memory_mb == 0:
            object.__setattr__(self, "node_memory_mb", _default_node_memory_mb())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings of `environ` (default: os.environ), every variable checked; raises
        SettingsError with one line per bad variable."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        errors: list[str] = []
        for name, variable in VARIABLES.items():
            raw = env.get(name, "")
            if raw == "":
                continue
            try:
                values[variable.attribute] = variable.parse(raw)
            except ValueError as exc:
                errors.append(f"{name}={_shown(raw, variable.secret)}: expected {exc}")
        if values.get("auth") == "keystone" and "keystone_url" not in values:
            errors.append(
                "PRATAI_AUTH='keystone' needs PRATAI_KEYSTONE_URL, the Keystone endpoint "
                "(e.g. http://keystone:5000/v3)"
            )
        if errors:
            raise SettingsError("\n".join(errors))
        return cls(**values)

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'pratai.sqlite3'}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def credentials_file(self) -> Path:
        return self.home / "credentials.json"
