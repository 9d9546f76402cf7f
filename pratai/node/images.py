"""A node's container images: an image its podman lacks is loaded from the archive the control
plane kept in the shared artifact store (a run order names it), once; calls that need it
meanwhile wait for that one load."""

from __future__ import annotations

import asyncio
import logging

from pratai.artifacts import ArtifactStore
from pratai.drivers.podman import PodmanEngine
from pratai.errors import PrataiError, SandboxError

log = logging.getLogger("pratai.node")


class NodeImages:
    def __init__(self, engine: PodmanEngine, artifacts: ArtifactStore) -> None:
        self.engine = engine
        self.artifacts = artifacts
        self._here: set[str] = set()  # engine ids known to be in podman
        self._loading = asyncio.Lock()  # one load at a time: two archives may share a ref

    async def ensure(self, engine_id: str, archive: str | None) -> None:
        """Makes sure podman holds image `engine_id` (a prefix of its id, as a version's
        digest has it), loading it from `archive` when it does not. Raises SandboxError."""
        if engine_id in self._here:
            return
        async with self._loading:
            if engine_id in self._here:  # loaded while this call waited
                return
            if not await self.engine.exists(engine_id):
                await self._load(engine_id, archive)
            self._here.add(engine_id)

    async def _load(self, engine_id: str, archive: str | None) -> None:
        short = engine_id[:12]
        if archive is None:
            raise SandboxError(
                f"image {short} is not on this node and the call names no archive to load it "
                "from: load the image again with `pratai image-load ARCHIVE`",
                type="ImageNotShipped",
            )
        try:
            path = await asyncio.to_thread(self.artifacts.path, archive)
            loaded = await self.engine.load(path)
        except (PrataiError, OSError, TimeoutError) as exc:  # not in the store, NATS away, ...
            why = exc.message if isinstance(exc, PrataiError) else str(exc) or type(exc).__name__
            raise SandboxError(
                f"image {short} could not be loaded on this node: {why}",
                type="ImageUnavailable",
            ) from exc
        ids = [image.image_id for image in loaded]
        if not any(image_id.startswith(engine_id) for image_id in ids):
            raise SandboxError(
                f"archive {archive[:12]} does not hold image {short} (it holds "
                f"{', '.join(i[:12] for i in ids)})",
                type="ImageUnavailable",
            )
        log.info("loaded image %s from archive %s", short, archive[:12])
