"""Plain records of the domain. Every stored object belongs to a project."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pratai.errors import InvalidName

# The OpenAPI document states these patterns; `fullmatch`, as JSON Schema reads them ("$" does
# not allow a trailing newline there).
NAME_PATTERN = r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$"
_NAME = re.compile(NAME_PATTERN)


def check_name(name: str, what: str = "function") -> str:
    """DNS-label-like names (underscore allowed, as users write `music_tag`)."""
    if not _NAME.fullmatch(name or ""):
        raise InvalidName(
            f"invalid {what} name {name!r}: use 1-63 lowercase letters, digits, '-' or '_', "
            "starting and ending with a letter or digit",
            name=name,
        )
    return name


def new_id() -> str:
    return uuid.uuid4().hex


def now() -> float:
    return time.time()


class Role(StrEnum):
    ADMIN = "admin"
    DEVELOPER = "developer"
    INVOKER = "invoker"
    VIEWER = "viewer"


class BuildState(StrEnum):
    BUILDING = "building"
    READY = "ready"
    BUILD_FAILED = "build_failed"


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self not in (Status.QUEUED, Status.RUNNING)


@dataclass
class Project:
    id: str
    name: str
    created_at: float = field(default_factory=now)


@dataclass
class ApiKey:
    id: str
    project_id: str
    role: Role
    secret_hash: str
    name: str = ""
    created_at: float = field(default_factory=now)
    expires_at: float | None = None
    revoked_at: float | None = None
    user_id: str | None = None
    rate_limit: int | None = None  # requests per window, over every endpoint
    rate_window_s: float | None = None


@dataclass
class NodeToken:
    """What a `pratai node` process presents to take work: `<id>.<secret>`, of which only the
    secret's hash is stored. It belongs to the platform, not to a project: a node runs every
    project's work."""

    id: str  # "nt_" + 16 hex digits
    name: str  # a note: which machine it is for
    secret_hash: str
    created_at: float = field(default_factory=now)
    revoked_at: float | None = None


@dataclass
class Function:
    id: str
    project_id: str
    name: str
    description: str = ""
    memory_mb: int = 128
    timeout_s: float = 30.0
    network: bool = False
    concurrency: int = 4
    runtime: str = "python"
    latest_version: int = 0
    active_version: int | None = None
    max_retries: int = 2
    secrets: dict[str, str] = field(default_factory=dict)  # env var -> secret name
    image: str | None = None  # runtime "image": the container image ref it runs
    fresh_per_call: bool = False  # a new sandbox for each call, stopped after it (no reuse)
    created_at: float = field(default_factory=now)
    updated_at: float = field(default_factory=now)


@dataclass
class FunctionVersion:
    function_id: str
    version: int
    package_digest: str
    handler: str
    requirements_hash: str | None
    state: BuildState = BuildState.BUILDING
    build_log: str = ""
    created_at: float = field(default_factory=now)


@dataclass
class SavedPayload:
    """A named test input of a function, kept for its whole project (the console's Test panel)."""

    id: str
    project_id: str
    function_id: str
    name: str
    payload: str  # JSON text
    updated_at: float = field(default_factory=now)


@dataclass
class Invocation:
    id: str
    project_id: str
    function_id: str
    function_name: str
    version: int
    mode: str  # "sync" | "async"
    status: Status = Status.QUEUED
    payload: bytes = b""
    content_type: str = "application/json"
    result: str | None = None
    error: dict[str, Any] | None = None
    stdout: str = ""
    stderr: str = ""
    cold_start: bool | None = None
    init_ms: float | None = None
    duration_ms: float | None = None
    peak_memory_kb: int | None = None
    attempt: int = 1
    created_at: float = field(default_factory=now)
    started_at: float | None = None
    finished_at: float | None = None
    event_seq: int | None = None  # the event that caused it (store order, all projects)
    event_id: str | None = None  # ... and its CloudEvent id, as users know it
    parent_id: str | None = None  # the invocation whose result event caused it (chaining)
    timer_id: str | None = None  # the timer trigger whose tick caused it


TRIGGERS = ("sync", "async", "event", "chain", "timer")
"""How an invocation started, as `trigger_of` names it (a bounded set: metrics labels use it)."""


def trigger_of(invocation: Invocation) -> str:
    """sync: a caller waited (API, webhook, route); chain: another invocation's result event;
    event: a message on a topic; timer: a timer's tick; async: queued by a caller (API,
    webhook, route). Stores filter by the same rules (list_invocations' `trigger`)."""
    if invocation.mode == "sync":
        return "sync"
    if invocation.parent_id is not None:
        return "chain"
    if invocation.event_id is not None:
        return "event"
    if invocation.timer_id is not None:
        return "timer"
    return "async"


@dataclass(frozen=True)
class InvocationFilter:
    """Which of a project's invocations a list keeps; an empty filter keeps them all."""

    statuses: tuple[Status, ...] = ()  # any of these
    trigger: str | None = None  # one of TRIGGERS
    created_after: float | None = None  # created at or after
    created_before: float | None = None  # created strictly before
    # A page's cursor: only those older than this (created_at, id), newest first.
    older_than: tuple[float, str] | None = None

    def matches(self, invocation: Invocation) -> bool:
        """The rule the stores' queries follow."""
        at = invocation.created_at
        return (
            (not self.statuses or invocation.status in self.statuses)
            and (self.trigger is None or trigger_of(invocation) == self.trigger)
            and (self.created_after is None or at >= self.created_after)
            and (self.created_before is None or at < self.created_before)
            and (self.older_than is None or (at, invocation.id) < self.older_than)
        )


@dataclass
class Event:
    """A CloudEvents 1.0 event on a project's topic. (project, source, id) is unique."""

    project_id: str
    topic: str
    id: str
    source: str
    type: str
    data: bytes = b""
    datacontenttype: str = "application/json"
    subject: str | None = None
    time: str = ""
    extensions: dict[str, str] = field(default_factory=dict)
    seq: int | None = None  # assigned by the store: the order of acceptance
    created_at: float = field(default_factory=now)
    dispatched: bool = False


@dataclass(frozen=True)
class TopicSummary:
    """A topic that has events: how many, and when the latest was accepted."""

    topic: str
    events: int
    last_at: float


class TriggerKind(StrEnum):
    WEBHOOK = "webhook"
    MESSAGE = "message"
    TIMER = "timer"


@dataclass
class Trigger:
    id: str
    project_id: str
    function_id: str
    kind: TriggerKind
    mode: str = "async"  # or "wait_for_response" (webhooks)
    topic: str | None = None  # message
    frequency_s: float | None = None  # timer: every N seconds
    cron: str | None = None  # timer: cron expression ...
    timezone: str | None = None  # ... evaluated in this time zone
    token: str | None = None  # webhook: the secret part of its URL
    created_at: float = field(default_factory=now)


@dataclass
class ConnectorRecord:
    """An external source whose messages become events on `topic`."""

    id: str
    project_id: str
    name: str
    kind: str
    url: str  # may hold credentials: never shown back
    topic: str
    options: dict[str, str] = field(default_factory=dict)
    created_at: float = field(default_factory=now)


@dataclass
class User:
    id: str
    name: str
    created_at: float = field(default_factory=now)
    password_hash: str | None = None  # for the web console; never leaves the store otherwise


@dataclass
class AuditEntry:
    project_id: str
    key_id: str
    action: str
    target: str
    status: int
    user_id: str | None = None
    at: float = field(default_factory=now)
    seq: int | None = None


@dataclass
class Route:
    """`METHOD /path/{param}` on the gateway, served by a function."""

    id: str
    project_id: str
    function_id: str
    method: str
    path: str
    auth: str = "public"  # or the least role a key needs: viewer, invoker, developer, admin
    rate_limit: int | None = None
    rate_window_s: float | None = None
    max_body_bytes: int | None = None
    timeout_s: float | None = None
    cors_origins: list[str] = field(default_factory=list)
    created_at: float = field(default_factory=now)


class JobKind(StrEnum):
    COMMAND = "command"  # argv run in the sandbox, stdin in, exit code and output out
    CALLABLE = "callable"  # a cloudpickled Python callable from the SDK


# What a job's run may change (stores update only these); its spec never changes.
JOB_OUTCOME = (
    "status", "exit_code", "result", "error", "stdout", "stderr", "duration_ms",
    "peak_memory_kb", "started_at", "finished_at",
)  # fmt: skip


@dataclass
class Job:
    """One run of a command or of a submitted callable, in the same sandbox as functions."""

    id: str
    project_id: str
    kind: JobKind
    runtime: str  # e.g. "python3.11"
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    stdin: bytes = b""  # command: its stdin; callable: the pickled (function, args, kwargs)
    requirements: list[str] = field(default_factory=list)
    requirements_hash: str | None = None
    memory_mb: int = 256
    timeout_s: float = 300.0
    network: bool = False
    saved_name: str | None = None  # the saved job it ran from
    status: Status = Status.QUEUED
    exit_code: int | None = None
    result: bytes | None = None  # callable: the pickled return value
    error: dict[str, Any] | None = None  # {"type", "message", "traceback"}
    stdout: str = ""
    stderr: str = ""
    duration_ms: float | None = None
    peak_memory_kb: int | None = None
    created_at: float = field(default_factory=now)
    started_at: float | None = None
    finished_at: float | None = None


@dataclass
class SavedJob:
    """A named command, run on demand (`job-run`) or on a schedule (`job-schedule`)."""

    id: str
    project_id: str
    name: str
    runtime: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    stdin: bytes = b""
    memory_mb: int = 256
    timeout_s: float = 300.0
    network: bool = False
    cron: str | None = None
    timezone: str | None = None
    created_at: float = field(default_factory=now)
    updated_at: float = field(default_factory=now)


@dataclass
class Image:
    """A container image a project loaded (`pratai image-load`); the engine holds the layers."""

    id: str
    project_id: str
    ref: str  # as the archive named it, e.g. "localhost/echo:1"
    image_id: str  # the engine's content id (sha256 hex)
    size_bytes: int = 0
    created_at: float = field(default_factory=now)
    archive: str | None = None  # a cluster's: the archive's digest in the artifact store
