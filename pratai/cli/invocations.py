"""Invocation commands of the `pratai` CLI: invoke a function, show its runs, follow its logs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from pratai.api_client import ApiClient
from pratai.cli.group import Answer, Stream, command
from pratai.cli.output import ms, when


@command()
@click.argument("name")
@click.option("--payload", default="", help="JSON (or any text) passed to the function")
@click.option(
    "--payload-file",
    type=click.Path(exists=True, dir_okay=False),
    help="read the payload from a file",
)
@click.option("--async", "run_async", is_flag=True, help="print the invocation id at once")
def invoke(name: str, payload: str, payload_file: str | None, run_async: bool) -> Answer:
    """Invoke a function; waits and prints the result unless --async."""
    body = Path(payload_file).read_bytes() if payload_file else payload.encode()
    try:
        json.loads(body or b"null")
        content_type = "application/json"
    except ValueError:
        content_type = "application/octet-stream"
    answer = ApiClient().invoke(name, body, run_async=run_async, content_type=content_type)
    if run_async:
        return Answer.line(answer, answer["id"])
    if answer["status"] == "succeeded":
        return Answer.line(answer, json.dumps(answer["result"], indent=2))
    return Answer(answer, lambda: _print_failure(answer), exit_code=1)


def _print_failure(inv: dict[str, Any]) -> None:
    error = inv.get("error") or {}
    click.echo(
        f"invocation {inv['id']} {inv['status']}: "
        f"{error.get('type', '')}: {error.get('message', '')}",
        err=True,
    )
    if error.get("traceback"):
        click.echo(error["traceback"].rstrip(), err=True)


@command("invocation-show")
@click.argument("invocation_id")
@click.option("--tree", is_flag=True, help="the whole pipeline run it belongs to")
def invocation_show(invocation_id: str, tree: bool) -> Answer:
    """Status, result, error, output, duration and peak memory of one invocation."""
    if tree:
        steps = ApiClient().invocation_tree(invocation_id)
        return Answer(steps, lambda: _print_tree(steps, invocation_id))
    inv = ApiClient().get_invocation(invocation_id)
    error = inv["error"] or {}
    peak = inv["peak_memory_kb"]
    return Answer.pairs(
        inv,
        [
            ("id", inv["id"]),
            ("function", f"{inv['function']} (version {inv['version']})"),
            ("status", inv["status"]),
            ("mode", inv["mode"]),
            ("attempt", inv["attempt"]),
            ("created", when(inv["created_at"])),
            ("duration", ms(inv["duration_ms"])),
            ("cold start", _cold(inv)),
            ("peak memory", "-" if peak is None else f"{peak} KiB"),
            ("result", json.dumps(inv["result"]) if inv["status"] == "succeeded" else None),
            ("error", f"{error.get('type')}: {error.get('message')}" if error else None),
            ("traceback", error.get("traceback") or None),
            ("stdout", inv["stdout"] or None),
            ("stderr", inv["stderr"] or None),
        ],
    )


def _print_tree(steps: list[dict[str, Any]], marked: str) -> None:
    for step in steps:
        mark = "*" if step["id"] == marked else " "
        click.echo(
            f"{mark} {'  ' * step['depth']}{step['function']}  {step['status']}  "
            f"{ms(step['duration_ms'])}  {step['id']}"
        )


def _cold(inv: dict[str, Any]) -> str:
    if inv["cold_start"] is None:
        return "-"
    return f"yes (init {ms(inv['init_ms'])})" if inv["cold_start"] else "no"


@command("invocation-list")
@click.argument("name", required=False)
@click.option("--limit", type=int, default=20, show_default=True)
def invocation_list(name: str | None, limit: int) -> Answer:
    """Recent invocations, newest first (of one function, or all)."""
    return Answer.rows(
        ApiClient().list_invocations(name, limit),
        ["ID", "FUNCTION", "VERSION", "STATUS", "CREATED", "DURATION", "COLD START"],
        lambda i: (
            i["id"],
            i["function"],
            i["version"],
            i["status"],
            when(i["created_at"]),
            ms(i["duration_ms"]),
            _cold(i),
        ),
    )


@command()
@click.argument("name")
@click.option("--follow", "-f", is_flag=True, help="keep printing new output")
def logs(name: str, follow: bool) -> Stream:
    """Print the output of a function's invocations."""
    return Stream(_log_lines(ApiClient(), name, follow), _print_log_line)


def _log_lines(client: ApiClient, name: str, follow: bool) -> Iterator[dict[str, Any]]:
    cursor: float | None = None
    while True:
        page = client.logs(name, cursor)
        yield from page["lines"]
        cursor = page["cursor"] if page["cursor"] is not None else cursor
        if not follow:
            return
        if cursor is None:
            cursor = time.time() - 1
        time.sleep(0.5)


def _print_log_line(line: dict[str, Any]) -> None:
    click.echo(f"{when(line['time'])} {line['invocation_id'][:8]} {line['stream']}: {line['text']}")


COMMANDS = (invoke, invocation_show, invocation_list, logs)
