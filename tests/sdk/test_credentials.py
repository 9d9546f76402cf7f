"""The order in which the CLI and the SDK find a server and a key (see `pratai.credentials`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pratai.credentials import find_credentials, login_file
from pratai.errors import ApiError


def _write(path: Path, url: str, key: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"url": url, "api_key": key}))
    return path


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A user with a home of their own, in a folder where `pratai serve` left its file."""
    _write(tmp_path / "data" / "credentials.json", "http://server", "pk_server.s")
    return {"HOME": str(tmp_path / "user"), "PRATAI_HOME": str(tmp_path / "data")}


def test_the_servers_file_is_used_when_nobody_logged_in(env: dict[str, str]) -> None:
    found = find_credentials(env)
    assert (found.url, found.api_key) == ("http://server", "pk_server.s")
    assert found.source.startswith(f"{env['PRATAI_HOME']}/credentials.json")


def test_a_login_wins_over_the_servers_file(env: dict[str, str]) -> None:
    path = _write(Path(env["HOME"]) / ".config/pratai/credentials.json", "http://in", "pk_me.s")
    assert login_file(env) == path
    found = find_credentials(env)
    assert (found.url, found.api_key) == ("http://in", "pk_me.s")
    assert str(path) in found.source and "pratai login" in found.source


def test_pratai_credentials_names_the_login_file(env: dict[str, str], tmp_path: Path) -> None:
    _write(Path(env["HOME"]) / ".config/pratai/credentials.json", "http://home", "pk_home.s")
    named = _write(tmp_path / "elsewhere.json", "http://named", "pk_named.s")
    env["PRATAI_CREDENTIALS"] = str(named)
    assert login_file(env) == named
    assert find_credentials(env).api_key == "pk_named.s"


def test_the_environment_wins_over_both_files(env: dict[str, str]) -> None:
    _write(Path(env["HOME"]) / ".config/pratai/credentials.json", "http://in", "pk_me.s")
    env |= {"PRATAI_URL": "http://env", "PRATAI_API_KEY": "pk_env.s"}
    found = find_credentials(env)
    assert (found.url, found.api_key, found.source) == (
        "http://env",
        "pk_env.s",
        "PRATAI_URL and PRATAI_API_KEY",
    )


def test_one_variable_alone_replaces_its_half_of_the_file(env: dict[str, str]) -> None:
    found = find_credentials({**env, "PRATAI_URL": "http://proxy"})
    assert (found.url, found.api_key) == ("http://proxy", "pk_server.s")
    assert "URL from PRATAI_URL" in found.source
    found = find_credentials({**env, "PRATAI_API_KEY": "pk_env.s"})
    assert (found.url, found.api_key) == ("http://server", "pk_env.s")
    assert "key from PRATAI_API_KEY" in found.source


def test_no_credentials_says_what_is_missing(tmp_path: Path) -> None:
    bare = {"HOME": str(tmp_path), "PRATAI_HOME": str(tmp_path / "none")}
    with pytest.raises(ApiError, match="set PRATAI_URL and PRATAI_API_KEY, run `pratai login"):
        find_credentials(bare)
    with pytest.raises(ApiError, match="set PRATAI_API_KEY"):
        find_credentials({**bare, "PRATAI_URL": "http://env"})


def test_a_broken_file_is_named(env: dict[str, str]) -> None:
    broken = Path(env["HOME"]) / ".config/pratai/credentials.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json")
    with pytest.raises(ApiError, match=f"cannot read credentials from {broken}"):
        find_credentials(env)
