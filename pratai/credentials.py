"""Where the CLI and the SDK find the server and the API key, first match wins:

1. `PRATAI_URL` and `PRATAI_API_KEY`, both set in the environment;
2. `PRATAI_URL` and a Keystone token got with `OS_AUTH_URL`, `OS_USERNAME`, `OS_PASSWORD`,
   `OS_PROJECT_NAME` (a platform run with `PRATAI_AUTH=keystone`);
3. the login file, written by `pratai login`: the file named by `PRATAI_CREDENTIALS`, else
   `~/.config/pratai/credentials.json`;
4. the server's own file, written by `pratai serve` on its first start:
   `$PRATAI_HOME/credentials.json` (`PRATAI_HOME` defaults to `./.pratai`).

So an explicit login wins over the admin key a local server saved, and the environment wins over
both. `PRATAI_URL` or `PRATAI_API_KEY` set alone replaces that half of the file's pair (e.g. the
same server reached at another address). `pratai whoami` says which source is in use.

The Keystone variables (OS_USER_DOMAIN_NAME and OS_PROJECT_DOMAIN_NAME default to "Default", or
give OS_USER_DOMAIN_ID, OS_PROJECT_DOMAIN_ID); the password is never printed, logged or put in an
error message.

A client's module: the server imports only `save_credentials`, to write its own file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from pratai.errors import ApiError
from pratai.keystone_api import password_auth_body, tokens_url

__all__ = [
    "KEYSTONE_VARIABLES",
    "Credentials",
    "find_credentials",
    "keystone_token",
    "login_file",
    "save_credentials",
    "server_file",
]

KEYSTONE_VARIABLES = ("OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME")


@dataclass(frozen=True)
class Credentials:
    """A server, a key for it, and where they were found (for `pratai whoami`)."""

    url: str
    api_key: str
    source: str


def login_file(environ: Mapping[str, str] | None = None) -> Path:
    """The file `pratai login` writes and the lookup reads: PRATAI_CREDENTIALS, else
    ~/.config/pratai/credentials.json."""
    env = os.environ if environ is None else environ
    named = env.get("PRATAI_CREDENTIALS")
    if named:
        return Path(named).expanduser().absolute()
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".config" / "pratai" / "credentials.json"


def server_file(environ: Mapping[str, str] | None = None) -> Path:
    """The file `pratai serve` writes its first admin key to: $PRATAI_HOME/credentials.json."""
    env = os.environ if environ is None else environ
    return Path(env.get("PRATAI_HOME") or ".pratai").expanduser().absolute() / "credentials.json"


def save_credentials(path: Path, url: str, api_key: str) -> None:
    """Writes a credentials file (readable by its owner only), whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"url": url, "api_key": api_key}, out)
    os.replace(tmp, path)


def _read(path: Path) -> tuple[str, str]:
    try:
        data = json.loads(path.read_text())
        return str(data["url"]), str(data["api_key"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ApiError(
            0, f"cannot read credentials from {path}: {exc!r}; run `pratai login` again"
        ) from None


def find_credentials(environ: Mapping[str, str] | None = None) -> Credentials:
    """The first source in the order of this module's docstring."""
    env = os.environ if environ is None else environ
    url, key = env.get("PRATAI_URL"), env.get("PRATAI_API_KEY")
    if url and key:
        return Credentials(url, key, "PRATAI_URL and PRATAI_API_KEY")
    if url and env.get("OS_AUTH_URL"):  # a platform configured for Keystone
        token = keystone_token(env)
        if token:
            user = env.get("OS_USERNAME", "")
            return Credentials(url, token, f"a Keystone token of {user} from {env['OS_AUTH_URL']}")
    files = [
        (login_file(env), "the login file of `pratai login`"),
        (server_file(env), "the data folder of `pratai serve`"),
    ]
    for path, kind in files:
        if path.is_file():
            file_url, file_key = _read(path)
            source = f"{path}, {kind}"
            if url:
                source += "; URL from PRATAI_URL"
            if key:
                source += "; key from PRATAI_API_KEY"
            return Credentials(url or file_url, key or file_key, source)
    missing = "PRATAI_API_KEY" if url else "PRATAI_URL" if key else "PRATAI_URL and PRATAI_API_KEY"
    raise ApiError(
        0,
        f"no credentials: set {missing}, run `pratai login --url URL --key KEY`, or start the"
        " platform here with `make run` (it writes .pratai/credentials.json)",
    )


def _keystone_message(response: httpx.Response) -> str:
    """Keystone's own explanation: {"error": {"code", "title", "message"}}, else the reason."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message")
        if isinstance(message, str) and message:
            return message
    return response.reason_phrase or "no explanation"


def keystone_token(environ: Mapping[str, str], *, timeout: float = 30.0) -> str | None:
    """A Keystone token scoped to OS_PROJECT_NAME, or None when the OS_* variables are not set
    (so that a caller can fall back to built-in API keys).

    Raises `ApiError(0, message)` when Keystone cannot be reached or refuses; the message names
    the URL, user and project, never the password.
    """
    if not all(environ.get(name) for name in KEYSTONE_VARIABLES):
        return None
    url = tokens_url(environ["OS_AUTH_URL"])
    user, project = environ["OS_USERNAME"], environ["OS_PROJECT_NAME"]
    password = environ["OS_PASSWORD"]

    def scrub(text: str) -> str:
        return text.replace(password, "***")

    try:
        response = httpx.post(url, json=password_auth_body(environ), timeout=timeout)
    except httpx.HTTPError as exc:
        raise ApiError(
            0, scrub(f"cannot reach Keystone at {url}: {type(exc).__name__}: {exc}")
        ) from None
    if response.status_code not in (200, 201):
        raise ApiError(
            0,
            scrub(
                f"Keystone at {url} refused user {user!r} in project {project!r}: "
                f"HTTP {response.status_code}: {_keystone_message(response)} "
                "(check OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME and the domain variables)"
            ),
        )
    token: str | None = response.headers.get("X-Subject-Token")
    if not token:
        raise ApiError(0, f"Keystone at {url} answered without an X-Subject-Token header")
    return token
