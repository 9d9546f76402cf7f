"""A hot statement compiled once and run with `exec_driver_sql` (SQLite's writer thread).

`Connection.execute` of a Core statement looks its compiled form up in a cache and builds its
parameters on every call: about 55 µs of a warm invocation's insert, on the one thread that
writes SQLite (and holds the GIL meanwhile). A `Prepared` does that work once; each call only
applies the columns' bind processors, as SQLAlchemy would, and runs the SQL text, still
inside the connection's transaction (errors are SQLAlchemy's, IntegrityError included).
PostgreSQL's run as Core statements (`CoreStatement`), through the same `run`/`run_many`, so the
store's callers never ask which one they hold (`hot_statements`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.engine import Connection, CursorResult, Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase


class Hot(Protocol):
    def run(self, conn: Connection, row: Mapping[str, Any]) -> CursorResult[Any]: ...

    def run_many(
        self, conn: Connection, rows: Sequence[Mapping[str, Any]]
    ) -> CursorResult[Any]: ...


class CoreStatement:
    """A statement run the usual way (`Connection.execute`), for dialects other than SQLite."""

    def __init__(self, statement: UpdateBase) -> None:
        self.statement = statement

    def run(self, conn: Connection, row: Mapping[str, Any]) -> CursorResult[Any]:
        return conn.execute(self.statement, dict(row))

    def run_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> CursorResult[Any]:
        return conn.execute(self.statement, [dict(row) for row in rows])


class Prepared:
    def __init__(
        self, statement: ClauseElement, dialect: Dialect, keys: Sequence[str] | None = None
    ) -> None:
        """`keys`: the columns an INSERT names (all of them when None)."""
        compiled = statement.compile(dialect=dialect, column_keys=list(keys) if keys else None)
        assert isinstance(compiled, SQLCompiler) and compiled.positiontup is not None
        self.sql = str(compiled)
        self.names = list(compiled.positiontup)  # the order of the `?` marks
        self.processors: list[Callable[[Any], Any] | None] = [
            compiled.binds[name].type.bind_processor(dialect) for name in self.names
        ]

    def params(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(
            row[name] if process is None else process(row[name])
            for name, process in zip(self.names, self.processors, strict=True)
        )

    def run(self, conn: Connection, row: Mapping[str, Any]) -> CursorResult[Any]:
        return conn.exec_driver_sql(self.sql, self.params(row))

    def run_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> CursorResult[Any]:
        return conn.exec_driver_sql(self.sql, [self.params(row) for row in rows])


@dataclass(frozen=True)
class HotStatements:
    """The writes of a warm invocation, and of a job."""

    insert_invocation: Hot
    update_invocation: Hot
    insert_audit: Hot
    insert_job: Hot


def hot_statements(
    dialect: Dialect,
    insert_invocation: UpdateBase,
    update_invocation: UpdateBase,
    insert_audit: tuple[UpdateBase, Sequence[str]],
    insert_job: UpdateBase,
) -> HotStatements:
    """Compiled once on SQLite (the writer thread is the bottleneck there), else Core's."""
    if dialect.name != "sqlite":
        return HotStatements(
            CoreStatement(insert_invocation),
            CoreStatement(update_invocation),
            CoreStatement(insert_audit[0]),
            CoreStatement(insert_job),
        )
    return HotStatements(
        Prepared(insert_invocation, dialect),
        Prepared(update_invocation, dialect),
        Prepared(insert_audit[0], dialect, insert_audit[1]),
        Prepared(insert_job, dialect),
    )
