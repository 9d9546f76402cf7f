"""Content-addressed blobs on a local filesystem: `root/ab/cdef…` named by sha256."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from pratai.errors import InvalidInput, NotFound

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def checked_digest(digest: str) -> str:
    """`digest` in lower case; anything but 64 hex digits raises InvalidInput."""
    d = digest.lower() if isinstance(digest, str) else ""
    if not _DIGEST.match(d):
        raise InvalidInput(f"invalid artifact digest {digest!r}", digest=str(digest))
    return d


class FilesystemArtifacts:
    """`ArtifactStore` in a folder. Writes are atomic (temp file, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def open(self) -> None:
        """Nothing to connect to."""

    def close(self) -> None:
        """Nothing to release."""

    def location(self, digest: str) -> Path:
        """Where the blob is kept, there or not; malformed digests raise InvalidInput."""
        d = checked_digest(digest)
        return self.root / d[:2] / d[2:]

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if not self.location(digest).exists():
            self.write(digest, lambda f: f.write(data))
        return digest

    def write(self, digest: str, fill: Callable[[BinaryIO], object]) -> Path:
        """Stores as blob `digest` what `fill` writes into the file it is given, atomically (a
        temp file beside it, renamed once complete); the caller vouches for the digest."""
        target = self.location(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                fill(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(target.parent)
        return target

    def get(self, digest: str) -> bytes:
        try:
            return self.location(digest).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no artifact {digest}", digest=digest) from None

    def path(self, digest: str) -> Path:
        p = self.location(digest)
        if not p.is_file():
            raise NotFound(f"no artifact {digest}", digest=digest)
        return p

    def delete(self, digest: str) -> None:
        self.location(digest).unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
