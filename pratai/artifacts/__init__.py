"""Content-addressed blobs: function packages, later big results."""

from pratai.artifacts.base import ArtifactStore

__all__ = ["ArtifactStore"]
