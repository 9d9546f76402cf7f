"""Image archives: a cluster's api keeps each loaded archive in the artifact store, for its nodes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("images", sa.Column("archive", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("archive")
