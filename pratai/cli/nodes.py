"""Node commands of the `pratai` CLI: the nodes of a cluster, and the tokens they present."""

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


@command("node-list")
def node_list() -> Answer:
    """The nodes and their state, memory, calls running, load, warm instances and last
    heartbeat (admins of the default project)."""
    return Answer.rows(
        ApiClient().list_nodes(),
        ["NAME", "STATE", "MEMORY", "BUSY", "LOAD", "WARM", "HEARTBEAT"],
        lambda n: (
            n["name"],
            n["state"],
            f"{n['memory']['used_mb']}/{n['memory']['budget_mb']} MB",
            f"{n['busy']}/{n['slots']}" if n["slots"] else str(n["busy"]),
            f"{n['load']:.2f}",
            str(len(n["warm"])),
            f"{n['last_heartbeat_s']:.1f} s ago",
        ),
    )


@command("node-drain")
@click.argument("name")
@click.option("--undo", is_flag=True, help="take new work again")
def node_drain(name: str, undo: bool) -> Answer:
    """Stop new work going to a node while it finishes what it has (--undo: resume)."""
    node = ApiClient().drain_node(name, drain=not undo)
    return Answer.line(node, f"node {name} is {node['state']}")


COMMANDS = (
    node_token_create,
    node_token_list,
    node_token_revoke,
    node_list,
    node_drain,
)
