"""Event, trigger and connector commands of the `pratai` CLI."""

from __future__ import annotations

import json
import uuid
from typing import Any

import click

from pratai.api_client import ApiClient
from pratai.cli.group import Answer, command
from pratai.cli.output import describe_trigger, when


@command("event-publish")
@click.argument("topic")
@click.option("--data", default="null", show_default=True, help="JSON data of the event")
@click.option("--id", "event_id", help="CloudEvent id (the same id twice runs subscribers once)")
@click.option("--source", default="/pratai/cli", show_default=True, help="CloudEvent source")
@click.option("--type", "type_", default="pratai.event", show_default=True, help="CloudEvent type")
def event_publish(topic: str, data: str, event_id: str | None, source: str, type_: str) -> Answer:
    """Publish an event to a topic; prints its id once it is durable."""
    try:
        json.loads(data)
    except ValueError as exc:
        raise click.BadParameter(f"--data is not JSON: {exc}") from exc
    headers = {
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": event_id or uuid.uuid4().hex,
        "ce-source": source,
        "ce-type": type_,
    }
    answer = ApiClient().publish(topic, data.encode(), headers)
    duplicate = "  (duplicate: already published)" if answer["duplicate"] else ""
    return Answer.line(answer, answer["id"] + duplicate)


@command("event-list")
@click.argument("topic")
@click.option("--limit", type=int, default=20, show_default=True)
def event_list(topic: str, limit: int) -> Answer:
    """The topic's events, newest first."""
    return Answer.rows(
        ApiClient().list_events(topic, limit),
        ["ID", "TYPE", "SOURCE", "TIME", "DATA"],
        lambda e: (e["id"], e["type"], e["source"], e["time"], _data(e)),
    )


def _data(event: dict[str, Any]) -> str:
    text = json.dumps(event.get("data")) if "data" in event else "<binary>"
    return text if len(text) <= 60 else text[:57] + "..."


@command("event-redrive")
@click.argument("event_id")
def event_redrive(event_id: str) -> Answer:
    """Run a dead-lettered event (see `event-list dead-letter`) again; prints the invocation."""
    answer = ApiClient().redrive(event_id)
    return Answer.line(answer, answer["id"])


@command("trigger-list")
@click.argument("function", required=False)
def trigger_list(function: str | None) -> Answer:
    """Triggers of the project (or of one function)."""
    return Answer.rows(
        ApiClient().list_triggers(function),
        ["ID", "FUNCTION", "TRIGGER", "CREATED"],
        lambda t: (t["id"], t["function"], describe_trigger(t), when(t["created_at"])),
    )


@command("trigger-create")
@click.argument("function")
@click.option("--event", required=True, type=click.Choice(["webhook", "message", "timer"]))
@click.option(
    "--type",
    "type_",
    type=click.Choice(["async", "wait_for_response"]),
    default="async",
    show_default=True,
)
@click.option("--subscribe_to", "--subscribe-to", "subscribe_to", help="topic (message events)")
@click.option("--frequency", type=float, help="every N minutes (timer)")
@click.option("--cron", help="cron expression (timer)")
@click.option("--timezone", help="time zone of --cron (default UTC)")
def trigger_create(function: str, event: str, type_: str, **spec: Any) -> Answer:
    """Add a trigger to a function (a function may have several)."""
    created = ApiClient().create_trigger(function, event=event, type=type_, **spec)
    return Answer.line(created, f"{created['id']}  {describe_trigger(created)}")


@command("trigger-delete")
@click.argument("trigger_id")
def trigger_delete(trigger_id: str) -> Answer:
    """Remove a trigger."""
    ApiClient().delete_trigger(trigger_id)
    return Answer.deleted(trigger_id)


@command("connector-create")
@click.argument("name")
@click.option(
    "--kind", required=True, type=click.Choice(["nats", "mqtt", "amqp", "redis", "postgres"])
)
@click.option("--url", required=True, help="e.g. nats://127.0.0.1:4222")
@click.option("--topic", required=True, help="Pratai topic the messages are published to")
@click.option("--subject", help="nats: subject to subscribe to (wildcards allowed)")
@click.option("--source-topic", help="mqtt: topic filter, e.g. sensors/#")
@click.option("--queue", help="amqp: queue to consume")
@click.option("--stream", help="redis: stream to read")
@click.option("--table", help="postgres: table whose inserts, updates and deletes become events")
def connector_create(name: str, kind: str, url: str, topic: str, **options: str | None) -> Answer:
    """Turn messages of a system you already run into events on a topic."""
    chosen = {k: v for k, v in options.items() if v is not None}
    created = ApiClient().create_connector(
        name=name, kind=kind, url=url, topic=topic, options=chosen
    )
    return _connector(created)


def _connector(c: dict[str, Any]) -> Answer:
    last_error = f"{c['last_error']} ({when(c['last_error_at'])})" if c["last_error"] else None
    return Answer.pairs(
        c,
        [
            ("name", c["name"]),
            ("kind", c["kind"]),
            ("url", c["url"]),
            ("topic", c["topic"]),
            ("options", ", ".join(f"{k}={v}" for k, v in c["options"].items())),
            ("connected", "yes" if c["connected"] else "no"),
            ("forwarded", c["forwarded"]),
            ("last error", last_error),
        ],
    )


@command("connector-list")
def connector_list() -> Answer:
    """The project's connectors."""
    return Answer.rows(
        ApiClient().list_connectors(),
        ["NAME", "KIND", "URL", "TOPIC", "CONNECTED", "FORWARDED"],
        lambda c: (
            c["name"],
            c["kind"],
            c["url"],
            c["topic"],
            "yes" if c["connected"] else "no",
            c["forwarded"],
        ),
    )


@command("connector-show")
@click.argument("name")
def connector_show(name: str) -> Answer:
    """Whether it is connected, how many events it forwarded, its last error."""
    return _connector(ApiClient().get_connector(name))


@command("connector-delete")
@click.argument("name")
def connector_delete(name: str) -> Answer:
    """Stop and remove a connector."""
    ApiClient().delete_connector(name)
    return Answer.deleted(name)


COMMANDS = (
    event_publish,
    event_list,
    event_redrive,
    trigger_list,
    trigger_create,
    trigger_delete,
    connector_create,
    connector_list,
    connector_show,
    connector_delete,
)
