"""PostgreSQL connector: inserts, updates and deletes on one table become events.

How changes are captured: triggers, an outbox table, and LISTEN/NOTIFY as a wake-up call.

On every connect the connector installs (idempotently, under an advisory lock):

- `pratai_outbox(id bigserial, tbl text, op text, row jsonb, old jsonb, created_at timestamptz)`;
- a trigger function `pratai_outbox_capture()` that inserts the change into the outbox and
  `NOTIFY pratai_outbox`;
- an `AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW` trigger `pratai_outbox_capture` on the table.

The connector `LISTEN`s, then drains the outbox rows of its table in id order: it emits each one
and deletes it once `emit` returned. It drains once on connect, on every notification, and every
few seconds anyway.

Why not NOTIFY payloads alone: a notification is lost when nobody listens (the connector was
restarting, or the network broke), and its payload is limited to 8000 bytes, too little for a wide
row. The outbox row is written in the same transaction as the change, so a committed change is
never lost: whatever happened while the connector was away is drained when it comes back, and a
big row is just a big jsonb value. Deleting emitted rows (rather than remembering the highest id
seen) also covers transactions that commit out of id order. Why not logical decoding: it needs
`wal_level=logical`, a replication slot that holds WAL forever when the connector is gone, and
the replication privilege; triggers work on any server and with any ordinary owner of the table.

Delivery is at-least-once: a crash between `emit` and the delete re-emits that change.

Event data: `{"op": "insert"|"update"|"delete", "table": TABLE, "row": ROW, "old": OLD}` where
ROW is the new row (the deleted row for a delete) and OLD the row before an update or delete
(null for an insert). `Incoming.id` is `f"{table}-{outbox id}"`, type `postgres.<op>`.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from pratai.connectors._common import ReconnectingConnector
from pratai.connectors.base import Emit, Incoming

CHANNEL = "pratai_outbox"
OUTBOX = "pratai_outbox"
TRIGGER = "pratai_outbox_capture"
BATCH = 100
POLL_SECONDS = 5.0
# Arbitrary but fixed: serialises the DDL of connectors starting at once on one database.
_DDL_LOCK_KEY = 0x70726174  # "prat"

_SETUP_OUTBOX = f"""
CREATE TABLE IF NOT EXISTS {OUTBOX} (
    id bigserial PRIMARY KEY,
    tbl text NOT NULL,
    op text NOT NULL,
    row jsonb,
    old jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS {OUTBOX}_tbl_id ON {OUTBOX} (tbl, id);
CREATE OR REPLACE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {OUTBOX} (tbl, op, row, old) VALUES (
        TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME,
        lower(TG_OP),
        CASE WHEN TG_OP = 'DELETE' THEN to_jsonb(OLD) ELSE to_jsonb(NEW) END,
        CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE to_jsonb(OLD) END
    );
    PERFORM pg_notify('{CHANNEL}', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME);
    RETURN NULL;
END
$$;
"""


class PostgresConnector(ReconnectingConnector):
    kind = "postgres"

    def __init__(self, url: str, table: str) -> None:
        super().__init__(url)
        self.table = table

    async def _session(self, emit: Emit) -> None:
        async with await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, connect_timeout=5
        ) as conn:
            qualified = await self._install(conn)
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
            self._connected()
            while True:
                await self._drain(conn, qualified, emit)
                # Wake on the first notification or after POLL_SECONDS; either way drain again.
                async for _ in conn.notifies(timeout=POLL_SECONDS, stop_after=1):
                    pass

    async def _install(self, conn: psycopg.AsyncConnection[Any]) -> str:
        """Creates the outbox, trigger function and trigger; returns the table as schema.name."""
        async with conn.transaction():
            cur = await conn.execute(
                "SELECT n.nspname, c.relname FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.oid = to_regclass(%s)",
                (self.table,),
            )
            found = await cur.fetchone()
            if found is None:
                raise LookupError(f"table {self.table!r} does not exist")
            schema, name = str(found[0]), str(found[1])
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))
            await conn.execute(_SETUP_OUTBOX.encode())
            target = sql.Identifier(schema, name)
            await conn.execute(
                sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(TRIGGER), target)
            )
            await conn.execute(
                sql.SQL(
                    "CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {}"
                    " FOR EACH ROW EXECUTE FUNCTION {}()"
                ).format(sql.Identifier(TRIGGER), target, sql.Identifier(TRIGGER))
            )
        return f"{schema}.{name}"

    async def _drain(self, conn: psycopg.AsyncConnection[Any], qualified: str, emit: Emit) -> None:
        """Emits every outbox row of the table in id order, deleting each once emitted."""
        while True:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(
                    sql.SQL(
                        "SELECT id, op, row, old FROM {} WHERE tbl = %s ORDER BY id LIMIT %s"
                    ).format(sql.Identifier(OUTBOX)),
                    (qualified, BATCH),
                )
                rows = await cur.fetchall()
            for row in rows:
                op = str(row["op"])
                incoming = Incoming(
                    data={"op": op, "table": self.table, "row": row["row"], "old": row["old"]},
                    subject=self.table,
                    type=f"postgres.{op}",
                    id=f"{self.table}-{row['id']}",
                )
                await self._forward(emit, incoming)
                await conn.execute(
                    sql.SQL("DELETE FROM {} WHERE id = %s").format(sql.Identifier(OUTBOX)),
                    (row["id"],),
                )
            if len(rows) < BATCH:
                return
