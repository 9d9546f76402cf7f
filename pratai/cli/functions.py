"""Function commands of the `pratai` CLI: deploy, update, list, show, version and delete."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import click

from pratai.api_client import ApiClient
from pratai.cli.group import Answer, command
from pratai.cli.output import describe_trigger, fields, when
from pratai.cli.progress import CountedBytes, Progress

F = TypeVar("F", bound=Callable[..., Any])


def _read_zip(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}") from exc


def _show_function(fn: dict[str, Any]) -> None:
    fields(
        [
            ("name", fn["name"]),
            ("description", fn["description"]),
            ("state", fn["state"]),
            ("active version", fn["active_version"]),
            ("latest version", fn["latest_version"]),
            ("handler", fn["handler"]),
            ("runtime", fn["runtime"]),
            *([("image", fn["image"])] if fn.get("image") else []),
            ("memory", f"{fn['memory_mb']} MB"),
            *([("cpu", _cpu(fn["provisioned"]))] if fn.get("provisioned") else []),
            ("timeout", f"{fn['timeout_s']:g} s"),
            ("network", "yes" if fn["network"] else "no"),
            ("sandbox", "fresh per call" if fn.get("fresh_per_call") else "warm reuse"),
            ("concurrency", fn["concurrency"]),
            ("max retries", fn.get("max_retries")),
            ("secrets", ", ".join(f"{k}={v}" for k, v in fn.get("secrets", {}).items()) or None),
            *[(f"trigger {t['id'][:8]}", describe_trigger(t)) for t in fn.get("triggers", [])],
            *[("route", r) for r in fn.get("routes", [])],
            ("updated", when(fn["updated_at"])),
            ("build log", fn["build_log"] or "-"),
        ]
    )


def _cpu(provisioned: dict[str, Any]) -> str:
    cpus = provisioned["cpus_max"]
    return f"weight {provisioned['cpu_weight']} (100 = 128 MB), at most {cpus:g} CPU" + (
        "s" if cpus != 1 else ""
    )


def _wait_ready(client: ApiClient, name: str, fn: dict[str, Any]) -> dict[str, Any]:
    if fn["state"] != "building":
        return dict(fn)
    with Progress(f"building {name} v{fn['latest_version']}"):
        while fn["state"] == "building":
            time.sleep(0.2)
            fn = client.get_function(name)
    return dict(fn)


def _send(
    file_: str | None, call: Callable[[bytes | BinaryIO | None], dict[str, Any]]
) -> dict[str, Any]:
    """`call` with the zip `file_` (or None), showing the upload's progress at a terminal."""
    if file_ is None:
        return call(None)
    package = _read_zip(file_)
    progress = Progress(f"uploading {Path(file_).name}", total=len(package))
    if not progress.shown:
        return call(package)
    with progress:
        return call(CountedBytes(package, progress.advance))


def _deployed(client: ApiClient, fn: dict[str, Any], wait: bool) -> Answer:
    if wait:
        fn = _wait_ready(client, fn["name"], fn)
    answer = Answer(fn, lambda: _show_function(fn))
    if fn["state"] != "build_failed":
        return answer
    why = (
        f"error: build of version {fn['latest_version']} failed "
        f"(version {fn['active_version'] or 'none'} keeps serving)"
    )
    return dataclasses.replace(answer, notice=why, exit_code=1)


def _function_options(f: F) -> F:
    for option in reversed(
        [
            click.option("--description", help="what the function does"),
            click.option("--memory", type=int, help="memory limit in MB (default 128)"),
            click.option("--timeout", type=float, help="time limit in seconds (default 30)"),
            click.option("--network/--no-network", default=None, help="allow network access"),
            click.option("--concurrency", type=int, help="invocations one node runs at once"),
            click.option(
                "--fresh-per-call/--warm",
                default=None,
                help="a new sandbox for every call, or reuse warm ones (the default)",
            ),
            click.option("--handler", help="module.func (default: main.main; node20: index.main)"),
            click.option("--runtime", help="python (default) or node20"),
            click.option(
                "--max-retries", type=int, help="retries of a failed async run (default 2)"
            ),
            click.option(
                "--secret",
                multiple=True,
                help="inject a secret as an env var: NAME, or VAR=secret_name (repeatable)",
            ),
            click.option(
                "--secret-file",
                multiple=True,
                help="mount a secret as the file /run/secrets/NAME (repeatable)",
            ),
            click.option("--wait/--no-wait", default=True, help="wait until the build is ready"),
        ]
    ):
        f = option(f)
    return f


@command("function-create")
@click.argument("name")
@click.option("--file", "file_", help="zip with main.py [+ requirements.txt]")
@click.option("--image", help="a container image of the project (see image-load) instead")
@click.option("--contract", type=click.Choice(["http", "stdio"]), help="image: http (default)")
@_function_options
@click.option("--event", type=click.Choice(["webhook", "message", "timer"]), help="what runs it")
@click.option(
    "--type",
    "type_",
    type=click.Choice(["async", "wait_for_response"]),
    default="async",
    show_default=True,
    help="webhook: answer at once, or with the result",
)
@click.option("--subscribe_to", "--subscribe-to", "subscribe_to", help="topic (message events)")
@click.option("--frequency", type=float, help="every N minutes (timer)")
@click.option("--cron", help='cron expression, e.g. "*/5 * * * *" (timer)')
@click.option("--timezone", help="time zone of --cron (default UTC)")
@click.option("--route", help='expose on the gateway, e.g. "GET /users/{id}"')
@click.option(
    "--route-auth",
    default="public",
    show_default=True,
    type=click.Choice(["public", "viewer", "invoker", "developer", "admin"]),
    help="who may call the route",
)
@click.option("--rate-limit", help="route rate limit per caller, e.g. 100/minute")
@click.option("--max-body", type=int, help="route request size limit in bytes")
@click.option("--route-timeout", type=float, help="route time limit in seconds")
@click.option("--cors-origin", multiple=True, help="origin allowed to call the route")
def function_create(name: str, file_: str | None, wait: bool, type_: str, **options: Any) -> Answer:
    """Deploy a new function from a zip or a container image (with --event, also what runs
    it)."""
    if bool(file_) == bool(options.get("image")):
        raise click.UsageError("give either --file ZIP or --image REF")
    client = ApiClient()
    form = {**options, "type": type_ if options.get("event") else None}
    created = _send(file_, lambda package: client.create_function(name, package, **form))
    return _deployed(client, created, wait)


@command("function-update")
@click.argument("name")
@click.option("--file", "file_", help="a new zip: makes a new version")
@click.option("--image", help="a new container image ref: makes a new version")
@click.option("--contract", type=click.Choice(["http", "stdio"]), help="image functions")
@_function_options
def function_update(name: str, file_: str | None, wait: bool, **options: Any) -> Answer:
    """Deploy a new version, or change settings."""
    client = ApiClient()
    updated = _send(file_, lambda package: client.update_function(name, package, **options))
    return _deployed(client, updated, wait)


@command("function-list")
def function_list() -> Answer:
    """List the project's functions."""
    return Answer.rows(
        ApiClient().list_functions(),
        ["NAME", "ACTIVE", "LATEST", "MEMORY", "TIMEOUT", "UPDATED", "DESCRIPTION"],
        lambda f: (
            f["name"],
            f["active_version"],
            f["latest_version"],
            f"{f['memory_mb']} MB",
            f"{f['timeout_s']:g} s",
            when(f["updated_at"]),
            f["description"],
        ),
    )


@command("function-show")
@click.argument("name")
def function_show(name: str) -> Answer:
    """Show a function, its state and its latest build log."""
    fn = ApiClient().get_function(name)
    return Answer(fn, lambda: _show_function(fn))


@command("function-versions")
@click.argument("name")
def function_versions(name: str) -> Answer:
    """List a function's versions; the active one is marked."""
    return Answer.rows(
        ApiClient().list_versions(name),
        ["VERSION", "STATE", "HANDLER", "PACKAGE", "CREATED"],
        lambda v: (
            ("* " if v["active"] else "  ") + str(v["version"]),
            v["state"],
            v["handler"],
            v["package_digest"][:12],
            when(v["created_at"]),
        ),
    )


@command("function-rollback")
@click.argument("name")
@click.option("--version", "version", type=int, required=True, help="version to serve")
def function_rollback(name: str, version: int) -> Answer:
    """Serve an earlier version again."""
    fn = ApiClient().rollback(name, version)
    return Answer.line(fn, f"{name} now serves version {fn['active_version']}")


@command("function-delete")
@click.argument("name")
def function_delete(name: str) -> Answer:
    """Delete a function with its versions and invocations."""
    ApiClient().delete_function(name)
    return Answer.deleted(name)


COMMANDS = (
    function_create,
    function_update,
    function_list,
    function_show,
    function_versions,
    function_rollback,
    function_delete,
)
