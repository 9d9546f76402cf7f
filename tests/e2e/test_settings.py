"""Bad PRATAI_* values stop `pratai serve` at once, with one line saying what is allowed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import free_port

SECRET = "not-a-fernet-key-but-still-a-secret"

BAD = [
    # kind, variable, value, what the line says is allowed
    ("integer", "PRATAI_PORT", "abc", "an integer from 1 to 65535"),
    ("integer", "PRATAI_PORT", "80.9", "an integer from 1 to 65535"),
    ("integer", "PRATAI_PORT", "70000", "an integer from 1 to 65535"),
    ("integer", "PRATAI_MAX_PIDS", "-1", "an integer >= 1"),
    ("integer", "PRATAI_MAX_PAYLOAD_BYTES", "1e6", "an integer >= 1"),
    ("float", "PRATAI_IDLE_TIMEOUT", "nan", "a number of seconds >= 0"),
    ("float", "PRATAI_RETRY_BASE_S", "-1", "a number of seconds >= 0"),
    ("float", "PRATAI_IDLE_TIMEOUT", "soon", "a number of seconds >= 0"),
    ("enum", "PRATAI_AUTH", "ldap", "one of keys, keystone"),
    ("enum", "PRATAI_BROKER_URL", "redis://localhost", "one of memory, embedded"),
    ("url", "PRATAI_DATABASE_URL", "mysql://db/pratai", "sqlite:///<absolute path> or postgres"),
    ("url", "PRATAI_DATABASE_URL", "pratai.sqlite3", "sqlite:///<absolute path> or postgres"),
    ("url", "PRATAI_KEYSTONE_URL", "keystone:5000/v3", "an http:// or https:// URL"),
    ("path", "PRATAI_HOME", "/etc/passwd", "a writable directory"),
    ("path", "PRATAI_SANDBOX_DIR", "/etc/passwd/sandbox", "a writable directory"),
    (
        "path",
        "PRATAI_SANDBOX_PYTHON",
        "/nonexistent/python3",
        "an absolute path to an executable file under /usr",
    ),
    (
        "path",
        "PRATAI_SANDBOX_NODE",
        "/etc/passwd",
        "an absolute path to an executable file under /usr",
    ),
]


def serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`pratai serve` with a fresh home and a free port; it must end on its own, quickly."""
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PRATAI_")},
        "PRATAI_HOME": str(tmp_path / "home"),
        "PRATAI_PORT": str(free_port()),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "pratai", "serve"],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=30,  # a server that accepted the value would still be serving
    )


@pytest.mark.parametrize(
    ("kind", "name", "value", "allowed"), BAD, ids=[b[1] + "=" + b[2] for b in BAD]
)
def test_a_bad_value_stops_serve_with_one_line(
    tmp_path: Path, kind: str, name: str, value: str, allowed: str
) -> None:
    done = serve(tmp_path, **{name: value})
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.endswith("\n") and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"error: {name}={value!r}: expected {allowed}"), done.stderr
    assert done.stdout == ""
    if name != "PRATAI_HOME":
        assert not (tmp_path / "home").exists(), "nothing is created before the settings are read"


def test_keystone_auth_without_its_url_is_refused(tmp_path: Path) -> None:
    done = serve(tmp_path, PRATAI_AUTH="keystone")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1, done.stderr
    assert "PRATAI_AUTH='keystone' needs PRATAI_KEYSTONE_URL" in done.stderr


def test_every_bad_variable_is_named_and_secrets_are_not_repeated(tmp_path: Path) -> None:
    done = serve(
        tmp_path,
        PRATAI_PORT="80.9",
        PRATAI_SECRETS_KEY=SECRET,
        PRATAI_DATABASE_URL="mysql://pratai:hunter2@db/pratai",
    )
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert [line.split("=")[0] for line in lines] == [
        "error: PRATAI_PORT",
        "PRATAI_DATABASE_URL",
        "PRATAI_SECRETS_KEY",
    ], lines
    assert SECRET not in done.stderr and "hunter2" not in done.stderr
    assert (
        f"PRATAI_SECRETS_KEY=<hidden, {len(SECRET)} characters>: expected Fernet keys" in lines[2]
    )


def test_a_data_folder_that_cannot_be_made_stops_serve_with_one_line(tmp_path: Path) -> None:
    # For root /proc looks writable, so only making the folder tells (/proc refuses new files);
    # other users are refused when the variable is read.
    done = serve(tmp_path, PRATAI_HOME="/proc/pratai-home")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: PRATAI_HOME='/proc/pratai-home': "), done.stderr


def test_admin_key_checks_the_settings_as_serve_does(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pratai", "admin-key"],
        env={**os.environ, "PRATAI_HOME": str(tmp_path), "PRATAI_PORT": "80.9"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr == "error: PRATAI_PORT='80.9': expected an integer from 1 to 65535\n"
    assert done.stdout == ""
