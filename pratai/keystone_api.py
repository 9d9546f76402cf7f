"""Keystone v3's identity API, as both sides of Pratai call it: the server validates tokens at
`tokens_url` (`pratai.auth.keystone`), a client gets one there with `password_auth_body`
(`pratai.credentials`). Neither side's modules are imported here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["password_auth_body", "tokens_url"]


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
    """Keystone's password authentication request of the `OS_*` variables, scoped to
    OS_PROJECT_NAME."""
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
