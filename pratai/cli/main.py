"""Entry point of the `pratai` command."""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from pratai.cli.output import describe_trigger, emit_json, fields, ms, table, when
from pratai.client import ApiError, Client

if TYPE_CHECKING:
    from pratai.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

output_option = click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="json prints the API's answer for scripts",
)


def handle_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ApiError as exc:
            click.echo(f"error: {exc.message}", err=True)
            details = exc.body.get("details") if isinstance(exc.body, dict) else None
            if details:
                click.echo(json.dumps(details, indent=2), err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pratai")
def cli() -> None:
    """Pratai: run functions when events arrive, isolated, on your own machines."""


def main() -> None:
    from pratai.cli import events, images, jobs, tenancy  # noqa: F401 - register their commands

    cli()


# --- this machine -----------------------------------------------------------------------------


def load_settings() -> Settings:
    """This machine's settings; a bad PRATAI_* variable ends the command with exit code 2."""
    from pratai.settings import Settings

    with exit_on_bad_settings():
        return Settings.from_env()


@contextlib.contextmanager
def exit_on_bad_settings() -> Iterator[None]:
    """A bad setting (read, or the data folder unmakeable) ends the command: one line, exit 2."""
    from pratai.errors import SettingsError

    try:
        yield
    except SettingsError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(2)


@cli.command()
def serve() -> None:
    """Run api + node with the embedded defaults (settings from PRATAI_* variables)."""
    from pratai.server import serve as run
    from pratai.settings import Settings

    with exit_on_bad_settings():
        run(Settings.from_env())


@cli.command()
@output_option
def doctor(output: str) -> None:
    """Report which sandbox isolation features are active on this machine."""
    from pratai.drivers.podman import PodmanDriver
    from pratai.drivers.process import ProcessDriver

    settings = load_settings()
    features = ProcessDriver(settings).features()
    features.update(PodmanDriver(settings).probe())  # container image functions
    if output == "json":
        emit_json(features)
        return
    fields([(k, ", ".join(v) if isinstance(v, list) else v) for k, v in features.items()])


# --- functions --------------------------------------------------------------------------------


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
            ("timeout", f"{fn['timeout_s']:g} s"),
            ("network", "yes" if fn["network"] else "no"),
            ("concurrency", fn["concurrency"]),
            ("max retries", fn.get("max_retries")),
            ("secrets", ", ".join(f"{k}={v}" for k, v in fn.get("secrets", {}).items()) or None),
            *[(f"trigger {t['id'][:8]}", describe_trigger(t)) for t in fn.get("triggers", [])],
            *[("route", r) for r in fn.get("routes", [])],
            ("updated", when(fn["updated_at"])),
            ("build log", fn["build_log"] or "-"),
        ]
    )


def _wait_ready(client: Client, name: str, fn: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    tty = sys.stderr.isatty()
    while fn["state"] == "building":
        if tty:
            click.echo(
                f"\rbuilding {name} v{fn['latest_version']}... {time.monotonic() - started:.0f}s",
                nl=False,
                err=True,
            )
        time.sleep(0.2)
        fn = client.get_function(name)
    if tty:
        click.echo("\r\033[K", nl=False, err=True)
    return dict(fn)


def _deployed(client: Client, fn: dict[str, Any], wait: bool, output: str) -> None:
    if wait:
        fn = _wait_ready(client, fn["name"], fn)
    if output == "json":
        emit_json(fn)
    else:
        _show_function(fn)
    if fn["state"] == "build_failed":
        click.echo(
            f"error: build of version {fn['latest_version']} failed "
            f"(version {fn['active_version'] or 'none'} keeps serving)",
            err=True,
        )
        sys.exit(1)


def _function_options(f: F) -> F:
    for option in reversed(
        [
            click.option("--description", help="what the function does"),
            click.option("--memory", type=int, help="memory limit in MB (default 128)"),
            click.option("--timeout", type=float, help="time limit in seconds (default 30)"),
            click.option("--network/--no-network", default=None, help="allow network access"),
            click.option("--concurrency", type=int, help="invocations one node runs at once"),
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
            output_option,
        ]
    ):
        f = option(f)
    return f


@cli.command("function-create")
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
@handle_errors
def function_create(
    name: str, file_: str | None, wait: bool, output: str, type_: str, **options: Any
) -> None:
    """Deploy a new function from a zip or a container image (with --event, also what runs
    it)."""
    if bool(file_) == bool(options.get("image")):
        raise click.UsageError("give either --file ZIP or --image REF")
    client = Client()
    fields = {**options, "type": type_ if options.get("event") else None}
    package = _read_zip(file_) if file_ else None
    _deployed(client, client.create_function(name, package, **fields), wait, output)


@cli.command("function-update")
@click.argument("name")
@click.option("--file", "file_", help="a new zip: makes a new version")
@click.option("--image", help="a new container image ref: makes a new version")
@click.option("--contract", type=click.Choice(["http", "stdio"]), help="image functions")
@_function_options
@handle_errors
def function_update(name: str, file_: str | None, wait: bool, output: str, **options: Any) -> None:
    """Deploy a new version, or change settings."""
    client = Client()
    package = _read_zip(file_) if file_ else None
    _deployed(client, client.update_function(name, package, **options), wait, output)


@cli.command("function-list")
@output_option
@handle_errors
def function_list(output: str) -> None:
    """List the project's functions."""
    found = Client().list_functions()
    if output == "json":
        return emit_json(found)
    table(
        [
            (
                f["name"],
                f["active_version"],
                f["latest_version"],
                f"{f['memory_mb']} MB",
                f"{f['timeout_s']:g} s",
                when(f["updated_at"]),
                f["description"],
            )
            for f in found
        ],
        ["NAME", "ACTIVE", "LATEST", "MEMORY", "TIMEOUT", "UPDATED", "DESCRIPTION"],
    )


@cli.command("function-show")
@click.argument("name")
@output_option
@handle_errors
def function_show(name: str, output: str) -> None:
    """Show a function, its state and its latest build log."""
    fn = Client().get_function(name)
    emit_json(fn) if output == "json" else _show_function(fn)


@cli.command("function-versions")
@click.argument("name")
@output_option
@handle_errors
def function_versions(name: str, output: str) -> None:
    """List a function's versions; the active one is marked."""
    found = Client().list_versions(name)
    if output == "json":
        return emit_json(found)
    table(
        [
            (
                ("* " if v["active"] else "  ") + str(v["version"]),
                v["state"],
                v["handler"],
                v["package_digest"][:12],
                when(v["created_at"]),
            )
            for v in found
        ],
        ["VERSION", "STATE", "HANDLER", "PACKAGE", "CREATED"],
    )


@cli.command("function-rollback")
@click.argument("name")
@click.option("--version", "version", type=int, required=True, help="version to serve")
@output_option
@handle_errors
def function_rollback(name: str, version: int, output: str) -> None:
    """Serve an earlier version again."""
    fn = Client().rollback(name, version)
    if output == "json":
        return emit_json(fn)
    click.echo(f"{name} now serves version {fn['active_version']}")


@cli.command("function-delete")
@click.argument("name")
@output_option
@handle_errors
def function_delete(name: str, output: str) -> None:
    """Delete a function with its versions and invocations."""
    Client().delete_function(name)
    if output == "json":
        return emit_json({"deleted": name})
    click.echo(f"deleted {name}")


# --- invocations ------------------------------------------------------------------------------


@cli.command()
@click.argument("name")
@click.option("--payload", default="", help="JSON (or any text) passed to the function")
@click.option(
    "--payload-file",
    type=click.Path(exists=True, dir_okay=False),
    help="read the payload from a file",
)
@click.option("--async", "run_async", is_flag=True, help="print the invocation id at once")
@output_option
@handle_errors
def invoke(name: str, payload: str, payload_file: str | None, run_async: bool, output: str) -> None:
    """Invoke a function; waits and prints the result unless --async."""
    body = Path(payload_file).read_bytes() if payload_file else payload.encode()
    try:
        json.loads(body or b"null")
        content_type = "application/json"
    except ValueError:
        content_type = "application/octet-stream"
    answer = Client().invoke(name, body, run_async=run_async, content_type=content_type)
    if output == "json":
        emit_json(answer)
    elif run_async:
        click.echo(answer["id"])
    elif answer["status"] == "succeeded":
        click.echo(json.dumps(answer["result"], indent=2))
    if not run_async and answer["status"] != "succeeded":
        if output != "json":
            _print_failure(answer)
        sys.exit(1)


def _print_failure(inv: dict[str, Any]) -> None:
    error = inv.get("error") or {}
    click.echo(
        f"invocation {inv['id']} {inv['status']}: "
        f"{error.get('type', '')}: {error.get('message', '')}",
        err=True,
    )
    if error.get("traceback"):
        click.echo(error["traceback"].rstrip(), err=True)


@cli.command("invocation-show")
@click.argument("invocation_id")
@click.option("--tree", is_flag=True, help="the whole pipeline run it belongs to")
@output_option
@handle_errors
def invocation_show(invocation_id: str, tree: bool, output: str) -> None:
    """Status, result, error, output, duration and peak memory of one invocation."""
    if tree:
        steps = Client().invocation_tree(invocation_id)
        if output == "json":
            return emit_json(steps)
        for step in steps:
            mark = "*" if step["id"] == invocation_id else " "
            click.echo(
                f"{mark} {'  ' * step['depth']}{step['function']}  {step['status']}  "
                f"{ms(step['duration_ms'])}  {step['id']}"
            )
        return None
    inv = Client().get_invocation(invocation_id)
    if output == "json":
        return emit_json(inv)
    error = inv["error"] or {}
    fields(
        [
            ("id", inv["id"]),
            ("function", f"{inv['function']} (version {inv['version']})"),
            ("status", inv["status"]),
            ("mode", inv["mode"]),
            ("attempt", inv["attempt"]),
            ("created", when(inv["created_at"])),
            ("duration", ms(inv["duration_ms"])),
            ("cold start", _cold(inv)),
            (
                "peak memory",
                "-" if inv["peak_memory_kb"] is None else f"{inv['peak_memory_kb']} KiB",
            ),
            ("result", json.dumps(inv["result"]) if inv["status"] == "succeeded" else None),
            ("error", f"{error.get('type')}: {error.get('message')}" if error else None),
            ("traceback", error.get("traceback") or None),
            ("stdout", inv["stdout"] or None),
            ("stderr", inv["stderr"] or None),
        ]
    )


def _cold(inv: dict[str, Any]) -> str:
    if inv["cold_start"] is None:
        return "-"
    return f"yes (init {ms(inv['init_ms'])})" if inv["cold_start"] else "no"


@cli.command("invocation-list")
@click.argument("name", required=False)
@click.option("--limit", type=int, default=20, show_default=True)
@output_option
@handle_errors
def invocation_list(name: str | None, limit: int, output: str) -> None:
    """Recent invocations, newest first (of one function, or all)."""
    found = Client().list_invocations(name, limit)
    if output == "json":
        return emit_json(found)
    table(
        [
            (
                i["id"],
                i["function"],
                i["version"],
                i["status"],
                when(i["created_at"]),
                ms(i["duration_ms"]),
                _cold(i),
            )
            for i in found
        ],
        ["ID", "FUNCTION", "VERSION", "STATUS", "CREATED", "DURATION", "COLD START"],
    )


@cli.command()
@click.argument("name")
@click.option("--follow", "-f", is_flag=True, help="keep printing new output")
@output_option
@handle_errors
def logs(name: str, follow: bool, output: str) -> None:
    """Print the output of a function's invocations."""
    client = Client()
    cursor: float | None = None
    while True:
        page = client.logs(name, cursor)
        for line in page["lines"]:
            if output == "json":
                click.echo(json.dumps(line))
            else:
                click.echo(
                    f"{when(line['time'])} {line['invocation_id'][:8]} "
                    f"{line['stream']}: {line['text']}"
                )
        cursor = page["cursor"] if page["cursor"] is not None else cursor
        if not follow:
            return
        if cursor is None:
            cursor = time.time() - 1
        time.sleep(0.5)
