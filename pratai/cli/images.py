"""`pratai image-*`: container images for image functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pratai.api_client import ApiClient
from pratai.cli.group import Answer, command
from pratai.cli.output import when
from pratai.cli.progress import CountedFile, Progress


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


@command("image-load")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False))
def image_load(archive: str) -> Answer:
    """Load an OCI or docker-save archive (podman save, docker save) into the project."""
    client = ApiClient()
    then = "the server loads the image"
    progress = Progress(f"uploading {Path(archive).name}", Path(archive).stat().st_size, then)
    if not progress.shown:
        loaded = client.load_image(archive)
    else:
        with progress:
            loaded = client.load_image(archive, CountedFile(archive, progress.advance))
    return Answer(loaded, lambda: _print_loaded(loaded))


def _print_loaded(images: list[dict[str, Any]]) -> None:
    for i in images:
        click.echo(f"loaded {i['ref']} ({i['image_id'][:12]}, {_size(i['size_bytes'])})")


@command("image-list")
def image_list() -> Answer:
    """List the project's images."""
    return Answer.rows(
        ApiClient().list_images(),
        ["REF", "IMAGE ID", "SIZE", "LOADED"],
        lambda i: (i["ref"], i["image_id"][:12], _size(i["size_bytes"]), when(i["created_at"])),
    )


@command("image-delete")
@click.argument("ref")
def image_delete(ref: str) -> Answer:
    """Forget an image (the engine keeps it while a function version runs it)."""
    ApiClient().delete_image(ref)
    return Answer.deleted(ref)


COMMANDS = (image_load, image_list, image_delete)
