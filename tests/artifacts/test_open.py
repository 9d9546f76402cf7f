"""open_artifacts: the store PRATAI_BROKER_URL implies (nothing connects here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pratai.artifacts import open_artifacts
from pratai.artifacts.filesystem import FilesystemArtifacts
from pratai.artifacts.nats import NatsArtifacts


@pytest.mark.parametrize("url", ["", "memory", "embedded"])
def test_without_nats_the_blobs_stay_in_the_folder(tmp_path: Path, url: str) -> None:
    store = open_artifacts(url, tmp_path)
    assert isinstance(store, FilesystemArtifacts)
    assert store.root == tmp_path


def test_a_nats_url_shares_the_blobs_and_caches_them_in_the_folder(tmp_path: Path) -> None:
    store = open_artifacts("nats://a:4222, nats://b:4222", tmp_path, replicas=3)
    assert isinstance(store, NatsArtifacts)
    assert store.servers == ["nats://a:4222", "nats://b:4222"]
    assert store.cache.root == tmp_path
    assert (store.replicas, store.bucket) == (3, "pratai-artifacts")


@pytest.mark.parametrize("url", ["nats://", "nats://a:4222,", "nats://a:4222,http://b"])
def test_a_malformed_nats_url_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValueError, match="nats://host:port"):
        open_artifacts(url, tmp_path)
