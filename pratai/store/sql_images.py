"""The SQL store's container images (rows of `images`, one per project and ref)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pratai.core.models import Image
from pratai.store import tables as t
from pratai.store._rows import SqlBase


class ImageRows(SqlBase):
    async def put_image(self, image: Image) -> None:
        """Adds the image, or points the project's existing ref at the new content."""
        row = {c.name: getattr(image, c.name) for c in t.images.columns}
        i = t.images

        def work(c: Connection) -> None:
            q = sa.select(i.c.id).where(i.c.project_id == image.project_id, i.c.ref == image.ref)
            found = c.execute(q).scalar()
            if found is None:
                c.execute(i.insert(), row)
            else:
                image.id = found
                values = {k: row[k] for k in ("image_id", "size_bytes", "created_at", "archive")}
                c.execute(sa.update(i).where(i.c.id == found).values(**values))

        await self._run(work)

    async def get_image(self, project_id: str, ref: str) -> Image | None:
        i = t.images
        q = sa.select(i).where(i.c.project_id == project_id, i.c.ref == ref)
        r = await self._run(lambda c: c.execute(q).mappings().first())
        return Image(**r) if r else None

    async def list_images(self, project_id: str) -> list[Image]:
        i = t.images
        q = sa.select(i).where(i.c.project_id == project_id).order_by(i.c.ref)
        rows = await self._run(lambda c: c.execute(q).mappings().all())
        return [Image(**r) for r in rows]

    async def delete_image(self, image_id: str) -> None:
        """Deletes one record (by its own id, not the engine's)."""
        await self._run(lambda c: c.execute(sa.delete(t.images).where(t.images.c.id == image_id)))

    async def image_archive(self, engine_id: str) -> str | None:
        i = t.images
        q = (
            sa.select(i.c.archive)
            .where(i.c.image_id.startswith(engine_id, autoescape=True), i.c.archive.is_not(None))
            .order_by(i.c.created_at.desc())
            .limit(1)
        )
        found = await self._run(lambda c: c.execute(q).scalar())
        return None if found is None else str(found)

    async def image_in_use(self, engine_id: str, digest: str) -> bool:
        v, i = t.function_versions, t.images
        by_record = sa.select(i.c.id).where(i.c.image_id == engine_id).limit(1)
        by_version = sa.select(v.c.function_id).where(v.c.package_digest == digest).limit(1)

        def work(c: Connection) -> bool:
            return c.execute(by_record).first() is not None or (
                c.execute(by_version).first() is not None
            )

        return await self._run(work)
