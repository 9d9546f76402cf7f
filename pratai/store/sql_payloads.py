"""The SQL store's saved test payloads (rows of `saved_payloads`, one per function and name)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from pratai.core.models import SavedPayload
from pratai.store import tables as t
from pratai.store._rows import SqlBase


class PayloadRows(SqlBase):
    async def put_saved_payload(self, saved: SavedPayload) -> None:
        row = {c.name: getattr(saved, c.name) for c in t.saved_payloads.columns}
        dialect_insert = sqlite_insert if self.is_sqlite else postgresql_insert
        # one statement, so two people saving the same name at once both succeed (last wins)
        upsert = (
            dialect_insert(t.saved_payloads)
            .values(**row)
            .on_conflict_do_update(
                index_elements=["function_id", "name"],
                set_={"payload": row["payload"], "updated_at": row["updated_at"]},
            )
        )
        await self._run(lambda c: c.execute(upsert))

    async def list_saved_payloads(self, function_id: str) -> list[SavedPayload]:
        s = t.saved_payloads
        q = sa.select(s).where(s.c.function_id == function_id).order_by(s.c.name)
        rows = await self._run(lambda c: c.execute(q).mappings().all())
        return [SavedPayload(**r) for r in rows]

    async def delete_saved_payload(self, function_id: str, name: str) -> bool:
        s = t.saved_payloads
        q = s.delete().where(s.c.function_id == function_id, s.c.name == name)
        return bool(await self._run(lambda c: c.execute(q).rowcount))
