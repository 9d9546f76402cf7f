"""FilesystemArtifacts: content addressing, atomic writes, safe digests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pratai.artifacts import ArtifactStore
from pratai.artifacts.filesystem import FilesystemArtifacts
from pratai.errors import InvalidInput, NotFound


def test_put_get_path_delete(tmp_path: Path) -> None:
    store: ArtifactStore = FilesystemArtifacts(tmp_path / "artifacts")
    data = b"package bytes \x00\xff"
    digest = store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.put(data) == digest  # storing twice is a no-op
    assert store.get(digest) == data
    assert store.get(digest.upper()) == data
    p = store.path(digest)
    assert p == tmp_path / "artifacts" / digest[:2] / digest[2:]
    assert p.read_bytes() == data
    assert [f.name for f in p.parent.iterdir()] == [digest[2:]]  # no temp files left
    store.delete(digest)
    store.delete(digest)  # deleting twice is fine
    with pytest.raises(NotFound):
        store.get(digest)
    with pytest.raises(NotFound):
        store.path(digest)


def test_empty_blob(tmp_path: Path) -> None:
    store = FilesystemArtifacts(tmp_path)
    digest = store.put(b"")
    assert store.get(digest) == b""


def test_unknown_digest(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        FilesystemArtifacts(tmp_path).get("0" * 64)


@pytest.mark.parametrize(
    "bad",
    ["", "abc", "../" + "a" * 61, "a" * 63, "a" * 65, "g" * 64, "/etc/passwd", "a" * 62 + "/."],
)
def test_malformed_digest_is_rejected(tmp_path: Path, bad: str) -> None:
    store = FilesystemArtifacts(tmp_path)
    for call in (store.get, store.path, store.delete):
        with pytest.raises(InvalidInput):
            call(bad)


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FilesystemArtifacts(tmp_path)

    def boom(*_a: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("pratai.artifacts.filesystem.os.replace", boom)
    with pytest.raises(OSError):
        store.put(b"data")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
