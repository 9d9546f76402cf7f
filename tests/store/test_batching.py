"""Group commit on SQLite: concurrent writes share transactions, and one failure stays its own."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pratai.core.models import Project, new_id
from pratai.errors import Conflict
from pratai.store.sql import SqlStore


async def test_a_failing_write_in_a_batch_does_not_undo_the_others(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    await store.open()
    try:
        await store.create_project(Project(id=new_id(), name="taken"))
        names = [f"p{i}" for i in range(50)]
        names.insert(25, "taken")  # conflicts, in the middle of a burst that batches together
        outcomes = await asyncio.gather(
            *(store.create_project(Project(id=new_id(), name=n)) for n in names),
            return_exceptions=True,
        )
        failures = [n for n, o in zip(names, outcomes, strict=True) if isinstance(o, Exception)]
        assert failures == ["taken"]
        assert isinstance(outcomes[25], Conflict)
        for name in names:
            assert await store.get_project_by_name(name) is not None
    finally:
        await store.close()

    reopened = SqlStore(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    await reopened.open()
    try:  # everything acknowledged was committed
        assert all([await reopened.get_project_by_name(n) for n in names])
    finally:
        await reopened.close()


async def test_closed_store_refuses_work(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    await store.open()
    await store.close()
    with pytest.raises(RuntimeError):
        await store.get_project_by_name("x")
