"""The committed lock pins everything pyproject.toml asks for, within its ranges."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def _locked() -> dict[str, list[Version]]:
    pins: dict[str, list[Version]] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            pinned = Requirement(line)
            (spec,) = pinned.specifier
            assert spec.operator == "==", f"not a pin: {line}"
            pins.setdefault(canonicalize_name(pinned.name), []).append(Version(spec.version))
    return pins


def test_every_dependency_and_extra_is_pinned_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = [
        *project["project"]["dependencies"],
        *(r for extra in project["project"]["optional-dependencies"].values() for r in extra),
        *project["build-system"]["requires"],
    ]
    locked = _locked()
    for raw in wanted:
        requirement = Requirement(raw)
        versions = locked.get(canonicalize_name(requirement.name))
        assert versions, f"{requirement.name} is not in requirements.lock: run `make upgrade`"
        assert any(requirement.specifier.contains(v, prereleases=True) for v in versions), (
            f"requirements.lock pins {requirement.name} {versions}, outside {requirement.specifier}"
            ": run `make upgrade`"
        )
