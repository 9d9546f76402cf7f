"""Event and trigger commands of the `pratai` CLI."""

from __future__ import annotations

import json
import uuid
from typing import Any

import click

from pratai.cli.main import cli, handle_errors, output_option
from pratai.cli.output import describe_trigger, emit_json, fields, table, when
from pratai.client import Client


@cli.command("event-publish")
@click.argument("topic")
@click.option("--data", default="null", show_default=True, help="JSON data of the event")
@click.option("--id", "event_id", help="CloudEvent id (the same id twice runs subscribers once)")
@click.option("--source", default="/pratai/cli", show_default=True, help="CloudEvent source")
@click.option("--type", "type_", default="pratai.event", show_default=True, help="CloudEvent type")
@output_option
@handle_errors
def event_publish(
    topic: str, data: str, event_id: str | None, source: str, type_: str, output: str
) -> None:
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
    answer = Client().publish(topic, data.encode(), headers)
    if output == "json":
        return emit_json(answer)
    click.echo(answer["id"] + ("  (duplicate: already published)" if answer["duplicate"] else ""))


@cli.command("event-list")
@click.argument("topic")
@click.option("--limit", type=int, default=20, show_default=True)
@output_option
@handle_errors
def event_list(topic: str, limit: int, output: str) -> None:
    """The topic's events, newest first."""
    found = Client().list_events(topic, limit)
    if output == "json":
        return emit_json(found)
    table(
        [(e["id"], e["type"], e["source"], e["time"], _data(e)) for e in found],
        ["ID", "TYPE", "SOURCE", "TIME", "DATA"],
    )


def _data(event: dict[str, Any]) -> str:
    text = json.dumps(event.get("data")) if "data" in event else "<binary>"
    return text if len(text) <= 60 else text[:57] + "..."


@cli.command("event-redrive")
@click.argument("event_id")
@output_option
@handle_errors
def event_redrive(event_id: str, output: str) -> None:
    """Run a dead-lettered event (see `event-list dead-letter`) again; prints the invocation."""
    answer = Client().redrive(event_id)
    emit_json(answer) if output == "json" else click.echo(answer["id"])


@cli.command("trigger-list")
@click.argument("function", required=False)
@output_option
@handle_errors
def trigger_list(function: str | None, output: str) -> None:
    """Triggers of the project (or of one function)."""
    found = Client().list_triggers(function)
    if output == "json":
        return emit_json(found)
    table(
        [(t["id"], t["function"], describe_trigger(t), when(t["created_at"])) for t in found],
        ["ID", "FUNCTION", "TRIGGER", "CREATED"],
    )


@cli.command("trigger-create")
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
@output_option
@handle_errors
def trigger_create(function: str, event: str, type_: str, output: str, **spec: Any) -> None:
    """Add a trigger to a function (a function may have several)."""
    created = Client().create_trigger(function, event=event, type=type_, **spec)
    if output == "json":
        return emit_json(created)
    click.echo(f"{created['id']}  {describe_trigger(created)}")


@cli.command("trigger-delete")
@click.argument("trigger_id")
@output_option
@handle_errors
def trigger_delete(trigger_id: str, output: str) -> None:
    """Remove a trigger."""
    Client().delete_trigger(trigger_id)
    emit_json({"deleted": trigger_id}) if output == "json" else click.echo(f"deleted {trigger_id}")


@cli.command("connector-create")
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
@output_option
@handle_errors
def connector_create(
    name: str, kind: str, url: str, topic: str, output: str, **options: str | None
) -> None:
    """Turn messages of a system you already run into events on a topic."""
    chosen = {k: v for k, v in options.items() if v is not None}
    created = Client().create_connector(name=name, kind=kind, url=url, topic=topic, options=chosen)
    emit_json(created) if output == "json" else _show_connector(created)


def _show_connector(c: dict[str, Any]) -> None:
    fields(
        [
            ("name", c["name"]),
            ("kind", c["kind"]),
            ("url", c["url"]),
            ("topic", c["topic"]),
            ("options", ", ".join(f"{k}={v}" for k, v in c["options"].items())),
            ("connected", "yes" if c["connected"] else "no"),
            ("forwarded", c["forwarded"]),
            (
                "last error",
                f"{c['last_error']} ({when(c['last_error_at'])})" if c["last_error"] else None,
            ),
        ]
    )


@cli.command("connector-list")
@output_option
@handle_errors
def connector_list(output: str) -> None:
    """The project's connectors."""
    found = Client().list_connectors()
    if output == "json":
        return emit_json(found)
    table(
        [
            (
                c["name"],
                c["kind"],
                c["url"],
                c["topic"],
                "yes" if c["connected"] else "no",
                c["forwarded"],
            )
            for c in found
        ],
        ["NAME", "KIND", "URL", "TOPIC", "CONNECTED", "FORWARDED"],
    )


@cli.command("connector-show")
@click.argument("name")
@output_option
@handle_errors
def connector_show(name: str, output: str) -> None:
    """Whether it is connected, how many events it forwarded, its last error."""
    found = Client().get_connector(name)
    emit_json(found) if output == "json" else _show_connector(found)


@cli.command("connector-delete")
@click.argument("name")
@output_option
@handle_errors
def connector_delete(name: str, output: str) -> None:
    """Stop and remove a connector."""
    Client().delete_connector(name)
    emit_json({"deleted": name}) if output == "json" else click.echo(f"deleted {name}")
