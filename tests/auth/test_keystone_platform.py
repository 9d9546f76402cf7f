"""A platform configured for Keystone, driven by the CLI with the OS_* variables."""

from __future__ import annotations

import subprocess
import sys

from tests.auth.test_keystone import PASSWORD, FakeKeystone
from tests.helpers import start_server


def test_cli_with_os_variables_against_a_keystone_platform(tmp_path) -> None:
    keystone = FakeKeystone()
    keystone.start()
    server = start_server(tmp_path, PRATAI_AUTH="keystone", PRATAI_KEYSTONE_URL=keystone.url)
    try:
        env = {k: v for k, v in server.env.items() if not k.startswith("PRATAI_")}
        env.update(
            PRATAI_URL=server.url,
            OS_AUTH_URL=keystone.url + "/v3",
            OS_USERNAME="alice",
            OS_PASSWORD=PASSWORD,
            OS_PROJECT_NAME="demo",
            OS_USER_DOMAIN_NAME="Default",
        )

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "pratai", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )

        who = run("whoami")
        assert who.returncode == 0, who.stderr
        assert "developer of project demo" in who.stdout  # member beats reader
        assert run("function-list").returncode == 0
        env["OS_PASSWORD"] = "wrong"
        refused = run("function-list")
        assert refused.returncode != 0 and "wrong" not in refused.stderr
        # the built-in admin key still works beside Keystone
        assert "admin of project default" in server.cli("whoami").stdout
    finally:
        server.stop()
        keystone.stop()
