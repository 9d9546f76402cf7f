"""A nats-server with JetStream for the session's broker tests (each test its own stream)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import nats_servers


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with nats_servers(tmp_path_factory.mktemp("nats")) as servers:
        yield servers[0].url


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The fast tier starts no nats-server: the NATS variants of the broker contract leave it."""
    if not config.getoption("--fast"):
        return
    nats = [i for i in items if i.nodeid.startswith("tests/broker/") and "[nats" in i.nodeid]
    if nats:
        config.hook.pytest_deselected(items=nats)
        items[:] = [item for item in items if item not in nats]
