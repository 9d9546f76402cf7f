"""What travels between the control plane and a node: a run order, its outcome, a heartbeat.

A node holds no database credentials, so an order carries everything the run needs: the
invocation (payload included), the function's settings, the version to run (its package by
digest, fetched from the shared artifact store) and the values of the function's secrets, which
the node keeps in memory only. An order is a JSON head, a newline, then the payload's bytes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from pratai.core.models import Function, FunctionVersion, Invocation, Status

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

    def encode(self) -> bytes:
        version = dataclasses.asdict(self.version) | {"build_log": ""}
        head = {
            "dispatch": self.dispatch,
            "invocation": {name: getattr(self.invocation, name) for name in _SENT},
            "attempt": self.invocation.attempt,
            "function": dataclasses.asdict(self.function),
            "version": version,
            "secrets": self.secrets,
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
            )
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a run order: {exc}") from None


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
