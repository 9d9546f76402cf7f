"""Container images a project loaded, and how function versions name them.

The engine (podman, see `pratai.drivers.podman.PodmanEngine`) holds the layers and is shared by
every project on the machine; the store holds each project's names (refs) for them. A project
sees and runs only the images it loaded itself: another project's ref is "not found", exactly
like a missing one. A function version runs an image by content id (`image_digest`), so loading
a new archive under the same ref later changes what new versions get, never an existing one.

On a cluster, the api that loads an archive also keeps it in the shared artifact store (`keep`)
and its records name it (`Image.archive`): a node lacking the image fetches the archive and
loads it into its own engine. `pratai serve` keeps no copy: its node shares its engine.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from pratai.artifacts.base import ArtifactStore
from pratai.core.models import Image, Project, new_id
from pratai.core.ports import CONTRACTS, ImageEngine, ImageStore
from pratai.errors import InvalidInput, NotFound

DIGEST_PREFIX = "img-"


def image_digest(engine_id: str) -> str:
    """A version's package digest for an image (fits the 64-character digest column)."""
    return DIGEST_PREFIX + engine_id[:60]


def engine_id_of(digest: str) -> str:
    """The engine's id (a unique prefix of it) from a version's package digest."""
    return digest.removeprefix(DIGEST_PREFIX)


def check_contract(contract: str) -> str:
    if contract not in CONTRACTS:
        raise InvalidInput(f"unknown contract {contract!r}: use http or stdio")
    return contract


class Images:
    def __init__(
        self, store: ImageStore, engine: ImageEngine | None, *, keep: ArtifactStore | None = None
    ) -> None:
        """`keep`: where a cluster keeps each loaded archive for its nodes (None: nowhere)."""
        self.store = store
        self.engine = engine
        self.keep = keep

    async def load(self, project: Project, archive: Path) -> list[Image]:
        if self.engine is None:
            raise InvalidInput("this platform runs no container engine (podman)")
        loaded = await self.engine.load(archive)
        kept = None
        if self.keep is not None:  # once the engine took it: it is an image archive
            kept = await asyncio.to_thread(_put_file, self.keep, archive)
        images = []
        for item in loaded:
            image = Image(
                new_id(), project.id, item.ref, item.image_id, item.size_bytes, archive=kept
            )
            await self.store.put_image(image)
            images.append(image)
        return images

    async def all(self, project: Project) -> list[Image]:
        return await self.store.list_images(project.id)

    async def get(self, project: Project, ref: str) -> Image:
        """The project's image by ref; `echo:1` also finds `localhost/echo:1`, and a ref
        without a tag finds `:latest`."""
        candidates = [ref]
        if ":" not in ref.rsplit("/", 1)[-1]:
            candidates.append(ref + ":latest")
        candidates += ["localhost/" + c for c in candidates if "/" not in c]
        for candidate in candidates:
            image = await self.store.get_image(project.id, candidate)
            if image is not None:
                return image
        raise NotFound(f"image {ref!r} not found", image=ref)

    async def delete(self, project: Project, ref: str) -> None:
        """Forgets the project's ref; the engine drops the image once no project names it and
        no function version runs it."""
        image = await self.get(project, ref)
        await self.store.delete_image(image.id)
        in_use = await self.store.image_in_use(image.image_id, image_digest(image.image_id))
        if not in_use and self.engine is not None:
            await self.engine.remove(image.image_id)


def _put_file(artifacts: ArtifactStore, archive: Path) -> str:
    return artifacts.put(archive.read_bytes())
