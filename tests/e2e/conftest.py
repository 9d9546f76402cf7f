"""End-to-end fixtures: a fresh PostgreSQL database for a server of a test's own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import fresh_pg_database


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_pg_database("pratai_e2e") as url:
        yield url
