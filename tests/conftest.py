"""Shared fixtures: a real `pratai serve` for the session, and deploying through its CLI."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import _SANDBOX_DIRS, Server, make_zip, start_server


@pytest.fixture(scope="session", autouse=True)
def _remove_sandbox_dirs() -> Iterator[None]:
    """Servers under pytest's private tmp_path keep their sandbox folder in /var/tmp."""
    yield
    for folder in _SANDBOX_DIRS:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    # A folder other users can traverse, so the data folder keeps its default layout (sandbox/
    # inside it); servers started under pytest's private tmp_path use the /var/tmp fallback.
    base = Path(tempfile.mkdtemp(prefix="pratai-test-", dir="/var/tmp"))
    base.chmod(0o755)
    srv = start_server(
        base,
        PRATAI_IDLE_TIMEOUT="30",
        PRATAI_MAX_RESULT_BYTES=str(1024 * 1024),
        PRATAI_MAX_PAYLOAD_BYTES=str(256 * 1024),
        PRATAI_RETRY_BASE_S="0.05",
    )
    yield srv
    srv.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def deploy(server: Server, tmp_path: Path):
    """Deploys a function from a dict of files through the CLI, and returns its name."""
    counter = iter(range(10_000))

    def _deploy(files: dict[str, str | bytes], *flags: str, name: str | None = None) -> str:
        fn_name = name or f"fn-{os.getpid()}-{time.monotonic_ns() % 10**9}-{next(counter)}"
        path = tmp_path / f"{fn_name}.zip"
        path.write_bytes(make_zip(files))
        server.cli("function-create", fn_name, "--file", str(path), *flags)
        return fn_name

    return _deploy


@pytest.fixture
def make_zip_file(tmp_path: Path):
    counter = iter(range(10_000))

    def _make(files: dict[str, str | bytes]) -> Path:
        path = tmp_path / f"package-{next(counter)}.zip"
        path.write_bytes(make_zip(files))
        return path

    return _make
