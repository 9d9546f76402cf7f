"""The vendored JavaScript and CSS are exactly the files VENDORED.md records."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pratai.console

STATIC = Path(pratai.console.__file__).parent / "static"


def test_every_vendored_file_matches_its_recorded_checksum_and_has_its_licence() -> None:
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in (STATIC / "VENDORED.md").read_text().splitlines()
        if line.startswith("| ") and not line.startswith("| file")
    ]
    assert len(rows) >= 3
    for name, _package, version, licence, _origin, sha256 in rows:
        assert hashlib.sha256((STATIC / name).read_bytes()).hexdigest() == sha256, name
        assert version in name
        assert (STATIC / licence.split("(")[1].rstrip(")")).is_file(), licence
