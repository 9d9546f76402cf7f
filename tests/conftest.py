"""Shared fixtures: `pratai serve` for the session, and deploying through its CLI; the fast tier.

`pytest --fast` (`make test-fast`) runs only the tests marked `fast`, and the `server` and
`assemble` fixtures give them in-process parts (MemoryStore, the memory broker, FakeDriver)
instead of a `pratai serve` process with SQLite and bubblewrap. Without it, every test runs on
the real parts, those of the fast tier included.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pratai.core.ports import Store
from pratai.server import Platform
from pratai.settings import Settings
from pratai.store import open_store
from pratai.store.memory import MemoryStore
from tests.helpers import _SANDBOX_DIRS, Server, fast_platform, make_zip, start_server

# The fast tier, module by module: the tests of a module that are not in it (they need a service
# or a sandbox of their own), or None where the module marks its fast tests itself.
FAST_MODULES: dict[str, tuple[str, ...] | None] = {
    "tests/api/test_http.py": (
        "test_close_returns_promptly_right_after_an_async_invoke",  # their own real platform
        "test_close_returns_promptly_while_a_job_runs",
        "test_invoking_a_function_whose_build_failed_is_409",  # the package index
    ),
    "tests/api/test_node_tokens.py": (),
    "tests/api/test_metrics.py": (
        "test_connectors_up_or_down_and_the_messages_they_forward",  # a nats-server
    ),
    "tests/artifacts/test_filesystem.py": (),
    "tests/artifacts/test_open.py": (),
    "tests/broker/test_delivery.py": (),
    "tests/broker/test_embedded.py": (),
    "tests/cli/test_imports.py": (),
    "tests/cli/test_nodes.py": (),
    "tests/cli/test_progress.py": ("test_a_build_shows_a_spinner_and_the_time_it_takes",),
    "tests/compat/test_multyvac.py": (),
    "tests/contracts/test_artifacts_contract.py": None,
    "tests/contracts/test_driver_contract.py": None,
    "tests/contracts/test_store_contract.py": None,
    "tests/core/test_connectors_service.py": (),
    "tests/core/test_functions_service.py": (  # the package index
        "test_failed_build_keeps_the_previous_version_serving",
        "test_failed_first_build_leaves_no_active_version",
        "test_resume_builds_finishes_a_version_left_building",
    ),
    "tests/core/test_jobs_service.py": (),
    "tests/core/test_node_packages.py": ("test_npm_install_cache_and_failure",),  # npm's registry
    "tests/core/test_node_tokens.py": (),
    "tests/core/test_packages.py": (),
    "tests/core/test_provisioning.py": (),
    "tests/core/test_scheduler.py": (),
    "tests/core/test_stats.py": (),
    "tests/drivers/test_runtimes.py": (),
    "tests/node/test_budget.py": (),
    "tests/node/test_worker.py": (),
    "tests/sdk/test_aio.py": (),
    "tests/sdk/test_client.py": ("test_a_failed_build_raises",),  # the package index
    "tests/sdk/test_credentials.py": (),
    "tests/sdk/test_executor.py": (),
    "tests/sdk/test_import.py": (),
    "tests/sdk/test_jobs.py": ("test_a_missing_module_names_itself_then_requirements_provide_it",),
    "tests/sdk/test_pickling.py": (),
    "tests/sdk/test_protocol.py": (),
    "tests/sdk/test_surface.py": (),
    "tests/store/test_batching.py": (),
    "tests/test_errors.py": (),
}
ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast",
        action="store_true",
        help="only the fast tier (tests marked fast), on in-process parts: no bubblewrap, "
        "no database, no `pratai serve` process",
    )


def pytest_configure(config: pytest.Config) -> None:
    missing = [path for path in FAST_MODULES if not (ROOT / path).is_file()]
    if missing:  # a module renamed or moved would leave the fast tier without a word
        raise pytest.UsageError(f"FAST_MODULES names files that do not exist: {missing}")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """In the fast tier, modules outside it are not even imported."""
    if not config.getoption("--fast") or collection_path.suffix != ".py":
        return None
    if not collection_path.is_relative_to(ROOT):
        return None
    return collection_path.relative_to(ROOT).as_posix() not in FAST_MODULES or None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module, _, name = item.nodeid.partition("::")
        outside = FAST_MODULES.get(module)
        if outside is not None and name.split("[")[0] not in outside:
            item.add_marker(pytest.mark.fast)
    if not config.getoption("--fast"):
        return
    slow = [item for item in items if item.get_closest_marker("fast") is None]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item.get_closest_marker("fast") is not None]


@pytest.fixture(scope="session")
def fast(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--fast"))


@pytest.fixture(scope="session")
def assemble(fast: bool) -> Callable[[Settings], Platform]:
    """Platform.assemble, on in-process parts in the fast tier."""
    return fast_platform if fast else Platform.assemble


@pytest.fixture(scope="session")
def make_store(fast: bool) -> Callable[[Settings], Store]:
    """The (unopened) store the settings name, a MemoryStore in the fast tier."""
    return (lambda _: MemoryStore()) if fast else (lambda settings: open_store(settings.store_url))


@pytest.fixture
def code_root() -> Iterator[Path]:
    """A world-readable folder for functions' code: the process driver's sandbox runs as an
    unprivileged host uid, which pytest's private tmp_path would keep out."""
    root = Path(tempfile.mkdtemp(prefix="pratai-test-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _remove_sandbox_dirs() -> Iterator[None]:
    """Servers under pytest's private tmp_path keep their sandbox folder in /var/tmp."""
    yield
    for folder in _SANDBOX_DIRS:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def server(fast: bool) -> Iterator[Server]:
    # A folder other users can traverse, so the data folder keeps its default layout (sandbox/
    # inside it); servers started under pytest's private tmp_path use the /var/tmp fallback.
    base = Path(tempfile.mkdtemp(prefix="pratai-test-", dir="/var/tmp"))
    base.chmod(0o755)
    srv = start_server(
        base,
        fast=fast,
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
