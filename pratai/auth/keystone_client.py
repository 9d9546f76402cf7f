"""The CLI side of Keystone: a project-scoped token from the usual `OS_*` variables.

    OS_AUTH_URL           http://keystone:5000 or http://keystone:5000/v3 (both work)
    OS_USERNAME           the Keystone user
    OS_PASSWORD           its password (never printed, logged or put in an error message)
    OS_PROJECT_NAME       the project to scope the token to: the Pratai project of that name
    OS_USER_DOMAIN_NAME   default "Default" (or OS_USER_DOMAIN_ID)
    OS_PROJECT_DOMAIN_NAME  default "Default" (or OS_PROJECT_DOMAIN_ID)

`keystone_token(os.environ)` returns None unless the four required variables are set, so a caller
can fall back to built-in API keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from pratai.client import ApiError

__all__ = ["REQUIRED", "keystone_token", "password_auth_body", "tokens_url"]

REQUIRED = ("OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME")


def tokens_url(auth_url: str) -> str:
    """`{auth_url}/v3/auth/tokens`, whether or not auth_url already ends with /v3."""
    base = auth_url.rstrip("/")
    if base.endswith("/v3"):
        base = base[: -len("/v3")]
    return f"{base}/v3/auth/tokens"


def _domain(environ: Mapping[str, str], prefix: str) -> dict[str, str]:
    domain_id = environ.get(f"{prefix}_DOMAIN_ID")
    if domain_id:
        return {"id": domain_id}
    return {"name": environ.get(f"{prefix}_DOMAIN_NAME") or "Default"}


def password_auth_body(environ: Mapping[str, str]) -> dict[str, Any]:
    """Keystone's password authentication request, scoped to OS_PROJECT_NAME."""
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": environ["OS_USERNAME"],
                        "domain": _domain(environ, "OS_USER"),
                        "password": environ["OS_PASSWORD"],
                    }
                },
            },
            "scope": {
                "project": {
                    "name": environ["OS_PROJECT_NAME"],
                    "domain": _domain(environ, "OS_PROJECT"),
                }
            },
        }
    }


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
    """A Keystone token scoped to OS_PROJECT_NAME, or None when the OS_* variables are not set.

    Raises `ApiError(0, message)` when Keystone cannot be reached or refuses; the message names
    the URL, user and project, never the password.
    """
    if not all(environ.get(name) for name in REQUIRED):
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
