"""`pratai image-*`: container images for image functions."""

from __future__ import annotations

import click

from pratai.cli.main import cli, handle_errors, output_option
from pratai.cli.output import emit_json, table, when
from pratai.client import Client


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


@cli.command("image-load")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False))
@output_option
@handle_errors
def image_load(archive: str, output: str) -> None:
    """Load an OCI or docker-save archive (podman save, docker save) into the project."""
    loaded = Client().load_image(archive)
    if output == "json":
        return emit_json(loaded)
    for image in loaded:
        click.echo(
            f"loaded {image['ref']} ({image['image_id'][:12]}, {_size(image['size_bytes'])})"
        )
    return None


@cli.command("image-list")
@output_option
@handle_errors
def image_list(output: str) -> None:
    """List the project's images."""
    found = Client().list_images()
    if output == "json":
        return emit_json(found)
    table(
        [
            (i["ref"], i["image_id"][:12], _size(i["size_bytes"]), when(i["created_at"]))
            for i in found
        ],
        ["REF", "IMAGE ID", "SIZE", "LOADED"],
    )
    return None


@cli.command("image-delete")
@click.argument("ref")
@output_option
@handle_errors
def image_delete(ref: str, output: str) -> None:
    """Forget an image (the engine keeps it while a function version runs it)."""
    Client().delete_image(ref)
    if output == "json":
        return emit_json({"deleted": ref})
    click.echo(f"deleted {ref}")
    return None
