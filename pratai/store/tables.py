"""The SQL schema (SQLAlchemy Core). Alembic migrations in `migrations/versions` must match it."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.UniqueConstraint("name", name="uq_projects_name"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column(
        "project_id",
        sa.String(64),
        sa.ForeignKey("projects.id", name="fk_api_keys_project", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("secret_hash", sa.String(255), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("expires_at", sa.Double(), nullable=True),
    sa.Column("revoked_at", sa.Double(), nullable=True),
    sa.Index("ix_api_keys_project", "project_id"),
)

functions = sa.Table(
    "functions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column(
        "project_id",
        sa.String(64),
        sa.ForeignKey("projects.id", name="fk_functions_project", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("name", sa.String(63), nullable=False),
    sa.Column("description", sa.Text(), nullable=False),
    sa.Column("memory_mb", sa.Integer(), nullable=False),
    sa.Column("timeout_s", sa.Double(), nullable=False),
    sa.Column("network", sa.Boolean(), nullable=False),
    sa.Column("concurrency", sa.Integer(), nullable=False),
    sa.Column("runtime", sa.String(32), nullable=False),
    sa.Column("latest_version", sa.Integer(), nullable=False),
    sa.Column("active_version", sa.Integer(), nullable=True),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("updated_at", sa.Double(), nullable=False),
    sa.UniqueConstraint("project_id", "name", name="uq_functions_project_name"),
)

function_versions = sa.Table(
    "function_versions",
    metadata,
    sa.Column(
        "function_id",
        sa.String(64),
        sa.ForeignKey("functions.id", name="fk_function_versions_function", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("package_digest", sa.String(64), nullable=False),
    sa.Column("handler", sa.String(255), nullable=False),
    sa.Column("requirements_hash", sa.String(64), nullable=True),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("build_log", sa.Text(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
)

# No foreign keys here: the hot path stays cheap and delete_function removes them explicitly.
invocations = sa.Table(
    "invocations",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("project_id", sa.String(64), nullable=False),
    sa.Column("function_id", sa.String(64), nullable=False),
    sa.Column("function_name", sa.String(63), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("payload", sa.LargeBinary(), nullable=False),
    sa.Column("content_type", sa.String(255), nullable=False),
    sa.Column("result", sa.Text(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),  # JSON
    sa.Column("stdout", sa.Text(), nullable=False),
    sa.Column("stderr", sa.Text(), nullable=False),
    sa.Column("cold_start", sa.Boolean(), nullable=True),
    sa.Column("init_ms", sa.Double(), nullable=True),
    sa.Column("duration_ms", sa.Double(), nullable=True),
    sa.Column("peak_memory_kb", sa.BigInteger(), nullable=True),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("started_at", sa.Double(), nullable=True),
    sa.Column("finished_at", sa.Double(), nullable=True),
    sa.Index("ix_invocations_project_function_created", "project_id", "function_id", "created_at"),
    sa.Index("ix_invocations_status", "status"),
    sa.Index("ix_invocations_finished_at", "finished_at"),
)
