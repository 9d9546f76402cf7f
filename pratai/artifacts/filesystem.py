"""Content-addressed blobs on a local filesystem: `root/ab/cdef…` named by sha256."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path

from pratai.errors import InvalidInput, NotFound

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class FilesystemArtifacts:
    """`ArtifactStore` in a folder. Writes are atomic (temp file, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _file(self, digest: str) -> Path:
        """The blob's path; malformed digests (anything but 64 hex digits) raise InvalidInput."""
        d = digest.lower() if isinstance(digest, str) else ""
        if not _DIGEST.match(d):
            raise InvalidInput(f"invalid artifact digest {digest!r}", digest=str(digest))
        return self.root / d[:2] / d[2:]

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self._file(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(target.parent)
        return digest

    def get(self, digest: str) -> bytes:
        try:
            return self._file(digest).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no artifact {digest}", digest=digest) from None

    def path(self, digest: str) -> Path:
        p = self._file(digest)
        if not p.is_file():
            raise NotFound(f"no artifact {digest}", digest=digest)
        return p

    def delete(self, digest: str) -> None:
        self._file(digest).unlink(missing_ok=True)


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
