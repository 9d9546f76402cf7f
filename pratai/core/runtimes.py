"""The runtimes a function zip can target, and which one a request asks for. How a sandbox
runs each (interpreter, bootstrap, mounts, limits) is the drivers' table, drivers/runtimes.py."""

from __future__ import annotations

from pratai.errors import InvalidInput

PYTHON = "python"
NODE = "node20"
RUNTIMES = (PYTHON, NODE)


def check_runtime(name: str) -> str:
    if name not in RUNTIMES:
        raise InvalidInput(
            f"unknown runtime {name!r}: use one of {', '.join(RUNTIMES)}",
            runtime=name,
            valid=list(RUNTIMES),
        )
    return name


__all__ = ["NODE", "PYTHON", "RUNTIMES", "check_runtime"]
