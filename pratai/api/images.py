"""/v1/images: load container image archives, list and delete the project's images."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from pratai.api.deps import Services, allowed, services
from pratai.api.errors import AUTHENTICATED, responses
from pratai.core.images import Images
from pratai.core.models import Image
from pratai.core.tenants import Principal
from pratai.errors import InvalidInput, NotFound, PayloadTooLarge

# Every route answers 400 on a platform without a container engine.
router = APIRouter(
    prefix="/v1/images", tags=["images"], responses=responses(*AUTHENTICATED, InvalidInput)
)

Reader = Annotated[Principal, Depends(allowed("read"))]
Deployer = Annotated[Principal, Depends(allowed("deploy"))]
Svc = Annotated[Services, Depends(services)]

_UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "an OCI or docker-save archive (tar)",
                        }
                    },
                }
            }
        },
    }
}


class ImageOut(BaseModel):
    ref: str
    image_id: str
    size_bytes: int
    created_at: float

    @classmethod
    def of(cls, image: Image) -> ImageOut:
        return cls(
            ref=image.ref,
            image_id=image.image_id,
            size_bytes=image.size_bytes,
            created_at=image.created_at,
        )


def _images(svc: Services) -> Images:
    if svc.images is None:
        raise InvalidInput("this platform runs no container images")
    return svc.images


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"image archive is over the limit of {limit} bytes", limit=limit)


@router.post(
    "",
    status_code=201,
    response_model=list[ImageOut],
    responses=responses(PayloadTooLarge),
    openapi_extra=_UPLOAD_DOC,
)
async def load_image(request: Request, who: Deployer, svc: Svc) -> list[ImageOut]:
    """Load an archive into the engine and record its images for the caller's project. The
    body is read here, after the key is checked, and refused early when it declares a size
    over PRATAI_MAX_IMAGE_BYTES."""
    images = _images(svc)
    limit = svc.settings.max_image_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise _too_large(limit)
    form = await request.form(max_files=1, max_fields=4)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("send the archive as the multipart field 'file'")
        with tempfile.TemporaryDirectory(prefix="pratai-image-") as tmp:
            path = Path(tmp) / "archive.tar"
            size = 0
            with path.open("wb") as out:
                while chunk := await upload.read(1024 * 1024):
                    size += len(chunk)
                    if size > limit:
                        raise _too_large(limit)
                    out.write(chunk)
            loaded = await images.load(who.project, path)
    finally:
        await form.close()
    return [ImageOut.of(image) for image in loaded]


@router.get("", response_model=list[ImageOut])
async def list_images(who: Reader, svc: Svc) -> list[ImageOut]:
    return [ImageOut.of(image) for image in await _images(svc).all(who.project)]


@router.get("/{ref:path}", response_model=ImageOut, responses=responses(NotFound))
async def show_image(ref: str, who: Reader, svc: Svc) -> ImageOut:
    return ImageOut.of(await _images(svc).get(who.project, ref))


@router.delete("/{ref:path}", status_code=204, responses=responses(NotFound))
async def delete_image(ref: str, who: Deployer, svc: Svc) -> None:
    await _images(svc).delete(who.project, ref)
