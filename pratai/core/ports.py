"""What the core needs from persistent state, one Protocol per aggregate; `Store` is all of them.

Methods are async; implementations may block in a thread. Each service asks for the narrowest
port it uses, so a store for tests, or for another database, implements only what it serves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

from pratai.core.models import (
    ApiKey,
    AuditEntry,
    BuildState,
    ConnectorRecord,
    Event,
    Function,
    FunctionVersion,
    Image,
    Invocation,
    InvocationFilter,
    Job,
    NodeToken,
    Project,
    Route,
    SavedJob,
    SavedPayload,
    Status,
    TopicSummary,
    Trigger,
    TriggerKind,
    User,
)


class ProjectStore(Protocol):
    async def create_project(self, project: Project) -> None:
        """Raises Conflict when the name is taken."""

    async def get_project(self, project_id: str) -> Project | None: ...
    async def get_project_by_name(self, name: str) -> Project | None: ...
    async def list_projects(self) -> list[Project]: ...


class TenancyStore(ProjectStore, Protocol):
    """Projects, their API keys, users and the audit log."""

    async def create_key(self, key: ApiKey) -> None: ...
    async def get_key(self, key_id: str) -> ApiKey | None: ...
    async def list_keys(self, project_id: str) -> list[ApiKey]: ...
    async def revoke_key(self, key_id: str, at: float, *, keep_admin_in: str | None = None) -> bool:
        """False, revoking nothing, when `keep_admin_in` (a project id) would be left without an
        admin key that is unrevoked and never expires. Atomic: of two concurrent revokes of a
        project's last two such keys, one fails."""
        ...

    async def create_user(self, user: User) -> None:
        """Raises Conflict when the name is taken."""

    async def get_user_by_name(self, name: str) -> User | None: ...
    async def get_user(self, user_id: str) -> User | None: ...
    async def set_password(self, user_id: str, password_hash: str) -> None: ...
    async def user_keys(self, user_id: str) -> list[ApiKey]:
        """The user's keys in every project, oldest first."""

    async def add_audit(self, entry: AuditEntry) -> None: ...
    async def add_audits(self, entries: Sequence[AuditEntry]) -> None:
        """Several entries in one statement, in order."""

    async def list_audit(
        self,
        project_id: str,
        limit: int = 100,
        *,
        action: str | None = None,
        key_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[AuditEntry]:
        """Newest first; only entries with that action (HTTP method) and key, at or after
        `since` and before `until`, when given."""


class NodeTokenStore(Protocol):
    """The credentials of node processes: the platform's, no project's."""

    async def create_node_token(self, token: NodeToken) -> None:
        """Raises Conflict when the id is taken."""

    async def get_node_token(self, token_id: str) -> NodeToken | None: ...
    async def list_node_tokens(self) -> list[NodeToken]:
        """Oldest first, revoked ones included."""

    async def revoke_node_token(self, token_id: str, at: float) -> bool:
        """False when there is no such token. A token revoked before keeps its first
        revoked_at (and the answer is True)."""


class RateCounter(Protocol):
    async def hit(self, key: str, window: int) -> int:
        """Count one request in (key, window) and return the count, atomically across
        processes."""


class FunctionReader(Protocol):
    async def get_function(self, project_id: str, name: str) -> Function | None: ...
    async def get_function_by_id(self, function_id: str) -> Function | None: ...
    async def get_version(self, function_id: str, version: int) -> FunctionVersion | None: ...


class FunctionStore(FunctionReader, Protocol):
    """Functions and their immutable versions."""

    async def create_function(
        self,
        function: Function,
        version: FunctionVersion,
        triggers: Sequence[Trigger] = (),
        routes: Sequence[Route] = (),
    ) -> None:
        """Stores a new function with its first version, triggers and routes in one
        transaction, or nothing; raises Conflict when the project already has a function of
        that name (`function 'x' already exists`), or a route of that method and path (`the
        project already routes GET /p`)."""

    async def list_functions(self, project_id: str) -> list[Function]: ...
    async def update_function(self, function: Function) -> None: ...
    async def delete_function(self, function_id: str) -> None:
        """Deletes the function, its versions, triggers, routes, invocations and saved
        payloads."""

    async def add_version(self, version: FunctionVersion) -> None: ...
    async def list_versions(self, function_id: str) -> list[FunctionVersion]: ...
    async def update_version(self, version: FunctionVersion) -> None: ...
    async def versions_with_state(self, state: BuildState) -> list[FunctionVersion]:
        """Across all projects; used to resume builds after a crash."""


class InvocationSample(NamedTuple):
    """What usage statistics read of an invocation (a tuple: thousands are made at a time)."""

    id: str
    function_id: str
    status: Status
    created_at: float
    duration_ms: float | None
    cold_start: bool | None


class SavedPayloadStore(Protocol):
    """Named test payloads of functions, shared by everyone in the function's project."""

    async def put_saved_payload(self, saved: SavedPayload) -> None:
        """Adds it, or gives the function's payload of that name this content (the stored
        record keeps its id). Raises Conflict when the function does not exist."""

    async def list_saved_payloads(self, function_id: str) -> list[SavedPayload]:
        """By name."""

    async def delete_saved_payload(self, function_id: str, name: str) -> bool:
        """False when the function has no payload of that name."""


class InvocationStore(Protocol):
    async def create_invocation(self, invocation: Invocation) -> None: ...
    async def get_invocation(self, project_id: str, invocation_id: str) -> Invocation | None: ...
    async def get_invocation_by_id(self, invocation_id: str) -> Invocation | None: ...
    async def update_invocation(
        self, invocation: Invocation, *, attempt: int | None = None
    ) -> bool:
        """Stores it. With `attempt`, only while the stored row is still at that attempt: a
        run taken over by another process (which moved the attempt on) cannot store over it.
        Returns whether it was stored."""

    async def start_invocation(self, invocation_id: str, started_at: float) -> Invocation | None:
        """queued -> running in one statement, returning the row; None when it was not queued."""

    async def list_invocations(
        self,
        project_id: str,
        function_id: str | None = None,
        *,
        limit: int = 50,
        finished_after: float | None = None,
        oldest_first: bool = False,
        where: InvocationFilter | None = None,
        brief: bool = False,
    ) -> list[Invocation]:
        """Newest first by (created_at, id) (or oldest first). `finished_after` keeps only
        invocations that finished strictly after that time, ordered by finished_at (used to
        follow logs). `where` keeps those it matches (InvocationFilter.matches). `brief` leaves
        out the large fields (payload, result, stdout and stderr come back empty): for lists."""

    async def invocations_with_status(self, statuses: Sequence[Status]) -> list[Invocation]:
        """Across all projects; used to recover work after a crash."""

    async def count_invocations(self, statuses: Sequence[Status]) -> dict[tuple[str, Status], int]:
        """How many invocations have each of these statuses, by (project id, status), across
        all projects; a pair with none is left out (metrics: the queue's depth)."""

    async def child_invocations(self, parent_id: str) -> list[Invocation]: ...
    async def invocation_samples(
        self,
        project_id: str,
        *,
        since: float | None = None,
        function_id: str | None = None,
        statuses: Sequence[Status] | None = None,
        limit: int | None = None,
    ) -> list[InvocationSample]:
        """A project's invocations created at or after `since` (of one function, in these
        statuses), newest first, as the few columns usage statistics need: never payloads."""


class EventStore(Protocol):
    async def add_event(self, event: Event, invocations: Sequence[Invocation] = ()) -> Event | None:
        """Stores the event, sets its seq and, in the same transaction, the invocations it
        causes (their event_seq set); None, storing nothing, when (project, source, id) exists."""

    async def get_event(self, project_id: str, seq: int) -> Event | None: ...
    async def find_event(self, project_id: str, source: str, event_id: str) -> Event | None: ...
    async def list_events(self, project_id: str, topic: str, limit: int = 50) -> list[Event]:
        """Newest first."""

    async def event_topics(self, project_id: str, limit: int = 200) -> list[TopicSummary]:
        """The project's topics that have events, the latest-used first."""

    async def mark_dispatched(self, seq: int) -> None: ...
    async def mark_dispatched_many(self, seqs: Sequence[int]) -> None: ...
    async def undispatched_events(self, limit: int = 1000) -> list[Event]: ...


class TriggerStore(Protocol):
    async def create_trigger(self, trigger: Trigger) -> None: ...
    async def list_triggers(
        self,
        project_id: str | None = None,
        *,
        function_id: str | None = None,
        kind: TriggerKind | None = None,
        topic: str | None = None,
    ) -> list[Trigger]: ...
    async def get_trigger(self, trigger_id: str) -> Trigger | None: ...
    async def get_trigger_by_token(self, token: str) -> Trigger | None: ...
    async def delete_trigger(self, trigger_id: str) -> None: ...


class TickStore(Protocol):
    """Ticks of timers and scheduled jobs, each fired once across schedulers."""

    async def claim_tick(self, trigger_id: str, tick: float, fired_at: float) -> bool:
        """True for exactly one caller per (trigger, tick), across processes."""

    async def last_tick(self, trigger_id: str) -> float | None: ...


class LeaseStore(Protocol):
    """Named leases: a name held by one holder at a time, until a time it renews, across every
    process that shares the store (e.g. which scheduler runs the connectors)."""

    async def take_lease(self, name: str, holder: str, now: float, ttl_s: float) -> bool:
        """Holds `name` for `holder` until `now + ttl_s` when it is free, expired (held until
        `now` or earlier) or already `holder`'s, and returns True; else changes nothing and
        returns False. Atomic: of concurrent takers of a free or expired lease, one wins."""

    async def drop_lease(self, name: str, holder: str) -> None:
        """Frees `name` when `holder` holds it (else does nothing)."""


class ConnectorStore(Protocol):
    async def create_connector(self, connector: ConnectorRecord) -> None:
        """Raises Conflict when the project has a connector of that name."""

    async def list_connectors(self, project_id: str | None = None) -> list[ConnectorRecord]: ...
    async def delete_connector(self, connector_id: str) -> None: ...


class SecretStore(Protocol):
    """Ciphertext only; the core encrypts."""

    async def put_secret(self, project_id: str, name: str, ciphertext: bytes, at: float) -> None:
        """Raises Conflict when the project has a secret of that name."""

    async def get_secret(self, project_id: str, name: str) -> bytes | None: ...
    async def list_secrets(self, project_id: str | None = None) -> list[tuple[str, str, float]]:
        """(project id, name, created_at) of each secret; never the values."""

    async def replace_secret_ciphertext(
        self, project_id: str, name: str, ciphertext: bytes
    ) -> None: ...
    async def delete_secret(self, project_id: str, name: str) -> None: ...


class RouteStore(Protocol):
    """The gateway's routes (a deploy stores a function's first routes with it)."""

    async def list_routes(self, project_id: str, function_id: str | None = None) -> list[Route]: ...


class JobStore(Protocol):
    async def create_job(self, job: Job) -> None: ...
    async def get_job(self, job_id: str) -> Job | None: ...
    async def update_job(self, job: Job, *, only_if: Status | None = None) -> bool:
        """Writes the outcome columns; with `only_if`, only while the stored status is that."""

    async def list_jobs(
        self, project_id: str, limit: int = 50, status: Status | None = None
    ) -> list[Job]: ...
    async def unfinished_jobs(self) -> list[Job]: ...
    async def count_jobs(self, statuses: Sequence[Status]) -> dict[tuple[str, Status], int]:
        """As `count_invocations`, of jobs."""


class SavedJobStore(Protocol):
    async def create_saved_job(self, saved: SavedJob) -> None:
        """Raises Conflict when the name is taken in the project."""

    async def get_saved_job(self, project_id: str, name: str) -> SavedJob | None: ...
    async def update_saved_job(self, saved: SavedJob) -> None: ...
    async def delete_saved_job(self, saved_id: str) -> None: ...
    async def list_saved_jobs(self, project_id: str | None = None) -> list[SavedJob]:
        """A project's saved jobs, or (None) every scheduled saved job."""


class ImageStore(Protocol):
    """The project's names for container images (the engine holds the layers)."""

    async def put_image(self, image: Image) -> None:
        """Adds the image, or points the project's existing ref at new content."""

    async def get_image(self, project_id: str, ref: str) -> Image | None: ...
    async def list_images(self, project_id: str) -> list[Image]: ...
    async def delete_image(self, image_id: str) -> None:
        """Deletes one record, by its own id."""

    async def image_archive(self, engine_id: str) -> str | None:
        """The digest of an archive (in the artifact store) that holds that engine image
        (`engine_id` may be a prefix of its id), as any project's record names it: the newest;
        None when no record names one."""

    async def image_in_use(self, engine_id: str, digest: str) -> bool:
        """Whether any project's record names that engine image, or any function version
        runs it (its package digest), so the engine may not drop it."""


class Store(
    TenancyStore,
    NodeTokenStore,
    RateCounter,
    FunctionStore,
    SavedPayloadStore,
    InvocationStore,
    EventStore,
    TriggerStore,
    TickStore,
    LeaseStore,
    ConnectorStore,
    SecretStore,
    RouteStore,
    JobStore,
    SavedJobStore,
    ImageStore,
    Protocol,
):
    """Everything a platform process keeps."""

    async def open(self) -> None:
        """Connect and bring the schema up to date (Alembic migrations)."""

    async def close(self) -> None: ...


# Container images: the engine (podman) is a backend core reads through this port.
CONTRACTS = ("http", "stdio")  # how a container image function takes calls


@dataclass
class LoadedImage:
    ref: str
    image_id: str  # the engine's content id (sha256 hex)
    size_bytes: int


class ImageEngine(Protocol):
    """Holds container images (layers and content ids) for the image functions' driver."""

    async def load(self, archive: Path) -> list[LoadedImage]:
        """Raises InvalidInput when the file is not an image archive."""

    async def remove(self, image_id: str) -> None: ...
