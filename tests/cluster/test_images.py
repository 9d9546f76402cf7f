"""Container image functions on a cluster, as real processes: an api loads an image archive
into its podman and keeps the archive in the artifact store; a node, in a network namespace that
reaches only NATS, with an image store of its own, loads the image from there on its first call.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.cluster.harness import Cluster, can_make_namespaces, cluster
from tests.helpers import wait_for
from tests.images.support import build_image

pytestmark = pytest.mark.skipif(
    not can_make_namespaces(), reason="the cluster tests make network namespaces: root and ip"
)


@pytest.fixture
def made(tmp_path: Path) -> Iterator[Cluster]:
    """An api, a scheduler and node `img` with its own podman image store."""
    assert shutil.which("podman"), "podman is not installed: run `make install`"
    assert shutil.which("busybox"), "busybox-static is not installed: run `make install`"
    with cluster(tmp_path) as made:
        made.start_api()
        made.start_scheduler()
        made.start_node("img", own_podman=True)
        try:
            yield made
        finally:
            made.stop()
            made.node_podman("img", "rm", "--all", "--force")
            made.node_podman("img", "rmi", "--all", "--force")


@pytest.fixture
def archives(tmp_path: Path) -> Iterator[dict[str, tuple[Path, str]]]:
    work = tmp_path / "build"
    work.mkdir()
    built = {kind: build_image(work, kind) for kind in ("http", "stdio")}
    yield built
    for _, ref in built.values():  # the api loaded them into the host's podman
        subprocess.run(["podman", "rmi", "--force", ref], capture_output=True)


def invoke(made: Cluster, name: str, payload: object) -> dict[str, Any]:
    done = made.cli("invoke", name, "--payload", json.dumps(payload), "-o", "json", check=False)
    return dict(json.loads(done.stdout))


def loads_logged(made: Cluster) -> list[str]:
    return [line for line in made.nodes[0].log.read_text().splitlines() if "loaded image" in line]


def test_image_functions_run_on_a_node_that_loads_them_from_the_artifact_store(
    made: Cluster, archives: dict[str, tuple[Path, str]]
) -> None:
    for archive, ref in archives.values():
        assert f"loaded {ref}" in made.cli("image-load", str(archive)).stdout
    listed = {
        i["ref"]: i["image_id"] for i in json.loads(made.cli("image-list", "-o", "json").stdout)
    }
    ids = {kind: listed[ref] for kind, (_, ref) in archives.items()}
    for image_id in ids.values():  # the api's podman has them, the node's not
        assert made.node_podman("img", "image", "exists", image_id).returncode == 1

    # http: sync calls, one warm container on the node, which loaded the image once
    http_ref, stdio_ref = archives["http"][1], archives["stdio"][1]
    made.cli("function-create", "web", "--image", http_ref, "--contract", "http",
             "--memory", "64", "--timeout", "20")  # fmt: skip
    first, second = invoke(made, "web", {"where": 1}), invoke(made, "web", {"where": 2})
    assert first["status"] == second["status"] == "succeeded", (first, second)
    assert first["result"]["node"] == "img" and first["result"]["got"] == {"where": 1}
    assert first["result"]["container"] == second["result"]["container"]
    assert (first["cold_start"], second["cold_start"]) == (True, False)
    assert made.node_podman("img", "image", "exists", ids["http"]).returncode == 0
    assert len(loads_logged(made)) == 1

    # an image loaded before the api kept archives: a clear error, until it is loaded again
    with psycopg.connect(made.database_url, autocommit=True) as db:
        db.execute("UPDATE images SET archive = NULL WHERE image_id = %s", (ids["stdio"],))
    made.cli("function-create", "pipe", "--image", stdio_ref, "--contract", "stdio",
             "--memory", "64", "--timeout", "20", "--concurrency", "4")  # fmt: skip
    refused = invoke(made, "pipe", {"where": 0})
    assert refused["status"] == "failed" and refused["error"]["type"] == "ImageNotShipped"
    assert "load the image again" in refused["error"]["message"]
    made.cli("image-load", str(archives["stdio"][0]))

    # stdio: async calls at once, which wait for one load of the image
    with made.http() as http:
        sent = [http.post("/v1/functions/pipe/invoke?async=true", json={"where": n})
                for n in range(6)]  # fmt: skip
        assert all(answer.status_code == 202 for answer in sent), [a.text for a in sent]

        def finished() -> list[dict[str, Any]] | None:
            found = [http.get(f"/v1/invocations/{a.json()['id']}").json() for a in sent]
            return found if all(f["status"] not in ("queued", "running") for f in found) else None

        records = wait_for(finished, timeout=120, what="the async image calls to finish")
    assert [(r["status"], r["result"]) for r in records] == [
        ("succeeded", {"node": "img", "got": {"where": n}}) for n in range(6)
    ], records
    synced = invoke(made, "pipe", {"where": 9})
    assert (synced["status"], synced["result"]) == (
        "succeeded",
        {"node": "img", "got": {"where": 9}},
    )
    assert made.node_podman("img", "image", "exists", ids["stdio"]).returncode == 0
    assert len(loads_logged(made)) == 2  # each image once

    node = made.nodes[0]  # it ran in its namespace, which reaches only NATS (test_cluster)
    assert node.process is not None and node.netns is not None
    inside = os.stat(f"/proc/{node.process.pid}/ns/net").st_ino
    assert (
        inside == os.stat(f"/run/netns/{node.netns}").st_ino != os.stat("/proc/self/ns/net").st_ino
    )
