"""Pluggable authentication: who is calling, from the bearer token of a request.

Every backend answers one question, `await authenticate(token) -> Principal`, and raises
`pratai.errors.Unauthorized` for a token it does not accept (or `Unavailable` when it cannot tell
right now). Backends:

- built-in API keys (`pk_<id>.<secret>`): `pratai.core.tenants.Tenants`;
- OpenStack Keystone v3 tokens: `pratai.auth.keystone.KeystoneAuthenticator`, which maps the
  token's Keystone project to the Pratai project of the same name and its Keystone roles to a
  Pratai role.

A platform configured for Keystone still needs its built-in keys (the bootstrap admin key that
`pratai serve` writes, keys created for CI, webhooks' callers ...), so the two are combined with
`ChainAuthenticator(tenants, keystone)`: tokens that look like built-in keys go to the first,
everything else to the second.
"""

from __future__ import annotations

from typing import Protocol

from pratai.core.tenants import Principal

__all__ = ["BUILTIN_KEY_PREFIX", "Authenticator", "ChainAuthenticator"]

BUILTIN_KEY_PREFIX = "pk_"


class Authenticator(Protocol):
    async def authenticate(self, token: str) -> Principal:
        """The principal of a bearer token; raises Unauthorized when the token is not valid."""
        ...


class ChainAuthenticator:
    """Routes built-in Pratai keys to `first` and every other token to `second`.

    A token is a built-in key when it starts with "pk_" (the form `Tenants.create_key` issues).
    The choice is made by shape alone, never by trying one backend and then the other: a token is
    sent to exactly one backend, so Keystone tokens never reach the key store and built-in keys
    are never sent to Keystone, and an error from a backend (Unauthorized, or Unavailable when
    Keystone is down) is the answer, not a reason to try the other.
    """

    def __init__(self, first: Authenticator, second: Authenticator) -> None:
        self.first = first
        self.second = second

    async def authenticate(self, token: str) -> Principal:
        if token.startswith(BUILTIN_KEY_PREFIX):
            return await self.first.authenticate(token)
        return await self.second.authenticate(token)
