"""Saved test payloads: named inputs of a function for the console's Test panel.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "saved_payloads",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column(
            "function_id",
            sa.String(64),
            sa.ForeignKey("functions.id", name="fk_saved_payloads_function", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.UniqueConstraint("function_id", "name", name="uq_saved_payloads_function_name"),
    )


def downgrade() -> None:
    op.drop_table("saved_payloads")
