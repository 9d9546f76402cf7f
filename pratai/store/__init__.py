"""Persistent state: the `Store` interface and its SQL implementation (SQLite or PostgreSQL)."""

from pratai.store.base import Store

__all__ = ["Store", "open_store"]


def open_store(url: str) -> Store:
    from pratai.store.sql import SqlStore

    return SqlStore(url)
