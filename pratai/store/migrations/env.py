"""Alembic environment, driven programmatically by `SqlStore.open()`.

The caller passes an open SQLAlchemy connection in `config.attributes["connection"]`
(already inside a transaction that holds the migration lock); no alembic.ini is needed.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from pratai.store.tables import metadata

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only programmatic use is supported
    raise RuntimeError("pratai migrations need config.attributes['connection']")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
