"""Project, user, key, login and audit commands of the `pratai` CLI."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import click

from pratai.cli.main import cli, handle_errors, load_settings, output_option
from pratai.cli.output import emit_json, table, when
from pratai.client import Client, find_credentials, login_file, save_credentials
from pratai.errors import PrataiError

ROLES = click.Choice(["admin", "developer", "invoker", "viewer"])


@cli.command()
@click.option("--url", required=True, help="the platform, e.g. http://127.0.0.1:8080")
@click.option("--key", required=True, help="an API key")
@handle_errors
def login(url: str, key: str) -> None:
    """Check a key and write it to the login file the CLI and SDK read (PRATAI_CREDENTIALS, else
    ~/.config/pratai/credentials.json); it wins over $PRATAI_HOME/credentials.json."""
    who = Client(url, key).whoami()
    path = login_file()
    save_credentials(path, url, key)
    click.echo(f"logged in to {url} as a {who['role']} of project {who['project']} ({path})")
    overriding = [name for name in ("PRATAI_URL", "PRATAI_API_KEY") if os.environ.get(name)]
    if overriding:
        click.echo(
            f"warning: {' and '.join(overriding)} set in the environment win over this login;"
            " unset them to use it",
            err=True,
        )


@cli.command()
@output_option
@handle_errors
def whoami(output: str) -> None:
    """The project and role of the key in use, and where the CLI found that key."""
    found = find_credentials()
    who = Client(found.url, found.api_key).whoami()
    if output == "json":
        return emit_json({**who, "url": found.url, "credentials_from": found.source})
    click.echo(
        f"key {who['key_id']}: {who['role']} of project {who['project']} at {found.url}"
        f" (credentials from {found.source})"
    )


@cli.command("project-create")
@click.argument("name")
@output_option
@handle_errors
def project_create(name: str, output: str) -> None:
    """Create a project (admins of the default project)."""
    created = Client().create_project(name)
    emit_json(created) if output == "json" else click.echo(f"created project {created['name']}")


@cli.command("project-list")
@output_option
@handle_errors
def project_list(output: str) -> None:
    """Projects you can see."""
    found = Client().list_projects()
    if output == "json":
        return emit_json(found)
    table([(p["name"], p["id"], when(p["created_at"])) for p in found], ["NAME", "ID", "CREATED"])


@cli.command("user-create")
@click.argument("name")
@click.option("--project", required=True)
@click.option("--role", type=ROLES, default="developer", show_default=True)
@output_option
@handle_errors
def user_create(name: str, project: str, role: str, output: str) -> None:
    """Create a user in a project (admins); prints the user's first key once."""
    created = Client().create_user(name, project, role)
    if output == "json":
        return emit_json(created)
    click.echo(f"created user {name} ({role} of {project})")
    click.echo(f"key (shown once): {created['token']}")


@cli.command("key-create")
@click.option("--project", help="default: the project of the key in use")
@click.option("--role", type=ROLES, required=True)
@click.option("--expires", help="e.g. 30d, 12h, 15m")
@click.option("--name", default="", help="a note on what the key is for")
@click.option("--rate-limit", help="the key's own limit over every endpoint, e.g. 100/minute")
@output_option
@handle_errors
def key_create(
    project: str | None,
    role: str,
    expires: str | None,
    name: str,
    rate_limit: str | None,
    output: str,
) -> None:
    """Create an API key; the secret is printed once and stored only hashed."""
    created = Client().create_key(
        project=project, role=role, expires=expires, name=name, rate_limit=rate_limit
    )
    if output == "json":
        return emit_json(created)
    click.echo(created["token"])


@cli.command("key-list")
@click.option("--project")
@output_option
@handle_errors
def key_list(project: str | None, output: str) -> None:
    """Keys of a project (never their secrets)."""
    found = Client().list_keys(project)
    if output == "json":
        return emit_json(found)
    table(
        [
            (
                k["id"],
                k["role"],
                k["name"],
                when(k["created_at"]),
                when(k["expires_at"]),
                "revoked" if k["revoked_at"] else "active",
            )
            for k in found
        ],
        ["ID", "ROLE", "NAME", "CREATED", "EXPIRES", "STATE"],
    )


@cli.command("key-revoke")
@click.argument("key_id")
@output_option
@handle_errors
def key_revoke(key_id: str, output: str) -> None:
    """Revoke a key at once."""
    Client().revoke_key(key_id)
    emit_json({"revoked": key_id}) if output == "json" else click.echo(f"revoked {key_id}")


@cli.command("admin-key")
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


@cli.command("audit-list")
@click.option("--limit", type=int, default=50, show_default=True)
@output_option
@handle_errors
def audit_list(limit: int, output: str) -> None:
    """Who created, changed, deleted or invoked what, newest first."""
    found = Client().audit(limit)
    if output == "json":
        return emit_json(found)
    table(
        [(when(e["at"]), e["key_id"], e["action"], e["target"], e["status"]) for e in found],
        ["TIME", "KEY", "ACTION", "TARGET", "STATUS"],
    )


@cli.command("secret-create")
@click.argument("name")
@click.option("--value", help="the secret (prefer --from-file: shell history keeps --value)")
@click.option("--from-file", type=click.Path(exists=True, dir_okay=False), help="read the value")
@output_option
@handle_errors
def secret_create(name: str, value: str | None, from_file: str | None, output: str) -> None:
    """Store a secret, encrypted; it is never shown again."""
    if (value is None) == (from_file is None):
        raise click.UsageError("give exactly one of --value or --from-file")
    text = value if value is not None else Path(str(from_file)).read_text().rstrip("\n")
    created = Client().create_secret(name, text)
    emit_json(created) if output == "json" else click.echo(f"stored secret {name}")


@cli.command("secret-list")
@output_option
@handle_errors
def secret_list(output: str) -> None:
    """Names of the project's secrets (never their values)."""
    found = Client().list_secrets()
    if output == "json":
        return emit_json(found)
    table([(s["name"], when(s["created_at"])) for s in found], ["NAME", "CREATED"])


@cli.command("secret-delete")
@click.argument("name")
@output_option
@handle_errors
def secret_delete(name: str, output: str) -> None:
    """Delete a secret; functions using it no longer receive it."""
    Client().delete_secret(name)
    emit_json({"deleted": name}) if output == "json" else click.echo(f"deleted secret {name}")
