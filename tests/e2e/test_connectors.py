"""Connectors through the platform: a database change becomes an event that runs a function."""

from __future__ import annotations

import os
import uuid

import psycopg

from tests.helpers import Server, wait_for

PG = os.environ.get("PRATAI_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def test_postgres_changes_run_a_subscribed_function(server: Server, deploy) -> None:
    table = f"orders_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG, autocommit=True) as db:
        db.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, item text)")
    try:
        name = deploy(
            {"main.py": "def main(change):\n    return [change['op'], change['row']]\n"},
            "--event",
            "message",
            "--subscribe_to",
            f"db.{table}",
        )
        # trust auth ignores the password: it is here to prove it is never shown back
        url = PG.replace("postgres@", "postgres:s3cret-pw@")
        created = server.cli_json(
            "connector-create",
            table,
            "--kind",
            "postgres",
            "--url",
            url,
            "--table",
            table,
            "--topic",
            f"db.{table}",
        )
        assert "s3cret-pw" not in str(created) and created["kind"] == "postgres"
        wait_for(
            lambda: server.cli_json("connector-show", table)["connected"],
            what="the connector to connect",
        )
        with psycopg.connect(PG, autocommit=True) as db:
            db.execute(f"INSERT INTO {table} (item) VALUES ('tea')")
            db.execute(f"UPDATE {table} SET item = 'coffee'")

        def ran():
            found = [
                i for i in server.cli_json("invocation-list", name) if i["status"] == "succeeded"
            ]
            return found if len(found) >= 2 else None

        results = sorted(r["result"][0] for r in wait_for(ran, what="two changes to run"))
        assert results == ["update", "insert"][::-1]
        shown = server.cli_json("connector-show", table)
        assert shown["forwarded"] == 2 and shown["last_error"] is None
        for text in (
            server.cli("connector-show", table).stdout,
            server.cli("connector-list").stdout,
        ):
            assert "s3cret-pw" not in text and "***" in text
        server.cli("connector-delete", table)
        assert all(c["name"] != table for c in server.cli_json("connector-list"))
    finally:
        with psycopg.connect(PG, autocommit=True) as db:
            db.execute(f"DROP TABLE IF EXISTS {table} CASCADE")


def test_bad_connectors_are_refused(server: Server) -> None:
    for args, message in (
        (["--kind", "nats", "--url", "http://x", "--topic", "t", "--subject", "a"], "nats://"),
        (["--kind", "redis", "--url", "redis://127.0.0.1:6379/0", "--topic", "t"], "stream"),
    ):
        done = server.cli("connector-create", "bad", *args, check=False)
        assert done.returncode != 0 and message in done.stderr, done.stderr
