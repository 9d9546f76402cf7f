"""Usage statistics: an index on invocations by (project, creation time) that also holds the
few columns statistics read, so the console's overview reads a project's last day from the
index alone: not every project's invocations, and not the rows with their payloads and output.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index(
        "ix_invocations_project_created",
        "invocations",
        ["project_id", "created_at", "status", "duration_ms", "cold_start", "function_id", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_invocations_project_created", "invocations")
