"""What inputs must look like, as the OpenAPI document states it.

The checks themselves stay in `pratai.core` (their messages say what to do instead); these
are the same rules written as JSON Schema, built from the same constants, so the document and
the code cannot drift apart. Use them as `json_schema_extra` of a field or parameter.
"""

from __future__ import annotations

from typing import Any

from pratai.core.events import TOPIC_PATTERN
from pratai.core.functions import (
    MAX_CONCURRENCY,
    MAX_MEMORY_MB,
    MAX_RETRIES,
    MAX_TIMEOUT_S,
    MIN_MEMORY_MB,
)
from pratai.core.jobs import MAX_JOB_MEMORY_MB, MAX_JOB_TIMEOUT_S, MIN_JOB_MEMORY_MB
from pratai.core.models import NAME_PATTERN, Role, TriggerKind
from pratai.core.node_tokens import MAX_NAME as MAX_NODE_TOKEN_NAME
from pratai.core.node_tokens import NAME_PATTERN as NODE_TOKEN_NAME_PATTERN
from pratai.core.ports import CONTRACTS
from pratai.core.runtimes import RUNTIMES
from pratai.core.secrets import ENV_PATTERN, SECRET_NAME_PATTERN
from pratai.core.triggers import MODES

Schema = dict[str, Any]

NAME: Schema = {"pattern": NAME_PATTERN, "minLength": 1, "maxLength": 63}
TOPIC: Schema = {"pattern": TOPIC_PATTERN, "minLength": 1, "maxLength": 255}
SECRET_NAME: Schema = {"pattern": SECRET_NAME_PATTERN, "minLength": 1, "maxLength": 128}
NODE_TOKEN_NAME: Schema = {
    "pattern": NODE_TOKEN_NAME_PATTERN,
    "minLength": 1,
    "maxLength": MAX_NODE_TOKEN_NAME,
}
ENV_NAME = r"^[A-Za-z0-9_]+$"
# "" is the same as none
RATE: Schema = {"pattern": r"^(0*[1-9][0-9]*/(second|minute|hour|day))?$"}
DURATION: Schema = {"pattern": r"^(0*[1-9][0-9]*[smhdSMHD])?$"}
BASE64: Schema = {
    "pattern": r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
    "contentEncoding": "base64",
}

FUNCTION_MEMORY_MB: Schema = {"minimum": MIN_MEMORY_MB, "maximum": MAX_MEMORY_MB}
FUNCTION_TIMEOUT_S: Schema = {"exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_S}
CONCURRENCY: Schema = {"minimum": 1, "maximum": MAX_CONCURRENCY}
RETRIES: Schema = {"minimum": 0, "maximum": MAX_RETRIES}
JOB_MEMORY_MB: Schema = {"minimum": MIN_JOB_MEMORY_MB, "maximum": MAX_JOB_MEMORY_MB}
JOB_TIMEOUT_S: Schema = {"exclusiveMinimum": 0, "maximum": MAX_JOB_TIMEOUT_S}
FREQUENCY_MINUTES: Schema = {"exclusiveMinimum": 0, "maximum": 525_600}

RUNTIME: Schema = {"enum": list(RUNTIMES)}
CONTRACT: Schema = {"enum": sorted(CONTRACTS)}
EVENT: Schema = {"enum": [k.value for k in TriggerKind]}
MODE: Schema = {"enum": sorted(MODES)}
ROUTE_AUTH: Schema = {"enum": ["public", *(r.value for r in Role)]}

SECRET_BINDINGS: Schema = {  # ENV, or ENV=secret_name
    "items": {
        "type": "string",
        "pattern": f"^{ENV_PATTERN[1:-1]}(={SECRET_NAME_PATTERN[1:-1]})?$",
    }
}
SECRET_FILES: Schema = {"items": {"type": "string", **SECRET_NAME}}
REQUIREMENT = r"^ *[A-Za-z0-9_.\[\],<>=!~-][A-Za-z0-9_.\[\],<>=!~ -]*$"  # not only spaces

# Which trigger fields go together (the body of POST /v1/triggers, and the trigger fields of
# POST /v1/functions): a message needs a topic, a timer exactly one of frequency and cron,
# and only a webhook can wait for the response. An absent or null field is not given.
TRIGGER_FIELDS: list[Any] = [
    {
        "if": {"required": ["event"], "properties": {"event": {"const": "message"}}},
        "then": {"required": ["subscribe_to"], "properties": {"subscribe_to": TOPIC}},
    },
    {
        "if": {"required": ["event"], "properties": {"event": {"const": "timer"}}},
        "then": {
            "oneOf": [
                {
                    "required": ["frequency"],
                    "properties": {"frequency": {"type": "number", **FREQUENCY_MINUTES}},
                },
                {"required": ["cron"], "properties": {"cron": {"type": "string"}}},
            ]
        },
    },
    {
        "if": {"required": ["type"], "properties": {"type": {"const": "wait_for_response"}}},
        "then": {"required": ["event"], "properties": {"event": {"const": "webhook"}}},
    },
]

PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
_HOST = r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?"


def connector_url(schemes: tuple[str, ...]) -> Schema:
    """A URL of one of `schemes` with a host (a subset of what the connectors accept)."""
    scheme = "|".join(schemes)
    return {
        "pattern": f"^({scheme})://([A-Za-z0-9._~-]+(:[A-Za-z0-9._~-]*)?@)?{_HOST}(:{PORT})?(/[A-Za-z0-9._~/-]*)?$"
    }
