"""The postgres connector against the real server (the shared one; a private cluster to restart).

Fails (does not skip) when PostgreSQL is unreachable; PRATAI_TEST_PG_URL points elsewhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from pratai.connectors.postgres import PostgresConnector
from tests.connectors.support import Collector, PrivatePostgres, running
from tests.helpers import fresh_pg_database, wait_for_async


@pytest.fixture(scope="module")
def pg_db() -> Iterator[str]:
    """A fresh database for this module (the outbox table lives in it)."""
    with fresh_pg_database("pratai_conn") as url:
        yield url


def make_table(url: str) -> str:
    table = f"orders_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, item text, qty int)")
    return table


def sql(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def outbox_count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pratai_outbox WHERE tbl = %s", (f"public.{table}",)
        ).fetchone()
        assert row is not None
        return int(row[0])


async def test_insert_update_delete_arrive_in_order(pg_db: str) -> None:
    table = make_table(pg_db)
    connector = PostgresConnector(pg_db, table)
    got = Collector()
    async with running(connector, got):
        await wait_for_async(lambda: connector.status.connected, what="connected")
        assert connector.status.connected_at is not None
        sql(
            pg_db,
            f"INSERT INTO {table} VALUES (1, 'apple', 2)",
            f"INSERT INTO {table} VALUES (2, 'pear', 1)",
            f"UPDATE {table} SET qty = 5 WHERE id = 1",
            f"DELETE FROM {table} WHERE id = 2",
        )
        await wait_for_async(lambda: len(got.items) >= 4, what="4 changes")
        assert [i.type for i in got.items] == [
            "postgres.insert",
            "postgres.insert",
            "postgres.update",
            "postgres.delete",
        ]
        assert got.items[0].data == {
            "op": "insert",
            "table": table,
            "row": {"id": 1, "item": "apple", "qty": 2},
            "old": None,
        }
        assert got.items[2].data["row"] == {"id": 1, "item": "apple", "qty": 5}
        assert got.items[2].data["old"] == {"id": 1, "item": "apple", "qty": 2}
        assert got.items[3].data["op"] == "delete"
        assert got.items[3].data["row"] == {"id": 2, "item": "pear", "qty": 1}
        assert all(i.subject == table for i in got.items)
        ids = [i.id for i in got.items]
        assert all(i is not None and i.startswith(f"{table}-") for i in ids)
        assert len(set(ids)) == 4
        assert connector.status.forwarded == 4
        assert connector.status.connected is True
        assert connector.status.last_error is None
        await wait_for_async(lambda: outbox_count(pg_db, table) == 0, what="emitted rows deleted")
        # A big row: far over NOTIFY's 8000-byte payload limit.
        sql(pg_db, f"INSERT INTO {table} VALUES (3, '{'x' * 20000}', 1)")
        await wait_for_async(lambda: len(got.items) == 5, what="the big row")
        assert len(got.items[4].data["row"]["item"]) == 20000


async def test_emit_failure_retries_and_stopped_connector_loses_nothing(pg_db: str) -> None:
    table = make_table(pg_db)
    connector = PostgresConnector(pg_db, table)
    got = Collector(fail=1)
    async with running(connector, got):
        await wait_for_async(lambda: connector.status.connected, what="connected")
        sql(pg_db, f"INSERT INTO {table} VALUES (1, 'a', 1)")
        await wait_for_async(lambda: len(got.items) == 1, what="the change after a failed emit")
        assert got.calls == 2
        assert connector.status.forwarded == 1
        assert connector.status.last_error is not None
        assert "emit failed" in connector.status.last_error
    # Changes made while no connector runs wait in the outbox.
    sql(pg_db, *(f"INSERT INTO {table} VALUES ({n}, 'later', {n})" for n in range(2, 6)))
    again = PostgresConnector(pg_db, table)
    async with running(again, got):
        await wait_for_async(lambda: len(got.items) == 5, what="changes made while stopped")
    assert [i.data["row"]["id"] for i in got.items] == [1, 2, 3, 4, 5]


async def test_missing_table_is_an_error_then_recovers(pg_db: str) -> None:
    table = f"later_{uuid.uuid4().hex[:8]}"
    connector = PostgresConnector(pg_db, table)
    got = Collector()
    async with running(connector, got):
        await wait_for_async(lambda: connector.status.last_error is not None, what="an error")
        assert "does not exist" in (connector.status.last_error or "")
        assert connector.status.connected is False
        sql(pg_db, f"CREATE TABLE {table} (id int)")
        await wait_for_async(lambda: connector.status.connected, what="connected", timeout=10)
        sql(pg_db, f"INSERT INTO {table} VALUES (7)")
        await wait_for_async(lambda: len(got.items) == 1, what="the insert")
        assert got.items[0].data["row"] == {"id": 7}


async def test_server_restart() -> None:
    pg = PrivatePostgres()
    try:
        pg.start()
        sql(pg.url, "CREATE TABLE orders (id int PRIMARY KEY, item text)")
        connector = PostgresConnector(pg.url, "orders")
        got = Collector()
        async with running(connector, got):
            await wait_for_async(lambda: connector.status.connected, what="connected")
            sql(pg.url, "INSERT INTO orders VALUES (1, 'before')")
            await wait_for_async(lambda: len(got.items) == 1, what="first insert")
            assert connector.status.last_error is None
            pg.stop()
            await wait_for_async(lambda: not connector.status.connected, what="disconnected")
            await wait_for_async(lambda: connector.status.last_error is not None, what="an error")
            pg.start()
            # Written as soon as the server is back, maybe before the connector reconnected.
            sql(pg.url, "INSERT INTO orders VALUES (2, 'after')", "UPDATE orders SET item = 'x'")
            await wait_for_async(lambda: len(got.items) == 4, what="changes after the restart")
            assert connector.status.connected is True
            assert connector.status.forwarded == 4
        assert [(i.data["op"], i.data["row"]["id"]) for i in got.items] == [
            ("insert", 1),
            ("insert", 2),
            ("update", 1),
            ("update", 2),
        ] or [(i.data["op"], i.data["row"]["id"]) for i in got.items] == [
            ("insert", 1),
            ("insert", 2),
            ("update", 2),
            ("update", 1),
        ]
    finally:
        pg.destroy()


def test_error_messages_hide_the_password() -> None:
    connector = PostgresConnector("postgresql://bob:hunter2@127.0.0.1:1/db", "t")
    connector._record_error(RuntimeError("could not connect to bob:hunter2@127.0.0.1 hunter2"))
    assert connector.status.last_error is not None
    assert "hunter2" not in connector.status.last_error
