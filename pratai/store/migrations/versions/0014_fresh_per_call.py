"""Functions may ask for a fresh sandbox for every call (no warm reuse between events).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column(
        "functions",
        sa.Column("fresh_per_call", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    with op.batch_alter_table("functions") as batch:  # SQLite drops a column by copying
        batch.drop_column("fresh_per_call")
