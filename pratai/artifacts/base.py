from __future__ import annotations

from pathlib import Path
from typing import Protocol


class ArtifactStore(Protocol):
    """Blobs named by their sha256 hex digest. Methods are blocking: async code calls them with
    `asyncio.to_thread`. Malformed digests raise InvalidInput."""

    def open(self) -> None:
        """Connect now (a shared store), to fail early; using the store opens it too."""

    def close(self) -> None:
        """Release connections and threads; call once at the end."""

    def put(self, data: bytes) -> str:
        """Store a blob durably; returns its sha256 hex digest. Storing twice is a no-op."""

    def get(self, digest: str) -> bytes:
        """Raises NotFound for an unknown digest."""

    def path(self, digest: str) -> Path:
        """A local file holding the blob (for the filesystem store: the blob itself)."""

    def delete(self, digest: str) -> None: ...
