"""Commands of this machine rather than of a server's API: they import the server's modules
inside the command, so that the other commands never load them."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import click

from pratai.cli.group import Answer, command
from pratai.credentials import save_credentials
from pratai.errors import PrataiError

if TYPE_CHECKING:
    from pratai.settings import Settings


def load_settings() -> Settings:
    """This machine's settings (a bad PRATAI_* variable: `Group` ends the command, exit 2)."""
    from pratai.settings import Settings

    return Settings.from_env()


@command(output=False)
def serve() -> None:
    """Run api + node with the embedded defaults (settings from PRATAI_* variables)."""
    from pratai.server import serve as run

    run(load_settings())


@command(output=False)
def api() -> None:
    """Run the HTTP API of a cluster (PostgreSQL and NATS; any number behind a load balancer)."""
    from pratai.cluster.processes import serve_api

    _logging()
    serve_api(load_settings())


@command(output=False)
def scheduler() -> None:
    """Run a scheduler of a cluster: timers, event dispatch, connectors, storing what nodes ran."""
    from pratai.cluster.processes import run_scheduler

    _logging()
    run_scheduler(load_settings())


@command(output=False)
def node() -> None:
    """Run a node of a cluster: sandboxes, with only PRATAI_BROKER_URL and PRATAI_NODE_TOKEN."""
    from pratai.cluster.processes import run_node

    _logging()
    run_node(load_settings())


def _logging() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)


@command()
def doctor() -> Answer:
    """Report which sandbox isolation features are active on this machine, and its node's
    memory budget."""
    from pratai.drivers.podman import PodmanDriver
    from pratai.drivers.process import ProcessDriver

    settings = load_settings()
    features = ProcessDriver(settings).features()
    features.update(PodmanDriver(settings).probe())  # container image functions
    features["memory_budget_mb"] = settings.node_memory_mb  # in use: GET /v1/node's "memory"
    # per shape, as configured (this driver starts none; in use: GET /v1/node's "driver")
    features["spare_sandboxes"] = settings.spare_sandboxes
    shown = [(k, ", ".join(v) if isinstance(v, list) else v) for k, v in features.items()]
    return Answer.pairs(features, shown)


@command("admin-key", output=False)
@click.option("--name", default="admin (pratai admin-key)", show_default=True, help="a note")
@click.option(
    "--save",
    is_flag=True,
    help="also write it to $PRATAI_HOME/credentials.json, as the first start does",
)
def admin_key(name: str, save: bool) -> None:
    """Mint an admin key of the default project by writing to the store, not through the API.

    The way back in when no admin key is left: run it on the server's machine, as the user who
    runs `pratai serve`, with the same PRATAI_HOME or PRATAI_DATABASE_URL. The key is printed
    once on stdout and stored only hashed; it is saved nowhere else unless --save."""
    from pratai.admin_key import mint_admin_key

    settings = load_settings()
    try:
        token = asyncio.run(mint_admin_key(settings, name))
    except PrataiError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
    click.echo(token)
    if save:
        save_credentials(settings.credentials_file, settings.url, token)
        click.echo(f"admin key of project default saved to {settings.credentials_file}", err=True)
    else:
        click.echo(
            "admin key of project default, shown once and saved nowhere (only its hash is"
            f" stored): `pratai login --url {settings.url} --key KEY` to use it",
            err=True,
        )


COMMANDS = (serve, api, scheduler, node, doctor, admin_key)
