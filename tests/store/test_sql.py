"""What only the SQL store does: URLs, migrations, SQLite's settings, racing first opens.
Its behaviour as a `Store` is in tests/contracts/test_store_contract.py.

SQLite on tmp_path and PostgreSQL on a fresh database per test on 127.0.0.1.

PostgreSQL tests fail (they do not skip) when the server is unreachable; point them elsewhere
with PRATAI_TEST_PG_URL (a server URL whose database may be created and dropped).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from pratai.core.models import Project, new_id
from pratai.store import open_store
from pratai.store.sql import MIGRATIONS_DIR, SqlStore, normalize_url
from pratai.store.tables import metadata
from tests.helpers import fresh_pg_database

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sub' / 'pratai.sqlite3'}"
        return
    with fresh_pg_database("pratai_test") as url:
        yield url


def test_normalize_url() -> None:
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
    assert SqlStore("postgresql://postgres@127.0.0.1/x").engine.driver == "psycopg"


async def test_open_is_idempotent_and_schema_matches_tables(db_url: str) -> None:
    s = open_store(db_url)
    await s.open()
    p = Project(id=new_id(), name="acme")
    await s.create_project(p)
    await s.close()
    s2 = SqlStore(db_url)
    await s2.open()
    await s2.open()  # a second open on the same instance is a no-op
    assert await s2.get_project(p.id) == p
    await s2.close()
    s3 = SqlStore(db_url)
    await s3.open()  # migrating an up-to-date database again changes nothing
    await s3.close()

    engine = SqlStore(db_url).engine
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
        names = set(sa.inspect(conn).get_table_names())
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    assert diffs == []
    assert names == set(metadata.tables) | {"alembic_version"}
    # the one head of the migrations (two heads, as branches may leave them, fail here)
    assert version == ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    if db_url.startswith("sqlite"):
        assert Path(db_url.removeprefix("sqlite:///")).exists()


async def test_sqlite_pragmas(tmp_path: Path) -> None:
    s = SqlStore(f"sqlite:///{tmp_path / 'a' / 'b' / 'db.sqlite3'}")
    await s.open()
    try:

        def pragmas(c: sa.Connection) -> tuple[object, ...]:
            return tuple(
                c.exec_driver_sql(f"PRAGMA {p}").scalar()
                for p in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            )

        assert await s._run(pragmas) == ("wal", 1, 1, 5000)
    finally:
        await s.close()


def test_concurrent_first_open_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.sqlite3'}"
    code = (
        "import asyncio, sys\n"
        "from pratai.store.sql import SqlStore\n"
        "async def main():\n"
        "    s = SqlStore(sys.argv[1]); await s.open(); await s.close()\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url], env=env, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
    engine = SqlStore(url).engine
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1
    engine.dispose()
