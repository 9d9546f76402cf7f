"""Gateway routes, per-key rate limits and the shared rate-limit counters.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("invocations", sa.Column("event_id", sa.String(255), nullable=True))
    op.add_column("api_keys", sa.Column("rate_limit", sa.Integer(), nullable=True))
    op.add_column("api_keys", sa.Column("rate_window_s", sa.Double(), nullable=True))
    op.create_table(
        "routes",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("function_id", sa.String(64), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("auth", sa.String(16), nullable=False),
        sa.Column("rate_limit", sa.Integer(), nullable=True),
        sa.Column("rate_window_s", sa.Double(), nullable=True),
        sa.Column("max_body_bytes", sa.Integer(), nullable=True),
        sa.Column("timeout_s", sa.Double(), nullable=True),
        sa.Column("cors_origins", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.UniqueConstraint("project_id", "method", "path", name="uq_routes_project_method_path"),
    )
    op.create_table(
        "rate_counters",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("window", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("count", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rate_counters")
    op.drop_table("routes")
    with op.batch_alter_table("invocations") as batch:
        batch.drop_column("event_id")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("rate_window_s")
        batch.drop_column("rate_limit")
