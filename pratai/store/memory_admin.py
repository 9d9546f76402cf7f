"""`MemoryStore`'s connectors, leases, tenancy, node tokens, secrets, gateway routes, jobs and
container images."""

from __future__ import annotations

import copy
from collections.abc import Sequence

from pratai.core.models import (
    JOB_OUTCOME,
    ApiKey,
    AuditEntry,
    ConnectorRecord,
    Image,
    Job,
    NodeToken,
    Project,
    Role,
    Route,
    SavedJob,
    Status,
    User,
)
from pratai.errors import Conflict
from pratai.store._memory_tables import MemoryBase


class AdminTables(MemoryBase):
    # --- connectors -------------------------------------------------------------------

    async def create_connector(self, connector: ConnectorRecord) -> None:
        self._t.connectors.insert(connector)

    async def list_connectors(self, project_id: str | None = None) -> list[ConnectorRecord]:
        match = lambda c: project_id in (None, c.project_id)  # noqa: E731
        return self._t.connectors.select(match, lambda c: c.created_at)

    async def delete_connector(self, connector_id: str) -> None:
        self._t.connectors.delete(lambda c: c.id == connector_id)

    # --- leases -----------------------------------------------------------------------

    async def take_lease(self, name: str, holder: str, now: float, ttl_s: float) -> bool:
        held = self._t.leases.get(name)
        if held is not None and held[0] != holder and held[1] > now:
            return False
        self._t.leases[name] = (holder, now + ttl_s)
        return True

    async def drop_lease(self, name: str, holder: str) -> None:
        held = self._t.leases.get(name)
        if held is not None and held[0] == holder:
            del self._t.leases[name]

    # --- tenancy ----------------------------------------------------------------------

    async def list_projects(self) -> list[Project]:
        return self._t.projects.select(order=lambda p: p.name)

    async def create_user(self, user: User) -> None:
        self._t.users.insert(user)

    async def get_user_by_name(self, name: str) -> User | None:
        return self._t.users.first(lambda u: u.name == name)

    async def get_user(self, user_id: str) -> User | None:
        return self._t.users.first(lambda u: u.id == user_id)

    async def set_password(self, user_id: str, password_hash: str) -> None:
        user = self._t.users.first(lambda u: u.id == user_id)
        if user is not None:
            user.password_hash = password_hash

    async def user_keys(self, user_id: str) -> list[ApiKey]:
        return self._t.keys.select(lambda k: k.user_id == user_id, lambda k: (k.created_at, k.id))

    async def revoke_key(self, key_id: str, at: float, *, keep_admin_in: str | None = None) -> bool:
        key = self._t.keys.rows.get(key_id)
        if key is None:
            return False
        if keep_admin_in is not None and not any(
            _lasting_admin(other, keep_admin_in) and other.id != key_id
            for other in self._t.keys.rows.values()
        ):
            return False
        key.revoked_at = at
        return True

    async def add_audit(self, entry: AuditEntry) -> None:
        stored = copy.copy(entry)
        stored.seq = next(self._t.audit_seq)
        self._t.audit.insert(stored)

    async def add_audits(self, entries: Sequence[AuditEntry]) -> None:
        for entry in entries:
            await self.add_audit(entry)

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
        def match(a: AuditEntry) -> bool:
            return (
                a.project_id == project_id
                and action in (None, a.action)
                and key_id in (None, a.key_id)
                and (since is None or a.at >= since)
                and (until is None or a.at < until)
            )

        return self._t.audit.select(match, lambda a: a.seq, reverse=True, limit=limit)

    # --- node tokens ------------------------------------------------------------------

    async def create_node_token(self, token: NodeToken) -> None:
        self._t.node_tokens.insert(token)

    async def get_node_token(self, token_id: str) -> NodeToken | None:
        return self._t.node_tokens.get(token_id)

    async def list_node_tokens(self) -> list[NodeToken]:
        return self._t.node_tokens.select(order=lambda n: (n.created_at, n.id))

    async def revoke_node_token(self, token_id: str, at: float) -> bool:
        token = self._t.node_tokens.rows.get(token_id)
        if token is None:
            return False
        if token.revoked_at is None:
            token.revoked_at = at
        return True

    # --- secrets ----------------------------------------------------------------------

    async def put_secret(self, project_id: str, name: str, ciphertext: bytes, at: float) -> None:
        if (project_id, name) in self._t.secrets:
            raise Conflict(f"already exists or violates a constraint: secret {name}")
        self._t.secrets[(project_id, name)] = (bytes(ciphertext), at)

    async def get_secret(self, project_id: str, name: str) -> bytes | None:
        found = self._t.secrets.get((project_id, name))
        return found[0] if found is not None else None

    async def list_secrets(self, project_id: str | None = None) -> list[tuple[str, str, float]]:
        found = [
            (pid, name, at)
            for (pid, name), (_, at) in self._t.secrets.items()
            if project_id in (None, pid)
        ]
        return sorted(found, key=lambda s: s[1])

    async def replace_secret_ciphertext(
        self, project_id: str, name: str, ciphertext: bytes
    ) -> None:
        found = self._t.secrets.get((project_id, name))
        if found is not None:
            self._t.secrets[(project_id, name)] = (bytes(ciphertext), found[1])

    async def delete_secret(self, project_id: str, name: str) -> None:
        self._t.secrets.pop((project_id, name), None)

    # --- gateway ----------------------------------------------------------------------

    async def list_routes(self, project_id: str, function_id: str | None = None) -> list[Route]:
        match = lambda r: r.project_id == project_id and function_id in (None, r.function_id)  # noqa: E731
        return self._t.routes.select(match, lambda r: (r.path, r.method))

    async def hit(self, key: str, window: int) -> int:
        count = self._t.counters.get((key, window), 0) + 1
        self._t.counters[(key, window)] = count
        if count == 1:  # a new window: the key's older ones are over
            for old in [k for k in self._t.counters if k[0] == key and k[1] < window]:
                del self._t.counters[old]
        return count

    # --- jobs -------------------------------------------------------------------------

    async def create_job(self, job: Job) -> None:
        self._t.jobs.insert(job)

    async def get_job(self, job_id: str) -> Job | None:
        return self._t.jobs.get(job_id)

    async def update_job(self, job: Job, *, only_if: Status | None = None) -> bool:
        stored = self._t.jobs.rows.get(job.id)
        if stored is None or only_if not in (None, stored.status):
            return False
        for name in JOB_OUTCOME:
            setattr(stored, name, copy.deepcopy(getattr(job, name)))
        return True

    async def list_jobs(
        self, project_id: str, limit: int = 50, status: Status | None = None
    ) -> list[Job]:
        match = lambda j: j.project_id == project_id and status in (None, j.status)  # noqa: E731
        return self._t.jobs.select(match, lambda j: j.created_at, reverse=True, limit=limit)

    async def unfinished_jobs(self) -> list[Job]:
        return self._t.jobs.select(lambda j: not j.status.finished)

    async def count_jobs(self, statuses: Sequence[Status]) -> dict[tuple[str, Status], int]:
        return self._t.jobs.tally(
            lambda j: j.status in statuses, lambda j: (j.project_id, j.status)
        )

    async def create_saved_job(self, saved: SavedJob) -> None:
        self._t.saved_jobs.insert(saved)

    async def get_saved_job(self, project_id: str, name: str) -> SavedJob | None:
        return self._t.saved_jobs.first(lambda s: (s.project_id, s.name) == (project_id, name))

    async def update_saved_job(self, saved: SavedJob) -> None:
        self._t.saved_jobs.replace(saved)

    async def delete_saved_job(self, saved_id: str) -> None:
        self._t.saved_jobs.delete(lambda s: s.id == saved_id)

    async def list_saved_jobs(self, project_id: str | None = None) -> list[SavedJob]:
        if project_id is None:
            return self._t.saved_jobs.select(lambda s: s.cron is not None, lambda s: s.name)
        return self._t.saved_jobs.select(lambda s: s.project_id == project_id, lambda s: s.name)

    # --- container images -------------------------------------------------------------

    async def put_image(self, image: Image) -> None:
        found = self._t.images.first(
            lambda i: (i.project_id, i.ref) == (image.project_id, image.ref)
        )
        if found is None:
            self._t.images.insert(image)
            return
        image.id = found.id
        found.image_id, found.size_bytes = image.image_id, image.size_bytes
        found.created_at, found.archive = image.created_at, image.archive
        self._t.images.replace(found)

    async def get_image(self, project_id: str, ref: str) -> Image | None:
        return self._t.images.first(lambda i: (i.project_id, i.ref) == (project_id, ref))

    async def list_images(self, project_id: str) -> list[Image]:
        return self._t.images.select(lambda i: i.project_id == project_id, lambda i: i.ref)

    async def delete_image(self, image_id: str) -> None:
        self._t.images.delete(lambda i: i.id == image_id)

    async def image_archive(self, engine_id: str) -> str | None:
        kept = self._t.images.select(
            lambda i: i.image_id.startswith(engine_id) and i.archive is not None,
            lambda i: -i.created_at,
        )
        return kept[0].archive if kept else None

    async def image_in_use(self, engine_id: str, digest: str) -> bool:
        return self._t.images.first(lambda i: i.image_id == engine_id) is not None or (
            self._t.versions.first(lambda v: v.package_digest == digest) is not None
        )


def _lasting_admin(key: ApiKey, project_id: str) -> bool:
    """An admin key of the project that is neither revoked nor ever expires."""
    lasting = key.revoked_at is None and key.expires_at is None
    return key.project_id == project_id and key.role == Role.ADMIN and lasting
