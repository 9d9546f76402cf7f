"""A hot statement compiled once and run with `exec_driver_sql` (SQLite's writer thread).

`Connection.execute` of a Core statement looks its compiled form up in a cache and builds its
parameters on every call: about 55 µs of a warm invocation's insert, on the one thread that
writes SQLite (and holds the GIL meanwhile). A `Prepared` does that work once; each call only
applies the columns' bind processors, as SQLAlchemy would, and runs the SQL text, still
inside the connection's transaction (errors are SQLAlchemy's, IntegrityError included).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, CursorResult, Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler


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

    insert_invocation: Prepared
    update_invocation: Prepared
    insert_audit: Prepared
    insert_job: Prepared
