"""The SQL store's tenancy, node tokens, secrets and gateway tables."""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from pratai.core.models import (
    ApiKey,
    AuditEntry,
    NodeToken,
    Project,
    Route,
    User,
)
from pratai.store import tables as t
from pratai.store._rows import SqlBase, _key, _project

AUDIT_COLUMNS = [c.name for c in t.audit.columns if c.name != "seq"]


class AdminRows(SqlBase):
    # --- tenancy ------------------------------------------------------------------------

    async def list_projects(self) -> list[Project]:
        q = sa.select(t.projects).order_by(t.projects.c.name)
        rows = await self._run(lambda c: c.execute(q).mappings().all())
        return [_project(r) for r in rows]

    async def create_user(self, user: User) -> None:
        row = {"id": user.id, "name": user.name, "created_at": user.created_at}
        row["password_hash"] = user.password_hash
        await self._run(lambda c: c.execute(t.users.insert(), row))

    async def get_user(self, user_id: str) -> User | None:
        q = sa.select(t.users).where(t.users.c.id == user_id)
        r = await self._run(lambda c: c.execute(q).mappings().first())
        return User(**r) if r else None

    async def set_password(self, user_id: str, password_hash: str) -> None:
        q = sa.update(t.users).where(t.users.c.id == user_id).values(password_hash=password_hash)
        await self._run(lambda c: c.execute(q))

    async def user_keys(self, user_id: str) -> list[ApiKey]:
        k = t.api_keys
        q = sa.select(k).where(k.c.user_id == user_id).order_by(k.c.created_at, k.c.id)
        rows = await self._run(lambda c: c.execute(q).mappings().all())
        return [_key(r) for r in rows]

    async def get_user_by_name(self, name: str) -> User | None:
        q = sa.select(t.users).where(t.users.c.name == name)
        r = await self._run(lambda c: c.execute(q).mappings().first())
        return User(**r) if r else None

    async def revoke_key(self, key_id: str, at: float, *, keep_admin_in: str | None = None) -> bool:
        k, other = t.api_keys, t.api_keys.alias("other")
        q = sa.update(k).where(k.c.id == key_id).values(revoked_at=at)
        if keep_admin_in is not None:
            q = q.where(
                sa.exists().where(
                    other.c.project_id == keep_admin_in,
                    other.c.role == "admin",
                    other.c.revoked_at.is_(None),
                    other.c.expires_at.is_(None),
                    other.c.id != key_id,
                )
            )
        # PostgreSQL (read committed) would let two guarded revokes of different keys both see
        # the other key alive; locking the project row first serialises them. SQLite serialises
        # writers itself (and a stale snapshot fails with SQLITE_BUSY rather than passing).
        lock = sa.select(t.projects.c.id).where(t.projects.c.id == keep_admin_in).with_for_update()

        def revoke(c: Connection) -> bool:
            if keep_admin_in is not None and not self.is_sqlite:
                c.execute(lock)
            return bool(c.execute(q).rowcount)

        return await self._run(revoke)

    async def add_audit(self, entry: AuditEntry) -> None:
        await self.add_audits([entry])

    async def add_audits(self, entries: Sequence[AuditEntry]) -> None:
        if not entries:
            return
        rows = [{name: getattr(entry, name) for name in AUDIT_COLUMNS} for entry in entries]
        await self._run(lambda c: self._hot.insert_audit.run_many(c, rows))

    async def list_audit(
        self,
        project_id: str,
        limit: int = 100,
        *,
        action: str | None = None,
        key_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[AuditEntry]:
        a = t.audit
        q = sa.select(a).where(a.c.project_id == project_id)
        if action is not None:
            q = q.where(a.c.action == action)
        if key_id is not None:
            q = q.where(a.c.key_id == key_id)
        if since is not None:
            q = q.where(a.c.at >= since)
        if until is not None:
            q = q.where(a.c.at < until)
        q = q.order_by(a.c.seq.desc()).limit(limit)
        rows = await self._run(lambda c: c.execute(q).mappings().all())
        return [AuditEntry(**r) for r in rows]

    # --- node tokens --------------------------------------------------------------------

    async def create_node_token(self, token: NodeToken) -> None:
        row = {c.name: getattr(token, c.name) for c in t.node_tokens.columns}
        await self._run(lambda c: c.execute(t.node_tokens.insert(), row))

    async def get_node_token(self, token_id: str) -> NodeToken | None:
        q = sa.select(t.node_tokens).where(t.node_tokens.c.id == token_id)
        r = await self._run(lambda c: c.execute(q).mappings().first())
        return NodeToken(**r) if r else None

    async def list_node_tokens(self) -> list[NodeToken]:
        n = t.node_tokens
        q = sa.select(n).order_by(n.c.created_at, n.c.id)
        rows = await self._run(lambda c: c.execute(q).mappings().all())
        return [NodeToken(**r) for r in rows]

    async def revoke_node_token(self, token_id: str, at: float) -> bool:
        n = t.node_tokens
        q = (
            sa.update(n)
            .where(n.c.id == token_id)
            .values(revoked_at=sa.func.coalesce(n.c.revoked_at, at))
        )
        return await self._run(lambda c: bool(c.execute(q).rowcount))

    # --- secrets ------------------------------------------------------------------------

    async def put_secret(self, project_id: str, name: str, ciphertext: bytes, at: float) -> None:
        """Raises Conflict when the project has a secret of that name."""
        row = {"project_id": project_id, "name": name, "ciphertext": ciphertext, "created_at": at}
        await self._run(lambda c: c.execute(t.secrets.insert(), row))

    async def get_secret(self, project_id: str, name: str) -> bytes | None:
        s = t.secrets
        q = sa.select(s.c.ciphertext).where(s.c.project_id == project_id, s.c.name == name)
        value = await self._run(lambda c: c.execute(q).scalar())
        return bytes(value) if value is not None else None

    async def list_secrets(self, project_id: str | None = None) -> list[tuple[str, str, float]]:
        """(project id, name, created_at) of each secret; never the values."""
        s = t.secrets
        q = sa.select(s.c.project_id, s.c.name, s.c.created_at).order_by(s.c.name)
        if project_id is not None:
            q = q.where(s.c.project_id == project_id)
        rows = await self._run(lambda c: c.execute(q).all())
        return [(r[0], r[1], r[2]) for r in rows]

    async def replace_secret_ciphertext(
        self, project_id: str, name: str, ciphertext: bytes
    ) -> None:
        s = t.secrets
        q = (
            sa.update(s)
            .where(s.c.project_id == project_id, s.c.name == name)
            .values(ciphertext=ciphertext)
        )
        await self._run(lambda c: c.execute(q))

    async def delete_secret(self, project_id: str, name: str) -> None:
        s = t.secrets
        q = sa.delete(s).where(s.c.project_id == project_id, s.c.name == name)
        await self._run(lambda c: c.execute(q))

    # --- gateway ------------------------------------------------------------------------

    async def list_routes(self, project_id: str, function_id: str | None = None) -> list[Route]:
        r = t.routes
        q = sa.select(r).where(r.c.project_id == project_id).order_by(r.c.path, r.c.method)
        if function_id is not None:
            q = q.where(r.c.function_id == function_id)
        rows = await self._run(lambda c: c.execute(q).mappings().all())
        return [Route(**{**row, "cors_origins": json.loads(row["cors_origins"])}) for row in rows]

    async def hit(self, key: str, window: int) -> int:
        """Count one request in (key, window) and return the count, atomically across
        processes; old windows are cleared as they pass."""
        dialect_insert = sqlite_insert if self.is_sqlite else postgresql_insert
        rc = t.rate_counters
        upsert = (
            dialect_insert(rc)
            .values(key=key, window=window, count=1)
            .on_conflict_do_update(index_elements=["key", "window"], set_={"count": rc.c.count + 1})
            .returning(rc.c.count)
        )

        def work(c: Connection) -> int:
            count = int(c.execute(upsert).scalar_one())
            if count == 1:
                c.execute(sa.delete(rc).where(rc.c.key == key, rc.c.window < window))
            return count

        return await self._run(work)
