"""The one settings object of a Pratai process, read from `PRATAI_*` variables at start.

| variable | default | meaning |
|---|---|---|
| PRATAI_HOME | ./.pratai | data folder: database, artifacts, environments, credentials |
| PRATAI_HOST / PRATAI_PORT | 127.0.0.1 / 8080 | where `pratai serve` listens |
| PRATAI_DATABASE_URL | sqlite:///$PRATAI_HOME/pratai.sqlite3 | SQLite or postgresql:// |
| PRATAI_BROKER_URL | memory | work queue: memory (work is durable in the store) or embedded |
| PRATAI_SANDBOX_DIR | $PRATAI_HOME/sandbox | code and environments the sandboxes read (see below) |
| PRATAI_SANDBOX_PYTHON | /usr/bin/python3 | interpreter of functions (sandbox-readable) |
| PRATAI_SANDBOX_NODE | /usr/bin/node | Node.js of `node20` functions (must be under /usr) |
| PRATAI_IDLE_TIMEOUT | 300 | seconds a warm instance may idle before it is stopped |
| PRATAI_MAX_PAYLOAD_BYTES | 6291456 | request body limit for invocations |
| PRATAI_MAX_RESULT_BYTES | 6291456 | a larger return value is an error |
| PRATAI_MAX_OUTPUT_BYTES | 1048576 | stdout and stderr each keep this much, then a marker |
| PRATAI_MAX_PACKAGE_BYTES | 52428800 | zip upload limit |
| PRATAI_MAX_IMAGE_BYTES | 1073741824 | container image archive upload limit (`image-load`) |
| PRATAI_MAX_UNPACKED_BYTES | 262144000 | total unpacked size of a zip |
| PRATAI_MAX_COMPRESSION_RATIO | 200 | per-file ratio beyond which a zip is a bomb |
| PRATAI_MAX_PIDS | 64 | processes and threads per instance |
| PRATAI_DEFAULT_CONCURRENCY | 4 | invocations one function version runs at once |
| PRATAI_SECRETS_KEY | generated | Fernet key(s) for secrets, newest first (see core/secrets.py) |
| PRATAI_AUTH | keys | keys, or keystone (Keystone v3 tokens, plus built-in keys) |
| PRATAI_KEYSTONE_URL | | Keystone endpoint, e.g. http://keystone:5000/v3 |
| PRATAI_KEYSTONE_SERVICE_TOKEN | | token Pratai validates user tokens with (optional) |
| PRATAI_RETRY_BASE_S | 1 | first retry of a failed async invocation after this, doubling after |

When Pratai runs as root, sandboxes run as an unprivileged uid, which must be able to reach the
sandbox folder. If the data folder sits inside a private directory (such as /root), the sandbox
folder defaults to /var/tmp/pratai-sandbox-<hash of PRATAI_HOME> instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


def _default_sandbox_python() -> str:
    return (
        "/usr/bin/python3" if Path("/usr/bin/python3").exists() else (shutil.which("python3") or "")
    )


def _default_sandbox_node() -> str:
    return "/usr/bin/node" if Path("/usr/bin/node").exists() else (shutil.which("node") or "")


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


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=lambda: Path(".pratai").resolve())
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str = ""
    broker_url: str = "memory"
    sandbox_python: str = field(default_factory=_default_sandbox_python)
    sandbox_node: str = field(default_factory=_default_sandbox_node)
    sandbox_dir: Path = Path()  # empty means $home/sandbox
    idle_timeout: float = 300.0
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

    def __post_init__(self) -> None:
        if self.sandbox_dir == Path():
            object.__setattr__(self, "sandbox_dir", self.home / "sandbox")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("PRATAI_HOME", ".pratai")).expanduser().resolve()

        def num(name: str, default: float) -> float:
            raw = env.get(f"PRATAI_{name}")
            return default if raw in (None, "") else float(raw)

        d = cls(home=home)
        return cls(
            home=home,
            host=env.get("PRATAI_HOST", d.host),
            port=int(num("PORT", d.port)),
            database_url=env.get("PRATAI_DATABASE_URL", ""),
            broker_url=env.get("PRATAI_BROKER_URL", d.broker_url),
            sandbox_python=env.get("PRATAI_SANDBOX_PYTHON", d.sandbox_python),
            sandbox_node=env.get("PRATAI_SANDBOX_NODE", d.sandbox_node),
            sandbox_dir=Path(env["PRATAI_SANDBOX_DIR"]).resolve()
            if env.get("PRATAI_SANDBOX_DIR")
            else _default_sandbox_dir(home),
            idle_timeout=num("IDLE_TIMEOUT", d.idle_timeout),
            max_payload_bytes=int(num("MAX_PAYLOAD_BYTES", d.max_payload_bytes)),
            max_result_bytes=int(num("MAX_RESULT_BYTES", d.max_result_bytes)),
            max_output_bytes=int(num("MAX_OUTPUT_BYTES", d.max_output_bytes)),
            max_package_bytes=int(num("MAX_PACKAGE_BYTES", d.max_package_bytes)),
            max_image_bytes=int(num("MAX_IMAGE_BYTES", d.max_image_bytes)),
            max_unpacked_bytes=int(num("MAX_UNPACKED_BYTES", d.max_unpacked_bytes)),
            max_compression_ratio=int(num("MAX_COMPRESSION_RATIO", d.max_compression_ratio)),
            max_pids=int(num("MAX_PIDS", d.max_pids)),
            default_concurrency=int(num("DEFAULT_CONCURRENCY", d.default_concurrency)),
            retry_base_s=num("RETRY_BASE_S", d.retry_base_s),
            secrets_key=env.get("PRATAI_SECRETS_KEY", ""),
            auth=env.get("PRATAI_AUTH", "keys"),
            keystone_url=env.get("PRATAI_KEYSTONE_URL", ""),
            keystone_service_token=env.get("PRATAI_KEYSTONE_SERVICE_TOKEN", ""),
        )

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
