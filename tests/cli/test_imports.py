"""The CLI and the SDK are clients: importing them loads none of the server's modules (`serve`,
`doctor` and `admin-key` import what they need inside the command)."""

from __future__ import annotations

import subprocess
import sys

import pytest

SERVER = (
    "pratai.auth",
    "pratai.api",
    "pratai.core",
    "pratai.store",
    "pratai.server",
    "pratai.node",
    "pratai.drivers",
    "fastapi",
    "sqlalchemy",
)

PROGRAM = """
import sys
import {module}
server = {server!r}
print(sorted(m for m in sys.modules if m in server or m.startswith(tuple(s + "." for s in server))))
"""


@pytest.mark.parametrize("module", ["pratai.cli.main", "pratai.sdk"])
def test_a_client_loads_no_server_module(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(module=module, server=SERVER)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == "[]\n", f"importing {module} loaded {done.stdout.strip()}"
