"""Validate a Node.js function package (a zip): `index.js` exporting `main`, `package.json`.

The zip checks are the Python ones (`pratai.core.packages`: safe paths, limits, a wrapper
folder stripped). The handler is "path.export" (default `index.main`): the file must exist;
an export that is certainly missing (the name never appears and nothing is re-exported) is
refused here, anything subtler is an init error at the first call, since JavaScript is not
parsed on the platform. The `dependencies` of `package.json`, sorted, are the requirements
whose hash names the shared `node_modules` build.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile

from pratai.core.packages import Limits, PackageInfo, _entries, _Entry, _open, _read
from pratai.errors import InvalidPackage

DEFAULT_HANDLER = "index.main"
EXTENSIONS = (".js", ".cjs", ".mjs")
_HANDLER = re.compile(r"^(?!/)[\w\-./]*[\w\-]\.[A-Za-z_$][\w$]*$")
# A module that mentions none of these cannot get its export from elsewhere.
_REEXPORTS = re.compile(rb"\brequire\s*\(|\bimport\s*\(|\bfrom\s*['\"]|Object\.assign")


def _find_module(files: dict[str, _Entry], handler: str) -> tuple[str, str]:
    if not _HANDLER.match(handler) or ".." in handler.split("/"):
        raise InvalidPackage(
            f"invalid handler {handler!r}: use 'file.export', e.g. 'index.main'", handler=handler
        )
    module, export = handler.rsplit(".", 1)
    candidates = [module + ext for ext in EXTENSIONS]
    path = next((c for c in candidates if c in files), None)
    if path is None:
        raise InvalidPackage(
            f"handler file not found: the package has no {candidates[0]} "
            f"(a Node.js function needs {candidates[0]} exporting {export}(payload))",
            handler=handler,
            looked_for=candidates,
        )
    return path, export


def _check_export(source: bytes, path: str, export: str) -> None:
    if re.search(rb"(?<![\w$])" + re.escape(export.encode()) + rb"(?![\w$])", source):
        return
    if _REEXPORTS.search(source):
        return
    raise InvalidPackage(
        f"{path} does not export {export!r}: add e.g. `exports.{export} = async (payload) => "
        "{ ... }`",
        file=path,
        export=export,
    )


def _dependencies(zf: zipfile.ZipFile, files: dict[str, _Entry], limits: Limits) -> str | None:
    """package.json's dependencies as canonical JSON, or None when there are none."""
    entry = files.get("package.json")
    if entry is None:
        return None
    try:
        doc = json.loads(_read(zf, entry, limits).decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as e:
        raise InvalidPackage(f"package.json is not valid JSON: {e}", file="package.json") from e
    if not isinstance(doc, dict):
        raise InvalidPackage("package.json must hold a JSON object", file="package.json")
    deps = doc.get("dependencies")
    if deps is None or deps == {}:
        return None
    if not isinstance(deps, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in deps.items()
    ):
        raise InvalidPackage(
            'package.json: "dependencies" must map package names to version strings',
            file="package.json",
        )
    return json.dumps(dict(sorted(deps.items())), separators=(",", ":"), ensure_ascii=False)


def inspect_node_package(data: bytes, limits: Limits, handler: str | None = None) -> PackageInfo:
    """Validate the zip and find its handler and dependencies; raises InvalidPackage."""
    found = handler or DEFAULT_HANDLER
    with _open(data, limits) as zf:
        entries, prefix = _entries(zf, limits)
        files = {e.path: e for e in entries if not e.is_dir}
        if prefix and found.startswith(prefix):  # "src/app.main" of a zip holding only src/
            found = found[len(prefix) :]
        path, export = _find_module(files, found)
        _check_export(_read(zf, files[path], limits), path, export)
        deps = _dependencies(zf, files, limits)
    # "npm:" keeps these hashes apart from requirements.txt ones
    digest = hashlib.sha256(b"npm:" + deps.encode()).hexdigest() if deps else None
    return PackageInfo(
        handler=found, requirements=deps, requirements_hash=digest, strip_prefix=prefix
    )


__all__ = ["DEFAULT_HANDLER", "inspect_node_package"]
