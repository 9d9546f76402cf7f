"""Node token commands of the `pratai` CLI: the credentials `pratai node` processes present."""

from __future__ import annotations

import click

from pratai.api_client import ApiClient
from pratai.cli.group import Answer, command
from pratai.cli.output import when


@command("node-token-create")
@click.argument("name")
def node_token_create(name: str) -> Answer:
    """Create a token for a machine to run `pratai node` with (admins of the default project: a
    node receives every project's work and secrets); the token is printed once."""
    created = ApiClient().create_node_token(name)
    notice = (
        f"node token {created['id']} ({name}) is shown this once and stored only hashed; on the"
        " machine, start a node with it: PRATAI_NODE_TOKEN=<the token> pratai node"
    )
    return Answer(created, lambda: click.echo(created["token"]), notice)


@command("node-token-list")
def node_token_list() -> Answer:
    """Node tokens, oldest first (never their secrets)."""
    return Answer.rows(
        ApiClient().list_node_tokens(),
        ["ID", "NAME", "CREATED", "STATE"],
        lambda t: (
            t["id"],
            t["name"],
            when(t["created_at"]),
            f"revoked {when(t['revoked_at'])}" if t["revoked_at"] else "active",
        ),
    )


@command("node-token-revoke")
@click.argument("token_id")
def node_token_revoke(token_id: str) -> Answer:
    """Revoke a node token: nodes presenting it are refused work."""
    ApiClient().revoke_node_token(token_id)
    return Answer.line({"revoked": token_id}, f"revoked {token_id}")


COMMANDS = (node_token_create, node_token_list, node_token_revoke)
