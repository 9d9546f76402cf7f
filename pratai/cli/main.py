"""Entry point of the `pratai` command: the root group and the commands it holds."""

from __future__ import annotations

import click

from pratai.cli import events, functions, images, invocations, jobs, machine, nodes, tenancy
from pratai.cli.group import Group


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pratai")
def cli() -> None:
    """Pratai: run functions when events arrive, isolated, on your own machines."""


for module in (machine, functions, invocations, images, events, jobs, tenancy, nodes):
    for each in module.COMMANDS:
        cli.add_command(each)


def main() -> None:
    cli()
