"""Invocations remember the timer whose tick caused them (the console filters by trigger).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("invocations", sa.Column("timer_id", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invocations") as batch:  # SQLite drops a column by copying
        batch.drop_column("timer_id")
