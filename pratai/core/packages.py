"""Validate and unpack a Python function package (a zip).

`inspect_package` checks a zip without writing anything: safe entry paths, no symlinks, no
encryption, size/count/ratio limits (zip bombs), then finds the handler by parsing (never
importing) the user's code, and reads `requirements.txt`. `unpack` validates the same way and
extracts, counting the bytes really inflated (headers can lie), files 0644 and dirs 0755 so an
unprivileged sandbox uid can read them.

A zip of a folder (every entry under one `dir/`, no top-level `.py` file, and `dir/` is not a
Python package with an `__init__.py`) is treated as if the
folder's content were at the top: both `inspect_package` and `unpack` strip that prefix
(`PackageInfo.strip_prefix` tells which). `__MACOSX/` entries are ignored.
"""

from __future__ import annotations

import ast
import hashlib
import io
import os
import re
import shutil
import stat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from pratai.errors import InvalidPackage, PayloadTooLarge

if TYPE_CHECKING:
    from pratai.settings import Settings

RATIO_MIN_BYTES = 1024 * 1024  # the ratio rule applies to entries bigger than this
_CHUNK = 64 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")
_HANDLER = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
_IGNORED_PREFIX = "__MACOSX/"


@dataclass(frozen=True)
class Limits:
    max_package_bytes: int = 50 * 1024 * 1024
    max_unpacked_bytes: int = 250 * 1024 * 1024
    max_compression_ratio: int = 200
    max_files: int = 10000

    @classmethod
    def from_settings(cls, settings: Settings, max_files: int = 10000) -> Limits:
        return cls(
            max_package_bytes=settings.max_package_bytes,
            max_unpacked_bytes=settings.max_unpacked_bytes,
            max_compression_ratio=settings.max_compression_ratio,
            max_files=max_files,
        )


@dataclass(frozen=True)
class PackageInfo:
    handler: str
    requirements: str | None
    requirements_hash: str | None
    strip_prefix: str = ""  # e.g. "myfunc/" when the zip wraps everything in one folder


@dataclass(frozen=True)
class _Entry:
    info: zipfile.ZipInfo
    path: str  # normalised, prefix stripped, no trailing slash
    is_dir: bool


# ---------------------------------------------------------------------------- validation


def _open(data: bytes, limits: Limits) -> zipfile.ZipFile:
    if len(data) > limits.max_package_bytes:
        raise PayloadTooLarge(
            f"package is {len(data)} bytes, over the limit of {limits.max_package_bytes} bytes",
            size=len(data),
            limit=limits.max_package_bytes,
        )
    if not data:
        raise InvalidPackage("package is empty: upload a zip file")
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as e:
        raise InvalidPackage(f"package is not a valid zip file: {e}", reason=str(e)) from e


def _clean_name(raw: str) -> str:
    """Normalise one entry name or raise for anything that could escape the destination."""
    name = raw.replace("\\", "/")
    if "\x00" in name:
        raise InvalidPackage(f"unsafe path in package: {raw!r} contains a NUL byte", entry=raw)
    if name.startswith("/"):
        raise InvalidPackage(f"unsafe path in package: {raw!r} is absolute", entry=raw)
    if _DRIVE.match(name):
        raise InvalidPackage(f"unsafe path in package: {raw!r} has a drive letter", entry=raw)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidPackage(f"unsafe path in package: {raw!r} contains '..'", entry=raw)
    return "/".join(parts)


def _check_ratio(name: str, size: int, compressed: int, limits: Limits) -> None:
    if size > RATIO_MIN_BYTES and size > limits.max_compression_ratio * max(compressed, 1):
        ratio = size / max(compressed, 1)
        raise InvalidPackage(
            f"entry {name!r} has a compression ratio of {ratio:.0f}:1, over the limit of "
            f"{limits.max_compression_ratio}:1 (zip bomb?)",
            entry=name,
            ratio=round(ratio),
            limit=limits.max_compression_ratio,
        )


def _entries(zf: zipfile.ZipFile, limits: Limits) -> tuple[list[_Entry], str]:
    """Validated entries with the wrapper-folder prefix stripped, and that prefix."""
    infos = [
        i for i in zf.infolist() if not i.filename.replace("\\", "/").startswith(_IGNORED_PREFIX)
    ]
    if len(infos) > limits.max_files:
        raise InvalidPackage(
            f"package has {len(infos)} entries, over the limit of {limits.max_files}",
            files=len(infos),
            limit=limits.max_files,
        )
    total = 0
    cleaned: list[tuple[zipfile.ZipInfo, str, bool]] = []
    for info in infos:
        raw = info.filename
        path = _clean_name(raw)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise InvalidPackage(
                f"package contains a symbolic link: {raw!r}; links are not allowed", entry=raw
            )
        if info.flag_bits & 0x1:
            raise InvalidPackage(
                f"package entry {raw!r} is encrypted; upload an unencrypted zip", entry=raw
            )
        is_dir = raw.endswith(("/", "\\")) or stat.S_ISDIR(mode)
        if not path:
            if is_dir:
                continue
            raise InvalidPackage(f"unsafe path in package: {raw!r} has no file name", entry=raw)
        if not is_dir:
            total += info.file_size
            _check_ratio(raw, info.file_size, info.compress_size, limits)
        cleaned.append((info, path, is_dir))
    if total > limits.max_unpacked_bytes:
        raise InvalidPackage(
            f"package unpacks to {total} bytes, over the limit of {limits.max_unpacked_bytes}",
            size=total,
            limit=limits.max_unpacked_bytes,
        )

    prefix = ""
    files = [p for _, p, d in cleaned if not d]
    if files and not any("/" not in p and p.endswith(".py") for p in files):
        firsts = {p.split("/", 1)[0] for _, p, _ in cleaned}
        wrapper = firsts.pop() if len(firsts) == 1 else ""
        # a folder holding `__init__.py` is a Python package the handler may name: keep it
        if wrapper and all("/" in p for p in files) and f"{wrapper}/__init__.py" not in files:
            prefix = wrapper + "/"

    entries: list[_Entry] = []
    seen: set[str] = set()
    for info, path, is_dir in cleaned:
        if prefix:
            if path + "/" == prefix:
                continue
            path = path[len(prefix) :]
        if not is_dir:
            if path in seen:
                raise InvalidPackage(f"package has two entries named {path!r}", entry=path)
            seen.add(path)
        entries.append(_Entry(info, path, is_dir))
    return entries, prefix


def _stream(zf: zipfile.ZipFile, entry: _Entry, limits: Limits, budget: int) -> Iterator[bytes]:
    """Yield the entry's bytes, checking what is really inflated (not what headers claim)."""
    info, real = entry.info, 0
    try:
        with zf.open(info) as src:
            while chunk := src.read(_CHUNK):
                real += len(chunk)
                if real > info.file_size:
                    raise InvalidPackage(
                        f"entry {entry.path!r} inflates past the {info.file_size} bytes its "
                        "header declares (corrupt or malicious zip)",
                        entry=entry.path,
                    )
                if real > budget:
                    raise InvalidPackage(
                        f"package unpacks to more than {limits.max_unpacked_bytes} bytes",
                        limit=limits.max_unpacked_bytes,
                    )
                _check_ratio(entry.path, real, info.compress_size, limits)
                yield chunk
    except InvalidPackage:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as e:
        raise InvalidPackage(
            f"entry {entry.path!r} is corrupt: {e}", entry=entry.path, reason=str(e)
        ) from e
    except RuntimeError as e:  # zipfile raises it for encrypted entries
        raise InvalidPackage(f"entry {entry.path!r} cannot be read: {e}", entry=entry.path) from e


def _read(zf: zipfile.ZipFile, entry: _Entry, limits: Limits) -> bytes:
    return b"".join(_stream(zf, entry, limits, limits.max_unpacked_bytes))


# ---------------------------------------------------------------------------- handler


def _parse(path: str, source: bytes) -> ast.Module:
    try:
        return ast.parse(source, filename=path)
    except SyntaxError as e:
        line = e.lineno or 0
        text = (e.text or "").strip()
        raise InvalidPackage(f"{path} line {line}: {e.msg}", file=path, line=line, text=text) from e
    except ValueError as e:  # e.g. NUL bytes in the source
        raise InvalidPackage(f"{path}: {e}", file=path, line=0, text="") from e


def _top_level_names(tree: ast.Module) -> set[str]:
    """Names bound at module level: defs, classes, assignments, imports."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _find_handler(
    zf: zipfile.ZipFile, files: dict[str, _Entry], limits: Limits, handler: str | None
) -> str:
    def names_in(path: str) -> set[str]:
        return _top_level_names(_parse(path, _read(zf, files[path], limits)))

    if handler is not None:
        if not _HANDLER.match(handler):
            raise InvalidPackage(
                f"invalid handler {handler!r}: use 'module.function', e.g. 'main.main'",
                handler=handler,
            )
        module, func = handler.rsplit(".", 1)
        base = module.replace(".", "/")
        candidates = [f"{base}.py", f"{base}/__init__.py"]
        path = next((c for c in candidates if c in files), None)
        if path is None:
            raise InvalidPackage(
                f"handler module {module!r} not found: the package has no {candidates[0]}",
                handler=handler,
                looked_for=candidates,
            )
        if func not in names_in(path):
            raise InvalidPackage(
                f"handler function {func!r} not found in {path}", handler=handler, file=path
            )
        return handler

    top = sorted(p for p in files if "/" not in p and p.endswith(".py"))
    if "main.py" in top and "main" in names_in("main.py"):
        return "main.main"
    found: list[str] = []
    for path in top:
        names = names_in(path)
        for func in ("main", "handler"):
            if func in names:
                found.append(f"{path[:-3]}.{func}")
                break
    if len(found) == 1:
        return found[0]
    if found:
        raise InvalidPackage(
            f"several modules define a handler ({', '.join(found)}); choose one with "
            "handler='module.function'",
            candidates=found,
        )
    raise InvalidPackage(
        "no handler found: looked for main.py with a top-level main(payload), or one top-level "
        ".py module with a top-level main(payload) or handler(event, context)",
        python_files=top,
    )


# ---------------------------------------------------------------------------- requirements


def normalise_requirements(text: str) -> str | None:
    """Strip comments/blank lines, join continuations, sort; None when nothing is left."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line, pending = (pending + line).strip(), ""
        if line.startswith("#"):
            continue
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line:
            lines.append(line)
    if pending.strip():
        lines.append(pending.strip())
    return "\n".join(sorted(set(lines))) + "\n" if lines else None


def _requirements(zf: zipfile.ZipFile, files: dict[str, _Entry], limits: Limits) -> str | None:
    entry = files.get("requirements.txt")
    if entry is None:
        return None
    try:
        text = _read(zf, entry, limits).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InvalidPackage(
            f"requirements.txt is not UTF-8 text: {e}", file="requirements.txt"
        ) from e
    return normalise_requirements(text)


# ---------------------------------------------------------------------------- public


def inspect_package(data: bytes, limits: Limits, handler: str | None = None) -> PackageInfo:
    """Validate the zip and find its handler and requirements; raises InvalidPackage."""
    with _open(data, limits) as zf:
        entries, prefix = _entries(zf, limits)
        files = {e.path: e for e in entries if not e.is_dir}
        found = _find_handler(zf, files, limits, handler)
        reqs = _requirements(zf, files, limits)
    digest = hashlib.sha256(reqs.encode()).hexdigest() if reqs else None
    return PackageInfo(
        handler=found, requirements=reqs, requirements_hash=digest, strip_prefix=prefix
    )


def unpack(data: bytes, dest: Path, limits: Limits) -> None:
    """Validate and extract into `dest` (created); on error nothing new is left behind."""
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        dest.chmod(0o755)
        root = dest.resolve()
        with _open(data, limits) as zf:
            entries, _ = _entries(zf, limits)
            budget = limits.max_unpacked_bytes
            for entry in entries:
                target = root.joinpath(*PurePosixPath(entry.path).parts)
                if not target.is_relative_to(root):  # belt and braces: _clean_name forbids it
                    raise InvalidPackage(f"unsafe path in package: {entry.path!r}")
                if entry.is_dir:
                    _mkdirs(root, target)
                    continue
                _mkdirs(root, target.parent)
                try:
                    fd = os.open(
                        target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644
                    )
                except OSError as e:
                    raise InvalidPackage(
                        f"cannot write entry {entry.path!r}: {e.strerror}", entry=entry.path
                    ) from e
                with os.fdopen(fd, "wb") as out:
                    os.fchmod(out.fileno(), 0o644)
                    for chunk in _stream(zf, entry, limits, budget):
                        out.write(chunk)
                    budget -= out.tell()
    except BaseException:
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        raise


def _mkdirs(root: Path, path: Path) -> None:
    missing: list[Path] = []
    while path != root and not path.is_dir():
        missing.append(path)
        path = path.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o755)
        except OSError as e:
            raise InvalidPackage(f"cannot create folder {d.relative_to(root)}: {e.strerror}") from e
        d.chmod(0o755)


__all__ = [
    "RATIO_MIN_BYTES",
    "Limits",
    "PackageInfo",
    "inspect_package",
    "normalise_requirements",
    "unpack",
]
