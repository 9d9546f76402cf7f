"""Builds a connector from its kind, URL and options, and redacts URLs for display.

| kind     | URL schemes           | required option | optional options          |
|----------|-----------------------|-----------------|---------------------------|
| nats     | nats, tls             | subject         |                           |
| mqtt     | mqtt, mqtts           | source_topic    | client_id, qos (0 or 1)   |
| amqp     | amqp, amqps           | queue           | prefetch                  |
| redis    | redis, rediss         | stream          | group, consumer           |
| postgres | postgresql, postgres  | table           |                           |

Option names may be spelled with "-" or "_" (`source-topic` = `source_topic`, as the CLI flags).
An unknown kind, a malformed URL, a missing or unknown option raise `InvalidInput`; no message
ever contains the URL's credentials.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from pratai.connectors._common import redact_url
from pratai.connectors.base import Connector
from pratai.errors import InvalidInput

__all__ = ["KINDS", "make_connector", "redact_url"]


@dataclass(frozen=True)
class KindSpec:
    schemes: tuple[str, ...]
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()


KINDS: dict[str, KindSpec] = {
    "nats": KindSpec(("nats", "tls"), ("subject",)),
    "mqtt": KindSpec(("mqtt", "mqtts"), ("source_topic",), ("client_id", "qos")),
    "amqp": KindSpec(("amqp", "amqps"), ("queue",), ("prefetch",)),
    "redis": KindSpec(("redis", "rediss"), ("stream",), ("group", "consumer")),
    "postgres": KindSpec(("postgresql", "postgres"), ("table",)),
}


def _check_url(kind: str, url: str, spec: KindSpec) -> None:
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError when not a number in 0..65535
    except ValueError as exc:
        raise InvalidInput(f"malformed {kind} URL {shown!r}: {exc}") from None
    if parts.scheme.lower() not in spec.schemes:
        allowed = ", ".join(f"{s}://" for s in spec.schemes)
        raise InvalidInput(f"a {kind} URL starts with {allowed}; got {shown!r}")
    if not parts.hostname and kind != "postgres":  # libpq defaults to the local socket
        raise InvalidInput(f"malformed {kind} URL {shown!r}: no host")
    if port == 0:
        raise InvalidInput(f"malformed {kind} URL {shown!r}: port 0")


def _int_option(kind: str, name: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise InvalidInput(f"{kind} option {name!r} must be an integer in {low}..{high}")
    return number


def make_connector(kind: str, url: str, options: dict[str, str]) -> Connector:
    """The connector of `kind` reading from `url`; raises `InvalidInput` when it cannot be made."""
    spec = KINDS.get(kind)
    if spec is None:
        raise InvalidInput(f"unknown connector kind {kind!r}; kinds are: {', '.join(KINDS)}")
    _check_url(kind, url, spec)
    opts: dict[str, str] = {}
    for key, value in options.items():
        opts[key.replace("-", "_")] = value
    unknown = sorted(set(opts) - set(spec.required) - set(spec.optional))
    if unknown:
        accepted = ", ".join(spec.required + spec.optional)
        raise InvalidInput(
            f"unknown option(s) for a {kind} connector: {', '.join(unknown)} (accepted: {accepted})"
        )
    for name in spec.required:
        if not opts.get(name, "").strip():
            flag = name.replace("_", "-")
            raise InvalidInput(f"a {kind} connector needs the option {name!r} (--{flag})")

    if kind == "nats":
        from pratai.connectors.nats import NatsConnector

        subject = opts["subject"]
        if any(c.isspace() for c in subject) or ".." in subject or subject.startswith("."):
            raise InvalidInput(f"invalid NATS subject {subject!r}")
        return NatsConnector(url, subject)
    if kind == "mqtt":
        from pratai.connectors.mqtt import MqttConnector

        topic = opts["source_topic"]
        if "#" in topic[:-1] or (topic.endswith("#") and topic not in ("#",) and topic[-2] != "/"):
            raise InvalidInput(f"invalid MQTT topic filter {topic!r}: '#' must be last, after '/'")
        qos = _int_option(kind, "qos", opts.get("qos", "1"), 0, 1)
        return MqttConnector(url, topic, client_id=opts.get("client_id") or None, qos=qos)
    if kind == "amqp":
        from pratai.connectors.amqp import AmqpConnector

        prefetch = _int_option(kind, "prefetch", opts.get("prefetch", "100"), 1, 65535)
        return AmqpConnector(url, opts["queue"], prefetch=prefetch)
    if kind == "redis":
        from pratai.connectors.redis import RedisStreamConnector

        return RedisStreamConnector(
            url,
            opts["stream"],
            group=opts.get("group") or "pratai",
            consumer=opts.get("consumer") or "pratai",
        )
    from pratai.connectors.postgres import PostgresConnector

    return PostgresConnector(url, opts["table"])
