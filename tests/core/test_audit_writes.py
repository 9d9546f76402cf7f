"""Audit entries written by requests at once: together, in order, and readable at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest_asyncio

from pratai.core.models import AuditEntry
from pratai.core.tenants import Tenants
from pratai.store.sql import SqlStore


class CountingStore(SqlStore):
    """A real SQLite store that counts its audit writes."""

    audit_writes = 0

    async def add_audits(self, entries: Sequence[AuditEntry]) -> None:
        self.audit_writes += 1
        await super().add_audits(entries)


@pytest_asyncio.fixture(loop_scope="function")
async def store(tmp_path: Path) -> AsyncIterator[CountingStore]:
    found = CountingStore(f"sqlite:///{tmp_path / 'pratai.sqlite3'}")
    await found.open()
    yield found
    await found.close()


async def test_entries_of_concurrent_requests_share_writes_and_all_are_listed_at_once(
    store: CountingStore,
) -> None:
    tenants = Tenants(store)
    project = await tenants.ensure_project()
    entries = [
        AuditEntry(project.id, "pk_a", "POST", f"/v1/functions/f{n}/invoke", 200, at=float(n))
        for n in range(50)
    ]
    await asyncio.gather(*(tenants.audit(entry) for entry in entries))
    assert store.audit_writes < len(entries)  # entries that waited were written together
    listed = await tenants.audit_log(project, limit=100)
    assert [e.target for e in listed] == [e.target for e in reversed(entries)]


async def test_the_log_waits_for_entries_still_being_written(store: CountingStore) -> None:
    tenants = Tenants(store)
    project = await tenants.ensure_project()
    first = AuditEntry(project.id, "pk_a", "POST", "/v1/one", 200)
    second = AuditEntry(project.id, "pk_a", "DELETE", "/v1/two", 204)
    writing = asyncio.ensure_future(tenants.audit(first))
    await asyncio.sleep(0)  # the first write is under way
    await tenants.audit(second)  # returns at once: the running writer takes it
    listed = await tenants.audit_log(project)
    assert [e.target for e in listed] == ["/v1/two", "/v1/one"]
    await writing
