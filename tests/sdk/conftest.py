"""An SDK client of the session's real server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

import pratai
from tests.helpers import Server


@pytest.fixture
def client(server: Server) -> Iterator[pratai.Client]:
    with pratai.Client(server.url, server.api_key) as c:
        yield c


@pytest_asyncio.fixture(loop_scope="function")
async def aclient(server: Server) -> AsyncIterator[pratai.AsyncClient]:
    async with pratai.AsyncClient(server.url, server.api_key) as c:
        yield c
