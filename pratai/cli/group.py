"""What every `pratai` command shares, done once: its `-o table|json`, its errors, its printing.

A command returns what it found or did: an `Answer` (the API's data, and how a person reads it),
a `Stream` of items printed as they arrive, or None when it printed on its own. `Group` prints
the answer in the format asked for, and turns an `ApiError` anywhere into `error: MESSAGE` (and
its details) on stderr with exit code 1, a `SettingsError` into one line with exit code 2.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import click

from pratai.cli.output import emit_json, fields, table
from pratai.errors import ApiError, SettingsError

__all__ = ["Answer", "Group", "Stream", "command", "output_format"]

_OUTPUT = "pratai.output"  # the key of the chosen format in the context's meta


@dataclass(frozen=True)
class Answer:
    """`data` is printed as JSON with `-o json`, else `show()` prints it for a person; then
    `notice` (a warning, or why the command failed) on stderr in either format, and the command
    ends with `exit_code`."""

    data: Any
    show: Callable[[], None]
    notice: str = ""
    exit_code: int = 0

    @classmethod
    def line(cls, data: Any, text: str) -> Answer:
        return cls(data, lambda: click.echo(text))

    @classmethod
    def deleted(cls, name: str) -> Answer:
        return cls.line({"deleted": name}, f"deleted {name}")

    @classmethod
    def rows(
        cls, data: list[Any], headers: Sequence[str], row: Callable[[Any], Sequence[Any]]
    ) -> Answer:
        """A table of one `row(item)` per item of `data`."""
        return cls(data, lambda: table([row(item) for item in data], headers))

    @classmethod
    def pairs(cls, data: Any, pairs: Sequence[tuple[str, Any]]) -> Answer:
        """`key  value` lines."""
        return cls(data, lambda: fields(pairs))


@dataclass(frozen=True)
class Stream:
    """Items printed as they arrive: one JSON document a line with `-o json`, else `show(item)`."""

    items: Iterable[Any]
    show: Callable[[Any], None]


Result = Answer | Stream | None


def _remember_output(ctx: click.Context, param: click.Parameter, value: str) -> None:
    ctx.meta[_OUTPUT] = value


def output_format() -> str:
    """The format the running command was asked for: "table" (the default) or "json"."""
    ctx = click.get_current_context(silent=True)
    return str(ctx.meta.get(_OUTPUT, "table")) if ctx is not None else "table"


def command(
    name: str | None = None, *, output: bool = True
) -> Callable[[Callable[..., Result]], click.Command]:
    """A command for `Group`; with `output`, it takes `-o/--output table|json`."""

    def make(func: Callable[..., Result]) -> click.Command:
        made = click.command(name)(func)
        if output:
            made.params.append(
                click.Option(
                    ["-o", "--output"],
                    type=click.Choice(["table", "json"]),
                    default="table",
                    show_default=True,
                    help="json prints the API's answer for scripts",
                    expose_value=False,
                    callback=_remember_output,
                )
            )
        return made

    return make


def _print(result: Result, output: str) -> None:
    if isinstance(result, Stream):
        for item in result.items:
            click.echo(json.dumps(item)) if output == "json" else result.show(item)
    elif result is not None:
        emit_json(result.data) if output == "json" else result.show()
        if result.notice:
            click.echo(result.notice, err=True)
        if result.exit_code:
            raise click.exceptions.Exit(result.exit_code)


class Group(click.Group):
    """A group whose commands (made with `command`) return what to print."""

    def invoke(self, ctx: click.Context) -> None:
        try:
            _print(super().invoke(ctx), ctx.meta.get(_OUTPUT, "table"))
        except ApiError as exc:
            click.echo(f"error: {exc.message}", err=True)
            if exc.details:
                click.echo(json.dumps(exc.details, indent=2), err=True)
            ctx.exit(1)
        except SettingsError as exc:
            click.echo(f"error: {exc.message}", err=True)
            ctx.exit(2)
