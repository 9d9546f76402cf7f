"""The code of a function version, to read: its files and the text of one (the console's code
view). Read from the package the deploy stored, with the checks a deploy makes (safe paths,
no zip bombs) and the same wrapper-folder stripping, so paths are as the sandbox sees them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pratai.core.functions import Functions
from pratai.core.models import FunctionVersion, Project
from pratai.core.packages import Limits, _entries, _open, _stream
from pratai.errors import NotFound

MAX_SHOWN_BYTES = 256 * 1024  # a bigger file shows its beginning


@dataclass(frozen=True)
class PackageFile:
    path: str
    size: int


@dataclass(frozen=True)
class SourceFile:
    path: str
    size: int
    text: str | None  # None: binary
    truncated: bool  # only the first MAX_SHOWN_BYTES are in `text`


def _list(data: bytes, limits: Limits) -> list[PackageFile]:
    with _open(data, limits) as zf:
        entries, _ = _entries(zf, limits)
    files = [PackageFile(e.path, e.info.file_size) for e in entries if not e.is_dir]
    return sorted(files, key=lambda f: f.path)


def _decode(data: bytes, truncated: bool) -> str | None:
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # the cut at MAX_SHOWN_BYTES may split one character: that is not binary
        if truncated and exc.start >= len(data) - 3:
            return data[: exc.start].decode("utf-8", errors="strict")
        return None


def _read(data: bytes, limits: Limits, path: str) -> SourceFile:
    with _open(data, limits) as zf:
        entries, _ = _entries(zf, limits)
        entry = next((e for e in entries if e.path == path and not e.is_dir), None)
        if entry is None:
            raise NotFound(f"the package has no file {path!r}", file=path)
        shown = bytearray()
        for chunk in _stream(zf, entry, limits, limits.max_unpacked_bytes):
            shown += chunk
            if len(shown) > MAX_SHOWN_BYTES:
                break
    truncated = len(shown) > MAX_SHOWN_BYTES
    head = bytes(shown[:MAX_SHOWN_BYTES])
    return SourceFile(path, entry.info.file_size, _decode(head, truncated), truncated)


class Code:
    """The packages of a project's function versions, to read."""

    def __init__(self, functions: Functions) -> None:
        self.functions = functions

    async def version(
        self, project: Project, name: str, number: int | None = None
    ) -> FunctionVersion | None:
        """Version `number`, or the live one (the latest while none is live); None when the
        function runs a container image (no package to show)."""
        function = await self.functions.get(project, name)
        if function.runtime == "image":
            return None
        view = await self.functions.view(function)
        if number is None:
            return view.active or view.latest
        found = await self.functions.store.get_version(function.id, number)
        if found is None:
            raise NotFound(f"function {name!r} has no version {number}", version=number)
        return found

    async def _package(self, version: FunctionVersion) -> bytes:
        artifacts = self.functions.workspace.artifacts
        return await asyncio.to_thread(artifacts.get, version.package_digest)

    async def files(self, version: FunctionVersion) -> list[PackageFile]:
        data = await self._package(version)
        return await asyncio.to_thread(_list, data, self.functions.workspace.limits)

    async def read(self, version: FunctionVersion, path: str) -> SourceFile:
        data = await self._package(version)
        return await asyncio.to_thread(_read, data, self.functions.workspace.limits, path)
