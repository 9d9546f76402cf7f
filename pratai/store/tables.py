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
    sa.Column("user_id", sa.String(64), nullable=True),
    sa.Column("rate_limit", sa.Integer(), nullable=True),  # requests per window, any endpoint
    sa.Column("rate_window_s", sa.Double(), nullable=True),
    sa.Index("ix_api_keys_project", "project_id"),
)

# Credentials of node processes (`pratai node`): the platform's, no project's.
node_tokens = sa.Table(
    "node_tokens",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("secret_hash", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("revoked_at", sa.Double(), nullable=True),
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
    sa.Column("max_retries", sa.Integer(), nullable=False, server_default="2"),
    sa.Column("secrets", sa.Text(), nullable=False, server_default="{}"),  # env name -> secret
    sa.Column("image", sa.String(512), nullable=True),  # container functions: the image ref
    sa.Column("fresh_per_call", sa.Boolean(), nullable=False, server_default=sa.false()),
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
    sa.Column("event_seq", sa.BigInteger(), nullable=True),
    sa.Column("event_id", sa.String(255), nullable=True),
    sa.Column("parent_id", sa.String(64), nullable=True),
    sa.Column("timer_id", sa.String(64), nullable=True),
    sa.Index("ix_invocations_project_function_created", "project_id", "function_id", "created_at"),
    # Usage statistics (`invocation_samples`): a project's window by creation time, read from
    # the index alone, never from the rows (whose payloads and output may be large).
    sa.Index(
        "ix_invocations_project_created",
        "project_id",
        "created_at",
        "status",
        "duration_ms",
        "cold_start",
        "function_id",
        "id",
    ),
    sa.Index("ix_invocations_parent", "parent_id"),
    sa.Index("ix_invocations_status", "status"),
    sa.Index("ix_invocations_finished_at", "finished_at"),
)

events = sa.Table(
    "events",
    metadata,
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
    sa.Column("extensions", sa.Text(), nullable=False),  # JSON
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("dispatched", sa.Boolean(), nullable=False),
    sa.UniqueConstraint("project_id", "source", "id", name="uq_events_project_source_id"),
    sa.Index("ix_events_project_topic_seq", "project_id", "topic", "seq"),
    sa.Index("ix_events_dispatched", "dispatched"),
)

triggers = sa.Table(
    "triggers",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("project_id", sa.String(64), nullable=False),
    sa.Column("function_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # webhook | message | timer
    sa.Column("mode", sa.String(32), nullable=False),  # async | wait_for_response
    sa.Column("topic", sa.String(255), nullable=True),
    sa.Column("frequency_s", sa.Double(), nullable=True),
    sa.Column("cron", sa.String(255), nullable=True),
    sa.Column("timezone", sa.String(64), nullable=True),
    sa.Column("token", sa.String(64), nullable=True),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.UniqueConstraint("token", name="uq_triggers_token"),
    sa.Index("ix_triggers_project_topic", "project_id", "topic"),
    sa.Index("ix_triggers_function", "function_id"),
)

# A row per timer tick that fired: the primary key is the lock that lets many schedulers run.
timer_ticks = sa.Table(
    "timer_ticks",
    metadata,
    sa.Column("trigger_id", sa.String(64), primary_key=True),
    sa.Column("tick", sa.Double(), primary_key=True),
    sa.Column("fired_at", sa.Double(), nullable=False),
)

# Named leases (which scheduler runs the connectors): held by `holder` until `until` (epoch s).
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(255), nullable=False),
    sa.Column("until", sa.Double(), nullable=False),
)

connectors = sa.Table(
    "connectors",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("project_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(63), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("url", sa.Text(), nullable=False),  # may hold credentials: never shown back
    sa.Column("options", sa.Text(), nullable=False),  # JSON
    sa.Column("topic", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.UniqueConstraint("project_id", "name", name="uq_connectors_project_name"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=True),
    sa.UniqueConstraint("name", name="uq_users_name"),
)

# Who created, changed, deleted or invoked what. Never holds request bodies or secrets.
audit = sa.Table(
    "audit",
    metadata,
    sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.String(64), nullable=False),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("user_id", sa.String(64), nullable=True),
    sa.Column("action", sa.String(16), nullable=False),  # the HTTP method
    sa.Column("target", sa.String(1024), nullable=False),  # the path
    sa.Column("status", sa.Integer(), nullable=False),
    sa.Column("at", sa.Double(), nullable=False),
    sa.Index("ix_audit_project_seq", "project_id", "seq"),
)

# Values are encrypted (Fernet) with the platform's secrets key; names are not secret.
secrets = sa.Table(
    "secrets",
    metadata,
    sa.Column("project_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
)

# Function routes of the gateway: /fn/<project><path>.
routes = sa.Table(
    "routes",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("project_id", sa.String(64), nullable=False),
    sa.Column("function_id", sa.String(64), nullable=False),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("path", sa.String(1024), nullable=False),
    sa.Column("auth", sa.String(16), nullable=False),  # "public" or the least role
    sa.Column("rate_limit", sa.Integer(), nullable=True),  # requests per window
    sa.Column("rate_window_s", sa.Double(), nullable=True),
    sa.Column("max_body_bytes", sa.Integer(), nullable=True),
    sa.Column("timeout_s", sa.Double(), nullable=True),
    sa.Column("cors_origins", sa.Text(), nullable=False),  # JSON list
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.UniqueConstraint("project_id", "method", "path", name="uq_routes_project_method_path"),
)

# Fixed-window counters shared by every api process (rate limits).
rate_counters = sa.Table(
    "rate_counters",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("window", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("count", sa.Integer(), nullable=False),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("project_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("runtime", sa.String(32), nullable=False),
    sa.Column("command", sa.Text(), nullable=False),  # JSON list
    sa.Column("env", sa.Text(), nullable=False),  # JSON object
    sa.Column("stdin", sa.LargeBinary(), nullable=False),
    sa.Column("requirements", sa.Text(), nullable=False),  # JSON list
    sa.Column("requirements_hash", sa.String(64), nullable=True),
    sa.Column("memory_mb", sa.Integer(), nullable=False),
    sa.Column("timeout_s", sa.Double(), nullable=False),
    sa.Column("network", sa.Boolean(), nullable=False),
    sa.Column("saved_name", sa.String(63), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("exit_code", sa.Integer(), nullable=True),
    sa.Column("result", sa.LargeBinary(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),  # JSON
    sa.Column("stdout", sa.Text(), nullable=False),
    sa.Column("stderr", sa.Text(), nullable=False),
    sa.Column("duration_ms", sa.Double(), nullable=True),
    sa.Column("peak_memory_kb", sa.BigInteger(), nullable=True),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("started_at", sa.Double(), nullable=True),
    sa.Column("finished_at", sa.Double(), nullable=True),
    sa.Index("ix_jobs_project_created", "project_id", "created_at"),
    sa.Index("ix_jobs_status", "status"),
)

saved_jobs = sa.Table(
    "saved_jobs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("project_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(63), nullable=False),
    sa.Column("runtime", sa.String(32), nullable=False),
    sa.Column("command", sa.Text(), nullable=False),  # JSON list
    sa.Column("env", sa.Text(), nullable=False),  # JSON object
    sa.Column("stdin", sa.LargeBinary(), nullable=False),
    sa.Column("memory_mb", sa.Integer(), nullable=False),
    sa.Column("timeout_s", sa.Double(), nullable=False),
    sa.Column("network", sa.Boolean(), nullable=False),
    sa.Column("cron", sa.String(255), nullable=True),
    sa.Column("timezone", sa.String(64), nullable=True),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("updated_at", sa.Double(), nullable=False),
    sa.UniqueConstraint("project_id", "name", name="uq_saved_jobs_project_name"),
)

images = sa.Table(
    "images",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("project_id", sa.String(64), nullable=False),
    sa.Column("ref", sa.String(512), nullable=False),
    sa.Column("image_id", sa.String(128), nullable=False),
    sa.Column("size_bytes", sa.BigInteger(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    # a cluster's api keeps the archive in the artifact store, for the nodes: its digest
    sa.Column("archive", sa.String(64), nullable=True),
    sa.UniqueConstraint("project_id", "ref", name="uq_images_project_ref"),
)

# Test payloads of the console's Test panel, named per function and shared by its project.
saved_payloads = sa.Table(
    "saved_payloads",
    metadata,
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
