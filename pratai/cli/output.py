"""Printing for humans (tables, key: value) or machines (`-o json`)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import click


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    cells = [[str(c) for c in headers], *[["-" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            click.echo("  ".join("-" * w for w in widths))


def fields(pairs: Sequence[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        text = "-" if value is None else str(value)
        if "\n" in text.rstrip("\n"):
            click.echo(f"{key}:")
            for line in text.rstrip("\n").splitlines():
                click.echo(f"    {line}")
        else:
            click.echo(f"{key.ljust(width)}  {text.rstrip()}")


def describe_trigger(t: dict[str, Any]) -> str:
    if t["event"] == "webhook":
        return f"webhook ({t['type']}) {t['url']}"
    if t["event"] == "message":
        return f"message on {t['subscribe_to']}"
    if t["cron"]:
        return f"timer cron {t['cron']!r} ({t['timezone'] or 'UTC'})"
    return f"timer every {t['frequency_minutes']:g} min"
