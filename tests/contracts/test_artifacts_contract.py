"""What every `ArtifactStore` promises, run against each: FilesystemArtifacts (tmp_path) and
NatsArtifacts (a bucket of its own per test on a nats-server this module starts)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pratai.artifacts import ArtifactStore
from pratai.artifacts.filesystem import FilesystemArtifacts
from pratai.artifacts.nats import NatsArtifacts
from pratai.errors import InvalidInput, NotFound
from tests.helpers import nats_servers


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with nats_servers(tmp_path_factory.mktemp("nats")) as servers:
        yield servers[0].url


@pytest.fixture(params=[pytest.param("filesystem", marks=pytest.mark.fast), "nats"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    if request.param == "filesystem":
        s: ArtifactStore = FilesystemArtifacts(tmp_path / "artifacts")
    else:
        url = request.getfixturevalue("nats_url")
        bucket = f"t{uuid.uuid4().hex[:12]}"
        s = NatsArtifacts([url], tmp_path / "cache", bucket=bucket, retry_s=10)
    s.open()
    try:
        yield s
    finally:
        s.close()


def test_put_returns_the_sha256_and_get_gives_the_bytes_back(store: ArtifactStore) -> None:
    data = b"package bytes \x00\xff" * 1000
    digest = store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.get(digest) == data
    assert store.get(digest.upper()) == data


def test_putting_twice_is_a_no_op(store: ArtifactStore) -> None:
    digest = store.put(b"same")
    assert store.put(b"same") == digest
    assert store.get(digest) == b"same"


def test_an_empty_blob(store: ArtifactStore) -> None:
    digest = store.put(b"")
    assert store.get(digest) == b""
    assert store.path(digest).read_bytes() == b""


def test_path_is_a_file_holding_the_bytes(store: ArtifactStore) -> None:
    data = bytes(range(256)) * 700  # several chunks of the NATS store
    p = store.path(store.put(data))
    assert p.is_file()
    assert p.read_bytes() == data


def test_an_unknown_digest_is_not_found(store: ArtifactStore) -> None:
    for call in (store.get, store.path):
        with pytest.raises(NotFound):
            call("0" * 64)
    store.delete("0" * 64)  # deleting what is not there is fine


@pytest.mark.parametrize("bad", ["", "abc", "../" + "a" * 61, "g" * 64, "a" * 65, "/etc/passwd"])
def test_a_malformed_digest_is_invalid_input(store: ArtifactStore, bad: str) -> None:
    for call in (store.get, store.path, store.delete):
        with pytest.raises(InvalidInput):
            call(bad)


def test_delete(store: ArtifactStore) -> None:
    kept = store.put(b"kept")
    gone = store.put(b"gone")
    store.delete(gone)
    store.delete(gone)  # twice is fine
    for call in (store.get, store.path):
        with pytest.raises(NotFound):
            call(gone)
    assert store.get(kept) == b"kept"
    assert store.put(b"gone") == gone  # and it can come back
    assert store.get(gone) == b"gone"
