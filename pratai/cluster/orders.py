"""What travels between the control plane and a node: a run order, its outcome, a heartbeat.

A node holds no database credentials, so an order carries everything the run needs: the
invocation (payload included), the function's settings, the version to run (its package by
digest, fetched from the shared artifact store; for a container image, the digest of the archive
that holds it) and the values of the function's secrets, which the node keeps in memory only. An
order is a JSON head, a newline, then the payload's bytes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from pratai.core.models import Function, FunctionVersion, Invocation, Job, JobKind, Status

# What of an invocation a node needs and reports on; the rest stays in the store.
_SENT = ("id", "project_id", "function_id", "function_name", "version", "mode", "content_type")
_REPORTED = (
    "status",
    "result",
    "error",
    "stdout",
    "stderr",
    "cold_start",
    "init_ms",
    "duration_ms",
    "peak_memory_kb",
    "finished_at",
)


@dataclass
class RunOrder:
    dispatch: str  # one per sending: a reply to an older sending of the same call is not used
    invocation: Invocation
    function: Function
    version: FunctionVersion
    secrets: dict[str, str] = field(default_factory=dict)
    image_archive: str | None = None  # runtime "image": the archive's digest in the artifacts

    def encode(self) -> bytes:
        version = dataclasses.asdict(self.version) | {"build_log": ""}
        head = {
            "dispatch": self.dispatch,
            "invocation": {name: getattr(self.invocation, name) for name in _SENT},
            "attempt": self.invocation.attempt,
            "function": dataclasses.asdict(self.function),
            "version": version,
            "secrets": self.secrets,
            "image_archive": self.image_archive,
        }
        return json.dumps(head).encode() + b"\n" + self.invocation.payload

    @classmethod
    def decode(cls, data: bytes) -> RunOrder:
        """Raises ValueError for anything but an order."""
        head_bytes, newline, payload = data.partition(b"\n")
        if not newline:
            raise ValueError("an order is a JSON head, a newline and the payload")
        try:
            head = json.loads(head_bytes)
            invocation = Invocation(**head["invocation"], attempt=head["attempt"])
            invocation.payload = payload
            return cls(
                dispatch=str(head["dispatch"]),
                invocation=invocation,
                function=Function(**head["function"]),
                version=FunctionVersion(**head["version"]),
                secrets={str(k): str(v) for k, v in head["secrets"].items()},
                image_archive=_optional_str(head.get("image_archive")),
            )
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a run order: {exc}") from None


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def encode_outcome(dispatch: str, invocation: Invocation) -> bytes:
    return json.dumps(
        {"dispatch": dispatch} | {name: getattr(invocation, name) for name in _REPORTED}
    ).encode()


def apply_outcome(data: bytes, dispatch: str, invocation: Invocation) -> bool:
    """Fills in the invocation from a node's outcome of this dispatch; False for anything else
    (an outcome of an earlier sending, or not an outcome)."""
    try:
        outcome: dict[str, Any] = json.loads(data)
        if outcome.get("dispatch") != dispatch:
            return False
        status = Status(outcome["status"])
    except (ValueError, KeyError, TypeError):
        return False
    for name in _REPORTED:
        setattr(invocation, name, outcome.get(name))
    invocation.status = status
    invocation.stdout = invocation.stdout or ""
    invocation.stderr = invocation.stderr or ""
    return True


# A job travels whole (it is its own record); its bytes (stdin, result) follow the JSON head.
_JOB_BYTES = ("stdin", "result")


def _job_head(job: Job) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(job).items() if k not in _JOB_BYTES}


@dataclass
class JobOrder:
    dispatch: str
    job: Job
    progress: str  # where the node sends the job's output while it runs

    def encode(self) -> bytes:
        head = {"dispatch": self.dispatch, "progress": self.progress, "job": _job_head(self.job)}
        return json.dumps(head).encode() + b"\n" + self.job.stdin

    @classmethod
    def decode(cls, data: bytes) -> JobOrder:
        head_bytes, newline, stdin = data.partition(b"\n")
        if not newline:
            raise ValueError("a job order is a JSON head, a newline and the stdin")
        try:
            head = json.loads(head_bytes)
            fields = head["job"]
            job = Job(
                **fields | {"kind": JobKind(fields["kind"]), "status": Status(fields["status"])}
            )
            job.stdin = stdin
            return cls(str(head["dispatch"]), job, str(head["progress"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a job order: {exc}") from None


def encode_job_outcome(dispatch: str, job: Job) -> bytes:
    head = {"dispatch": dispatch, "job": _job_head(job), "has_result": job.result is not None}
    return json.dumps(head).encode() + b"\n" + (job.result or b"")


def apply_job_outcome(data: bytes, dispatch: str, job: Job) -> bool:
    """Fills in the job from a node's outcome of this dispatch; False for anything else."""
    head_bytes, _, result = data.partition(b"\n")
    try:
        head = json.loads(head_bytes)
        if head.get("dispatch") != dispatch:
            return False
        fields = head["job"]
        status = Status(fields["status"])
    except (ValueError, KeyError, TypeError):
        return False
    for name in ("exit_code", "error", "stdout", "stderr", "duration_ms", "peak_memory_kb"):
        setattr(job, name, fields.get(name))
    job.stdout, job.stderr = job.stdout or "", job.stderr or ""
    job.status, job.finished_at = status, fields.get("finished_at")
    job.started_at = fields.get("started_at") or job.started_at
    job.result = result if head.get("has_result") else None
    return True


def encode_job_progress(dispatch: str, job: Job) -> bytes:
    return json.dumps({"dispatch": dispatch, "stdout": job.stdout, "stderr": job.stderr}).encode()


def apply_job_progress(data: bytes, dispatch: str, job: Job) -> bool:
    try:
        update = json.loads(data)
        if update.get("dispatch") != dispatch:
            return False
        job.stdout, job.stderr = str(update["stdout"]), str(update["stderr"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    return True


@dataclass
class Heartbeat:
    """A node's state, as it tells it every PRATAI_HEARTBEAT_S."""

    name: str
    instance: str  # new at each start: a restarted node is a new member
    token: str
    state: str  # "ready" | "draining"
    memory_budget_mb: int
    memory_used_mb: int
    slots: int
    busy: int
    warm: list[str]  # "<function id>:<version>" of its warm instances
    load: float  # the host's 1-minute load average
    runtimes: list[str]
    started_at: float
    sent_at: float
    cpus: int = 0  # the CPUs its instances may use (0: a node from before it told)
    # The dispatch ids of the orders it has and has not answered yet (running, or waiting for
    # a slot). A sender whose order is missing here, and unanswered, knows the order or its
    # reply was lost on the way (NATS restarted, a connection broke). None: a node that does
    # not tell (older).
    holding: list[str] | None = None

    def encode(self) -> bytes:
        return json.dumps(dataclasses.asdict(self)).encode()

    @classmethod
    def decode(cls, data: bytes) -> Heartbeat:
        try:
            return cls(**json.loads(data))
        except (TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a heartbeat: {exc}") from None


def warm_key(function_id: str, version: int) -> str:
    return f"{function_id}:{version}"
