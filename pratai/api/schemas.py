"""Shapes of API responses (they also make the OpenAPI document)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pratai.core.functions import FunctionView
from pratai.core.invocations import decode_result
from pratai.core.models import TRIGGERS, FunctionVersion, Invocation, Trigger, trigger_of
from pratai.core.provisioning import WEIGHT_MAX, WEIGHT_MIN, Provisioning


class Input(BaseModel):
    """A JSON request body: its values must have the JSON types the document states; nothing
    is coerced (`1` is not `true`, `"5"` is not `5`)."""

    model_config = ConfigDict(strict=True)


class VersionOut(BaseModel):
    version: int
    state: str
    handler: str
    package_digest: str
    requirements_hash: str | None
    build_log: str
    active: bool
    created_at: float

    @classmethod
    def of(cls, v: FunctionVersion, active: int | None) -> VersionOut:
        return cls(
            version=v.version,
            state=v.state,
            handler=v.handler,
            package_digest=v.package_digest,
            requirements_hash=v.requirements_hash,
            build_log=v.build_log,
            active=v.version == active,
            created_at=v.created_at,
        )


class TriggerOut(BaseModel):
    id: str
    function: str
    event: str
    type: str
    subscribe_to: str | None
    frequency_minutes: float | None
    cron: str | None
    timezone: str | None
    url: str | None
    created_at: float

    @classmethod
    def of(cls, trigger: Trigger, function: str, base_url: str) -> TriggerOut:
        return cls(
            id=trigger.id,
            function=function,
            event=trigger.kind,
            type=trigger.mode,
            subscribe_to=trigger.topic,
            frequency_minutes=trigger.frequency_s / 60 if trigger.frequency_s else None,
            cron=trigger.cron,
            timezone=trigger.timezone,
            url=f"{base_url.rstrip('/')}/hooks/{trigger.token}" if trigger.token else None,
            created_at=trigger.created_at,
        )


class ProvisionedOut(BaseModel):
    """What each instance of the function gets besides its memory, computed from its memory
    and the nodes' CPUs."""

    cpu_weight: int = Field(
        ge=WEIGHT_MIN,
        le=WEIGHT_MAX,
        description="its share of the CPUs when instances compete for them, proportional to "
        "memory: 100 for 128 MB (cgroup v2 cpu.weight; cpu.shares 1024 on cgroup v1)",
    )
    cpus_max: float = Field(
        ge=1,
        description="the most CPU time it may use, in CPUs: one per 1769 MB of memory, at "
        "least 1, at most the CPUs of the largest node",
    )

    @classmethod
    def of(cls, p: Provisioning) -> ProvisionedOut:
        return cls(cpu_weight=p.cpu_weight, cpus_max=p.cpus_max)


class FunctionOut(BaseModel):
    id: str
    name: str
    description: str
    state: str
    runtime: str
    image: str | None = None  # runtime "image": the container image ref
    handler: str
    memory_mb: int
    provisioned: ProvisionedOut
    timeout_s: float
    network: bool
    fresh_per_call: bool = False  # a new sandbox for every call
    concurrency: int
    max_retries: int
    secrets: dict[str, str]  # env var -> secret name (never values)
    latest_version: int
    active_version: int | None
    build_log: str
    triggers: list[TriggerOut] = []
    routes: list[str] = []
    created_at: float
    updated_at: float

    @classmethod
    def of(cls, view: FunctionView, triggers: list[TriggerOut] | None = None) -> FunctionOut:
        f = view.function
        return cls(
            id=f.id,
            name=f.name,
            description=f.description,
            state=view.state,
            runtime=f.runtime,
            image=f.image,
            handler=(view.active or view.latest).handler,
            memory_mb=f.memory_mb,
            provisioned=ProvisionedOut.of(view.provisioned),
            timeout_s=f.timeout_s,
            network=f.network,
            fresh_per_call=f.fresh_per_call,
            concurrency=f.concurrency,
            max_retries=f.max_retries,
            secrets=f.secrets,
            latest_version=f.latest_version,
            active_version=f.active_version,
            build_log=view.latest.build_log,
            triggers=triggers or [],
            created_at=f.created_at,
            updated_at=f.updated_at,
        )


class FunctionSummary(BaseModel):
    name: str
    description: str
    latest_version: int
    active_version: int | None
    memory_mb: int
    timeout_s: float
    updated_at: float


class InvocationOut(BaseModel):
    id: str
    function: str
    version: int
    mode: str
    status: str
    result: Any = None
    error: dict[str, Any] | None = None
    stdout: str = ""
    stderr: str = ""
    cold_start: bool | None = None
    init_ms: float | None = None
    duration_ms: float | None = None
    peak_memory_kb: int | None = None
    attempt: int = 1
    trigger: str = Field(
        "sync", description="how it started: " + ", ".join(TRIGGERS) + " (as metrics label it)"
    )
    event_id: str | None = None
    parent_id: str | None = None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None

    @classmethod
    def of(cls, inv: Invocation) -> dict[str, Any]:
        # A plain dict: the invoke path is hot, and these fields are already the right types.
        return {
            "id": inv.id,
            "function": inv.function_name,
            "version": inv.version,
            "mode": inv.mode,
            "status": str(inv.status),
            "result": decode_result(inv),
            "error": inv.error,
            "stdout": inv.stdout,
            "stderr": inv.stderr,
            "cold_start": inv.cold_start,
            "init_ms": inv.init_ms,
            "duration_ms": inv.duration_ms,
            "peak_memory_kb": inv.peak_memory_kb,
            "attempt": inv.attempt,
            "trigger": trigger_of(inv),
            "event_id": inv.event_id,
            "parent_id": inv.parent_id,
            "created_at": inv.created_at,
            "started_at": inv.started_at,
            "finished_at": inv.finished_at,
        }


class Accepted(BaseModel):
    id: str
    status: str


class RollbackIn(Input):
    version: int


class LogLineOut(BaseModel):
    invocation_id: str
    time: float
    stream: str
    text: str


class LogsOut(BaseModel):
    lines: list[LogLineOut]
    cursor: float | None
