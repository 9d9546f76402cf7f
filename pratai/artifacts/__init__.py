"""Content-addressed blobs: function packages, later big results."""

from __future__ import annotations

from pathlib import Path

from pratai.artifacts.base import ArtifactStore

__all__ = ["ArtifactStore", "open_artifacts"]


def open_artifacts(broker_url: str, cache_dir: Path, *, replicas: int = 1) -> ArtifactStore:
    """Where the blobs live, by PRATAI_BROKER_URL: with a NATS broker (`nats://host:port`,
    comma-separated for a cluster's servers) in its JetStream object store, shared by every
    machine, each caching what it uses in `cache_dir` (`replicas` copies of each blob);
    otherwise in `cache_dir` itself. The NATS store connects at `open()` or its first call,
    and needs `close()` at the end."""
    if not broker_url.strip().startswith("nats://"):
        from pratai.artifacts.filesystem import FilesystemArtifacts

        return FilesystemArtifacts(cache_dir)
    servers = [server.strip() for server in broker_url.split(",")]
    if not all(server.startswith("nats://") and len(server) > len("nats://") for server in servers):
        raise ValueError(
            f"unsupported NATS URL {broker_url!r}: nats://host:port, comma-separated for the "
            "servers of a NATS cluster"
        )
    from pratai.artifacts.nats import NatsArtifacts

    return NatsArtifacts(servers, cache_dir, replicas=replicas)
