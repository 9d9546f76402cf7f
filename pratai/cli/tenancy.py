"""Project, user, key, login, audit and secret commands of the `pratai` CLI."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from pratai.api_client import ApiClient
from pratai.cli.group import Answer, command
from pratai.cli.output import when
from pratai.credentials import find_credentials, login_file, save_credentials

ROLES = click.Choice(["admin", "developer", "invoker", "viewer"])


@command(output=False)
@click.option("--url", required=True, help="the platform, e.g. http://127.0.0.1:8080")
@click.option("--key", required=True, help="an API key")
def login(url: str, key: str) -> Answer:
    """Check a key and write it to the login file the CLI and SDK read (PRATAI_CREDENTIALS, else
    ~/.config/pratai/credentials.json); it wins over $PRATAI_HOME/credentials.json."""
    who = ApiClient(url, key).whoami()
    path = login_file()
    save_credentials(path, url, key)
    overriding = " and ".join(n for n in ("PRATAI_URL", "PRATAI_API_KEY") if os.environ.get(n))
    logged_in = f"logged in to {url} as a {who['role']} of project {who['project']} ({path})"
    warning = (
        f"warning: {overriding} set in the environment win over this login; unset them to use it"
    )
    return Answer(who, lambda: click.echo(logged_in), warning if overriding else "")


@command()
def whoami() -> Answer:
    """The project and role of the key in use, and where the CLI found that key."""
    found = find_credentials()
    who = ApiClient(found.url, found.api_key).whoami()
    return Answer.line(
        {**who, "url": found.url, "credentials_from": found.source},
        f"key {who['key_id']}: {who['role']} of project {who['project']} at {found.url}"
        f" (credentials from {found.source})",
    )


@command("project-create")
@click.argument("name")
def project_create(name: str) -> Answer:
    """Create a project (admins of the default project)."""
    created = ApiClient().create_project(name)
    return Answer.line(created, f"created project {created['name']}")


@command("project-list")
def project_list() -> Answer:
    """Projects you can see."""
    return Answer.rows(
        ApiClient().list_projects(),
        ["NAME", "ID", "CREATED"],
        lambda p: (p["name"], p["id"], when(p["created_at"])),
    )


@command("user-create")
@click.argument("name")
@click.option("--project", required=True)
@click.option("--role", type=ROLES, default="developer", show_default=True)
def user_create(name: str, project: str, role: str) -> Answer:
    """Create a user in a project (admins); prints the user's first key once."""
    created = ApiClient().create_user(name, project, role)
    return Answer.line(
        created, f"created user {name} ({role} of {project})\nkey (shown once): {created['token']}"
    )


@command("user-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="read the password from stdin")
def user_password(name: str, password_stdin: bool) -> Answer:
    """Set the password NAME signs in to the web console (/ui) with: your own, or (admins) a
    user's with a key in your project."""
    if password_stdin:
        password = sys.stdin.read().rstrip("\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    ApiClient().set_password(name, password)
    return Answer.line({"user": name, "password": "set"}, f"password set for {name}")


@command("key-create")
@click.option("--project", help="default: the project of the key in use")
@click.option("--role", type=ROLES, required=True)
@click.option("--expires", help="e.g. 30d, 12h, 15m")
@click.option("--name", default="", help="a note on what the key is for")
@click.option("--rate-limit", help="the key's own limit over every endpoint, e.g. 100/minute")
def key_create(
    project: str | None, role: str, expires: str | None, name: str, rate_limit: str | None
) -> Answer:
    """Create an API key; the secret is printed once and stored only hashed."""
    created = ApiClient().create_key(
        project=project, role=role, expires=expires, name=name, rate_limit=rate_limit
    )
    return Answer.line(created, created["token"])


@command("key-list")
@click.option("--project")
def key_list(project: str | None) -> Answer:
    """Keys of a project (never their secrets)."""
    return Answer.rows(
        ApiClient().list_keys(project),
        ["ID", "ROLE", "NAME", "CREATED", "EXPIRES", "STATE"],
        lambda k: (
            k["id"],
            k["role"],
            k["name"],
            when(k["created_at"]),
            when(k["expires_at"]),
            "revoked" if k["revoked_at"] else "active",
        ),
    )


@command("key-revoke")
@click.argument("key_id")
def key_revoke(key_id: str) -> Answer:
    """Revoke a key at once."""
    ApiClient().revoke_key(key_id)
    return Answer.line({"revoked": key_id}, f"revoked {key_id}")


@command("audit-list")
@click.option("--limit", type=int, default=50, show_default=True)
def audit_list(limit: int) -> Answer:
    """Who created, changed, deleted or invoked what, newest first."""
    return Answer.rows(
        ApiClient().audit(limit),
        ["TIME", "KEY", "ACTION", "TARGET", "STATUS"],
        lambda e: (when(e["at"]), e["key_id"], e["action"], e["target"], e["status"]),
    )


@command("secret-create")
@click.argument("name")
@click.option("--value", help="the secret (prefer --from-file: shell history keeps --value)")
@click.option("--from-file", type=click.Path(exists=True, dir_okay=False), help="read the value")
def secret_create(name: str, value: str | None, from_file: str | None) -> Answer:
    """Store a secret, encrypted; it is never shown again."""
    if (value is None) == (from_file is None):
        raise click.UsageError("give exactly one of --value or --from-file")
    text = value if value is not None else Path(str(from_file)).read_text().rstrip("\n")
    created = ApiClient().create_secret(name, text)
    return Answer.line(created, f"stored secret {name}")


@command("secret-list")
def secret_list() -> Answer:
    """Names of the project's secrets (never their values)."""
    return Answer.rows(
        ApiClient().list_secrets(),
        ["NAME", "CREATED"],
        lambda s: (s["name"], when(s["created_at"])),
    )


@command("secret-delete")
@click.argument("name")
def secret_delete(name: str) -> Answer:
    """Delete a secret; functions using it no longer receive it."""
    ApiClient().delete_secret(name)
    return Answer.line({"deleted": name}, f"deleted secret {name}")


COMMANDS = (
    login,
    whoami,
    project_create,
    project_list,
    user_create,
    user_password,
    key_create,
    key_list,
    key_revoke,
    audit_list,
    secret_create,
    secret_list,
    secret_delete,
)
