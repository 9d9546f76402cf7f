"""Secrets: encrypted at rest, injected into sandboxes as environment variables, never shown.

Values are encrypted with Fernet (AES-128-CBC + HMAC-SHA256). The key comes from
PRATAI_SECRETS_KEY, or is generated on first start into $PRATAI_HOME/secrets.key (mode 0600).
Rotation: set PRATAI_SECRETS_KEY="NEW,OLD" (comma-separated, newest first) and restart: every
secret is re-encrypted with NEW at start, after which OLD can be dropped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from pratai.core.models import Function, Project, now
from pratai.core.ports import SecretStore
from pratai.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge

SECRET_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$"
_NAME = re.compile(SECRET_NAME_PATTERN)
ENV_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"  # a variable a secret is bound to
_ENV = re.compile(ENV_PATTERN)
MAX_SECRET_BYTES = 64 * 1024
MASK = "***"


def load_keys(configured: str, key_file: Path) -> MultiFernet:
    """The configured keys (newest first), else the generated key file."""
    if configured.strip():
        try:
            return MultiFernet([Fernet(k.strip()) for k in configured.split(",") if k.strip()])
        except ValueError:
            raise InvalidInput("PRATAI_SECRETS_KEY must be Fernet keys, comma-separated") from None
    if not key_file.exists():
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(Fernet.generate_key())
    return MultiFernet([Fernet(key_file.read_bytes().strip())])


FILE = "file:"  # a binding key with this prefix is a file in /run/secrets, not a variable


def parse_bindings(specs: list[str], files: list[str] | None = None) -> dict[str, str]:
    """`--secret DB_PASSWORD`, `--secret API_TOKEN=token_name` -> {env var: secret name};
    `--secret-file tls_key` -> {"file:tls_key": "tls_key"} (/run/secrets/tls_key)."""
    bindings: dict[str, str] = {}
    for name in files or []:
        if not _NAME.fullmatch(name) or name.startswith("."):
            raise InvalidInput(f"invalid secret name {name!r}")
        bindings[FILE + name] = name
    for spec in specs:
        env, _, name = spec.partition("=")
        name = name or env
        if not _ENV.fullmatch(env):
            raise InvalidInput(f"invalid environment variable name {env!r}")
        if not _NAME.fullmatch(name):
            raise InvalidInput(f"invalid secret name {name!r}")
        bindings[env] = name
    return bindings


class Secrets:
    def __init__(self, store: SecretStore, keys: MultiFernet) -> None:
        self.store = store
        self.keys = keys
        # told when a secret changes, so running instances stop holding old values
        self.listeners: list[Callable[[], Awaitable[None]]] = []

    async def _changed(self) -> None:
        for listener in self.listeners:
            await listener()

    async def create(self, project: Project, name: str, value: str) -> None:
        if not _NAME.fullmatch(name or ""):
            raise InvalidInput(
                f"invalid secret name {name!r}: letters, digits, '_', '.', '-' (at most 128)"
            )
        if len(value.encode()) > MAX_SECRET_BYTES:
            raise PayloadTooLarge(f"a secret holds at most {MAX_SECRET_BYTES} bytes")
        ciphertext = self.keys.encrypt(value.encode())
        try:
            await self.store.put_secret(project.id, name, ciphertext, now())
        except Conflict:
            raise Conflict(f"secret {name!r} already exists; delete it first") from None
        await self._changed()

    async def names(self, project: Project) -> list[tuple[str, float]]:
        return [(name, at) for _, name, at in await self.store.list_secrets(project.id)]

    async def delete(self, project: Project, name: str) -> None:
        if await self.store.get_secret(project.id, name) is None:
            raise NotFound(f"secret {name!r} not found", secret=name)
        await self.store.delete_secret(project.id, name)
        await self._changed()

    @staticmethod
    def split(values: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """(environment variables, files by name) of what `environment` returned."""
        env = {k: v for k, v in values.items() if not k.startswith(FILE)}
        files = {k[len(FILE) :]: v for k, v in values.items() if k.startswith(FILE)}
        return env, files

    async def check_bindings(self, project: Project, bindings: dict[str, str]) -> None:
        for name in bindings.values():
            if await self.store.get_secret(project.id, name) is None:
                raise NotFound(f"secret {name!r} not found", secret=name)

    async def environment(self, function: Function) -> dict[str, str]:
        """The function's secrets, as environment variables and as files ("file:" keys), for
        the node only, never for output."""
        env = {}
        for var, name in function.secrets.items():
            ciphertext = await self.store.get_secret(function.project_id, name)
            if ciphertext is None:
                continue  # deleted since: the variable is simply absent
            try:
                env[var] = self.keys.decrypt(ciphertext).decode()
            except InvalidToken:
                raise InvalidInput(
                    f"secret {name!r} was encrypted with a key that is no longer configured"
                ) from None
        return env

    async def rotate(self) -> int:
        """Re-encrypt every secret with the newest key; returns how many."""
        count = 0
        for project_id, name, _ in await self.store.list_secrets():
            ciphertext = await self.store.get_secret(project_id, name)
            if ciphertext is not None:
                await self.store.replace_secret_ciphertext(
                    project_id, name, self.keys.rotate(ciphertext)
                )
                count += 1
        return count


def mask(text: str, values: list[str]) -> str:
    """Hide secret values a function printed."""
    for value in values:
        if len(value) >= 4:
            text = text.replace(value, MASK)
    return text
