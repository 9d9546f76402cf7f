"""Node token commands, run as a user would after `make run` (the server's admin key)."""

from __future__ import annotations

from tests.helpers import Server


def test_create_list_and_revoke_a_node_token(server: Server) -> None:
    created = server.cli("node-token-create", "rack-1")
    token = created.stdout.strip()
    token_id, _, secret = token.partition(".")
    assert token_id.startswith("nt_") and secret and created.stdout == f"{token}\n"
    # how to use it goes to stderr, without printing the token a second time
    assert "shown this once" in created.stderr and "PRATAI_NODE_TOKEN=" in created.stderr
    assert "pratai node" in created.stderr and secret not in created.stderr

    table = server.cli("node-token-list").stdout
    row = next(line for line in table.splitlines() if line.startswith(token_id))
    assert "rack-1" in row and row.rstrip().endswith("active")
    assert secret not in table
    listed = {t["id"]: t for t in server.cli_json("node-token-list")}
    assert set(listed[token_id]) == {"id", "name", "created_at", "revoked_at"}

    assert server.cli("node-token-revoke", token_id).stdout == f"revoked {token_id}\n"
    revoked = {t["id"]: t for t in server.cli_json("node-token-list")}[token_id]
    assert revoked["revoked_at"] is not None
    table = server.cli("node-token-list").stdout
    assert "revoked" in next(line for line in table.splitlines() if line.startswith(token_id))
    unknown = server.cli("node-token-revoke", "nt_0000000000000000", check=False)
    assert unknown.returncode == 1 and "not found" in unknown.stderr
