"""Events, triggers, timer ticks and connectors; lineage and retries on invocations and functions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column(
        "functions", sa.Column("max_retries", sa.Integer(), nullable=False, server_default="2")
    )
    op.add_column("invocations", sa.Column("event_seq", sa.BigInteger(), nullable=True))
    op.add_column("invocations", sa.Column("parent_id", sa.String(64), nullable=True))
    op.create_index("ix_invocations_parent", "invocations", ["parent_id"])
    op.create_table(
        "events",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("source", sa.String(1024), nullable=False),
        sa.Column("type", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(1024), nullable=True),
        sa.Column("time", sa.String(64), nullable=False),
        sa.Column("datacontenttype", sa.String(255), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("extensions", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("dispatched", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("project_id", "source", "id", name="uq_events_project_source_id"),
    )
    op.create_index("ix_events_project_topic_seq", "events", ["project_id", "topic", "seq"])
    op.create_index("ix_events_dispatched", "events", ["dispatched"])
    op.create_table(
        "triggers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("function_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(32), nullable=False),
        sa.Column("topic", sa.String(255), nullable=True),
        sa.Column("frequency_s", sa.Double(), nullable=True),
        sa.Column("cron", sa.String(255), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=True),
        sa.Column("token", sa.String(64), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.UniqueConstraint("token", name="uq_triggers_token"),
    )
    op.create_index("ix_triggers_project_topic", "triggers", ["project_id", "topic"])
    op.create_index("ix_triggers_function", "triggers", ["function_id"])
    op.create_table(
        "timer_ticks",
        sa.Column("trigger_id", sa.String(64), primary_key=True),
        sa.Column("tick", sa.Double(), primary_key=True),
        sa.Column("fired_at", sa.Double(), nullable=False),
    )
    op.create_table(
        "connectors",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.UniqueConstraint("project_id", "name", name="uq_connectors_project_name"),
    )


def downgrade() -> None:
    op.drop_table("connectors")
    op.drop_table("timer_ticks")
    op.drop_index("ix_triggers_function", "triggers")
    op.drop_index("ix_triggers_project_topic", "triggers")
    op.drop_table("triggers")
    op.drop_index("ix_events_dispatched", "events")
    op.drop_index("ix_events_project_topic_seq", "events")
    op.drop_table("events")
    op.drop_index("ix_invocations_parent", "invocations")
    with op.batch_alter_table("invocations") as batch:
        batch.drop_column("parent_id")
        batch.drop_column("event_seq")
    with op.batch_alter_table("functions") as batch:
        batch.drop_column("max_retries")
