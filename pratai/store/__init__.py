"""Persistent state: the core's store ports (`pratai.core.ports`) on SQL (SQLite or PostgreSQL)."""

from pratai.core.ports import Store

__all__ = ["open_store"]


def open_store(url: str) -> Store:
    from pratai.store.sql import SqlStore

    return SqlStore(url)
