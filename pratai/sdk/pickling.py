"""The wire format of callable jobs: cloudpickle payloads out, base64 cloudpickle back."""

from __future__ import annotations

import base64
import io
import linecache
import marshal
import re
import sys
import sysconfig
import types
from collections import ChainMap
from collections.abc import Callable, Sequence
from typing import Any

import cloudpickle

from pratai.sdk.errors import RemoteError, RemoteTraceback

CONTENT_TYPE = "application/vnd.pratai.pickle"


def local_python() -> str:
    """The `python` a job asks for: a pickled callable only loads under the same minor version."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def dumps_call(fn: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> bytes:
    ship_local_code(fn, *args, *kwargs.values())
    return _dumps({"fn": fn, "args": tuple(args), "kwargs": dict(kwargs)})


def dumps_chunk(fn: Callable[..., Any], chunk: Sequence[tuple[Any, ...]]) -> bytes:
    """One job applying `fn` to each argument tuple of `chunk`, in order."""
    ship_local_code(fn, *(chunk[0] if chunk else ()))
    return _dumps({"fn": fn, "map": [tuple(a) for a in chunk]})


def _reduce_code(code: types.CodeType) -> tuple[Callable[[bytes], Any], tuple[bytes]]:
    return marshal.loads, (marshal.dumps(code),)


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle, except that code shipped by value keeps its file name.

    cloudpickle 3.1 renames the file of every code object it pickles to "<dynamic-code>" (for
    deterministic payloads), and a remote traceback then cannot say where the user's code
    lives. marshal keeps code objects whole, and both ends run the same Python minor version
    (the server refuses others), which is all marshal's format asks."""

    dispatch_table = ChainMap({types.CodeType: _reduce_code}, cloudpickle.Pickler.dispatch_table)


def _dumps(obj: Any) -> bytes:
    with io.BytesIO() as out:
        _Pickler(out, protocol=cloudpickle.DEFAULT_PROTOCOL).dump(obj)
        return out.getvalue()


def _installed_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple(paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths)


_INSTALLED = _installed_roots()
_CHECKED: set[str] = {"__main__", "builtins"}


def ship_local_code(*objects: Any) -> None:
    """Pickles the user's own modules by value.

    cloudpickle pickles a function or class of an importable module by reference (its module
    and name), and the sandbox has only the standard library and the job's requirements: so
    `fn` from `myproject/tasks.py` would fail remotely with ModuleNotFoundError. Code outside
    the standard library and site-packages (the user's project, an editable install) is
    therefore registered to be pickled by value, per top-level package. Only `fn` and the
    types of the top-level arguments are looked at; deeper references follow cloudpickle's
    rules (`cloudpickle.register_pickle_by_value` ships more)."""
    for obj in objects:
        name = getattr(obj, "__module__", None)
        if not isinstance(name, str):
            name = type(obj).__module__
        root = name.partition(".")[0]
        if root in _CHECKED:
            continue
        _CHECKED.add(root)
        module = sys.modules.get(root)
        # a namespace package (no __init__.py) has no __file__, only __path__
        where = getattr(module, "__file__", None) or next(
            iter(getattr(module, "__path__", [])), None
        )
        if module is not None and where and not where.startswith(_INSTALLED):
            cloudpickle.register_pickle_by_value(module)


def loads_b64(data: str) -> Any:
    return cloudpickle.loads(base64.b64decode(data))


_MISSING_MODULE = re.compile(r"No module named '([^']+)'")


def remote_exception(error: dict[str, Any], exc: BaseException | None = None) -> BaseException:
    """The local exception for a remote error dict ({"type", "message", "traceback", ...}).

    The remote exception object itself when it was pickled and loads here, else a
    `RemoteError`; either way its `__cause__` shows the remote traceback. A missing module is
    a `ModuleNotFoundError` naming it and saying how to ask for it."""
    kind = str(error.get("type") or "Error")
    message = str(error.get("message") or "")
    traceback = str(error.get("traceback") or "")
    if kind == "ModuleNotFoundError":
        found = _MISSING_MODULE.search(message)
        module = error.get("module") or (found.group(1) if found else None)
        if module:
            top = str(module).split(".")[0]
            exc = ModuleNotFoundError(
                f"No module named '{module}' on the Pratai runtime: pass requirements=['{top}']"
                f" (client.submit(..., _requirements=['{top}']) or submit_with(...,"
                f" requirements=['{top}'])) with the package that provides it",
                name=str(module),
            )
    if exc is None and error.get("exception"):
        try:
            loaded = loads_b64(str(error["exception"]))
        except Exception:  # a class that does not exist here: fall back to its description
            loaded = None
        if isinstance(loaded, BaseException):
            exc = loaded
    if exc is None:
        exc = RemoteError(kind, message, traceback)
    if traceback:
        exc.__cause__ = RemoteTraceback(with_local_source(traceback))
    return exc


_FRAME = re.compile(r'^  File "(?P<file>[^"]+)", line (?P<line>\d+), in ')


def with_local_source(traceback: str) -> str:
    """The remote traceback, with the source lines it lacks taken from local files.

    Code shipped by value runs remotely without its source file, so its frames come back
    without their lines; the files are usually right here, where the code was written."""
    out: list[str] = []
    lines = traceback.splitlines()
    for i, line in enumerate(lines):
        out.append(line)
        frame = _FRAME.match(line)
        has_source = i + 1 < len(lines) and lines[i + 1].startswith("    ")
        if frame and not has_source:
            source = linecache.getline(frame["file"], int(frame["line"])).strip()
            if source:
                out.append(f"    {source}")
    return "\n".join(out) + "\n"
