"""Container image functions end to end: real podman, images built here from busybox-static,
loaded with `pratai image-load`, run through a real `pratai serve`. No mocks; a missing podman
fails these tests rather than skipping them (`make install` installs it)."""

from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Server, start_server
from tests.images.support import build_image

IMAGE_LIMIT = 8 * 1024 * 1024  # the busybox images are about 2 MB
_LOADED: list[str] = []


@pytest.fixture(scope="module")
def podman() -> str:
    found = shutil.which("podman")
    assert found, "podman is not installed: run `make install` (scripts/ensure-sandbox-deps)"
    assert shutil.which("busybox"), "busybox-static is not installed: run `make install`"
    return found


@pytest.fixture(scope="module")
def srv(podman: str) -> Iterator[Server]:
    """A server of our own: a small image size limit, and images loaded once per module."""
    base = Path(tempfile.mkdtemp(prefix="pratai-images-", dir="/var/tmp"))
    base.chmod(0o755)
    server = start_server(base, PRATAI_MAX_IMAGE_BYTES=str(IMAGE_LIMIT), PRATAI_IDLE_TIMEOUT="60")
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)
    # the functions of these tests ran them, so the engine kept them: drop them now that the
    # server (and its warm containers) are gone
    for image_ref in _LOADED:
        subprocess.run(["podman", "rmi", "--force", image_ref], capture_output=True)


@pytest.fixture(scope="module")
def archives(podman: str) -> Iterator[dict[str, tuple[Path, str]]]:
    work = Path(tempfile.mkdtemp(prefix="pratai-image-build-"))
    try:
        yield {kind: build_image(work, kind) for kind in ("http", "stdio")}
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def refs(srv: Server, archives: dict[str, tuple[Path, str]]) -> Iterator[dict[str, str]]:
    loaded = {}
    for kind, (archive, ref) in archives.items():
        out = srv.cli("image-load", str(archive)).stdout
        assert f"loaded {ref}" in out
        loaded[kind] = ref
    yield loaded
    for image_ref in loaded.values():
        srv.cli("image-delete", image_ref, check=False)
        _LOADED.append(image_ref)


def _invoke(srv: Server, name: str, payload: object) -> dict:
    done = srv.cli("invoke", name, "--payload", json.dumps(payload), "-o", "json", check=False)
    return json.loads(done.stdout)


def _create(srv: Server, name: str, ref: str, contract: str, *flags: str) -> None:
    srv.cli("function-create", name, "--image", ref, "--contract", contract, *flags)


@pytest.fixture
def loopback_server() -> Iterator[int]:
    """A TCP server on the host's 127.0.0.1 that counts the connections it accepts."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    listener.close()
    assert not accepted, "a container reached the host's loopback"


def test_load_list_and_project_isolation(srv: Server, refs: dict[str, str]) -> None:
    listed = srv.cli_json("image-list")
    assert {i["ref"] for i in listed} >= set(refs.values())
    assert all(len(i["image_id"]) == 64 and i["size_bytes"] > 0 for i in listed)

    srv.cli("project-create", "imgother")
    token = srv.cli_json("key-create", "--project", "imgother", "--role", "developer")["token"]
    with httpx.Client(
        base_url=srv.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as other:
        assert other.get("/v1/images").json() == []
        theirs = other.get(f"/v1/images/{refs['http']}")
        missing = other.get("/v1/images/localhost/nothing:1")
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json()["message"].replace(refs["http"], "X") == missing.json()[
            "message"
        ].replace("localhost/nothing:1", "X")
        form = {"name": "stolen", "image": refs["http"], "contract": "http"}
        used = other.post("/v1/functions", data=form)
        assert used.status_code == 404, used.text
        assert other.delete(f"/v1/images/{refs['http']}").status_code == 404
    assert {i["ref"] for i in srv.cli_json("image-list")} >= set(refs.values())


def test_bad_archives_are_refused(srv: Server, tmp_path: Path) -> None:
    not_tar = tmp_path / "notes.tar"
    not_tar.write_text("hello, this is not an archive\n" * 10)
    done = srv.cli("image-load", str(not_tar), check=False)
    assert done.returncode == 1
    assert "not an image archive" in done.stderr

    with srv.http() as http:
        answer = http.post("/v1/images", files={"file": ("x.tar", not_tar.read_bytes())})
        assert answer.status_code == 400
        assert answer.json()["error"] == "invalid_input"

        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:  # a tar, but no image in it
            info = tarfile.TarInfo("hello.txt")
            info.size = 5
            tar.addfile(info, io.BytesIO(b"hello"))
        answer = http.post("/v1/images", files={"file": ("x.tar", buffer.getvalue())})
        assert answer.status_code == 400
        assert "podman could not load" in answer.json()["message"]

        big = http.post("/v1/images", files={"file": ("x.tar", b"\0" * (IMAGE_LIMIT + 1))})
        assert big.status_code == 413
        assert big.json()["error"] == "payload_too_large"


def test_http_contract_warm_container(srv: Server, refs: dict[str, str]) -> None:
    _create(srv, "img-http", refs["http"], "http", "--memory", "64", "--timeout", "5")
    shown = srv.cli_json("function-show", "img-http")
    assert shown["runtime"] == "image" and shown["image"] == refs["http"]
    assert shown["handler"] == "http" and shown["state"] == "ready"

    results = [_invoke(srv, "img-http", {"n": n}) for n in range(4)]
    assert all(r["status"] == "succeeded" for r in results), results
    containers = {r["result"]["container"] for r in results}
    assert len(containers) == 1 and "" not in containers  # one warm container served them all
    assert results[0]["result"]["got"] == {"n": 0}  # the CGI echoes the body: valid JSON
    assert results[0]["result"]["uid"] == "65534"  # not root inside
    assert results[0]["cold_start"] is True and results[1]["cold_start"] is False

    failed = _invoke(srv, "img-http", "fail")
    assert failed["status"] == "failed"
    assert failed["error"]["type"] == "HTTPError" and "500" in failed["error"]["message"]

    # a new image is a new version; rollback serves the old one again
    srv.cli("function-update", "img-http", "--image", refs["stdio"], "--contract", "stdio")
    assert _invoke(srv, "img-http", {"v": 2})["result"] == {"got": {"v": 2}, "uid": "65534"}
    versions = srv.cli_json("function-versions", "img-http")
    assert {v["version"]: v["handler"] for v in versions} == {1: "http", 2: "stdio"}
    assert versions[0]["package_digest"].startswith("img-")
    srv.cli("function-rollback", "img-http", "--version", "1")
    back = _invoke(srv, "img-http", {"v": 1})["result"]
    assert back["got"] == {"v": 1} and back["container"] != containers.pop()  # a new container

    # on podman's bridge network the port is reached the same way
    srv.cli("function-update", "img-http", "--network")
    assert _invoke(srv, "img-http", {"v": 3})["result"]["got"] == {"v": 3}


def test_stdio_contract(srv: Server, refs: dict[str, str]) -> None:
    _create(srv, "img-stdio", refs["stdio"], "stdio", "--memory", "64", "--timeout", "5")
    ok = _invoke(srv, "img-stdio", {"a": [1, 2]})
    assert ok["status"] == "succeeded", ok
    assert ok["result"] == {"got": {"a": [1, 2]}, "uid": "65534"}
    assert "log line" in ok["stderr"]

    text = _invoke(srv, "img-stdio", "text")
    assert text["result"] == "plain words\n"  # not JSON: returned as a JSON string

    probe = _invoke(srv, "img-stdio", "probe")["result"]  # what the container sees
    assert probe == {
        "uid": "65534",  # not root
        "caps": "0000000000000000",  # no capabilities
        "nets": "lo ",  # no network interface but loopback
        "rootfs": "read-only",
        "tmp": "writable",  # a tmpfs, charged to the memory limit
    }

    failed = _invoke(srv, "img-stdio", "fail")
    assert failed["status"] == "failed"
    assert failed["error"]["type"] == "NonZeroExit" and "code 3" in failed["error"]["message"]
    assert "failing on purpose" in failed["stderr"]


@pytest.mark.parametrize("contract", ["http", "stdio"])
def test_memory_limit(srv: Server, refs: dict[str, str], contract: str) -> None:
    name = f"img-oom-{contract}"
    _create(srv, name, refs[contract], contract, "--memory", "32", "--timeout", "20")
    grown = _invoke(srv, name, "grow")  # builds a 200 MB shell string
    assert grown["status"] == "failed", grown
    assert grown["error"]["type"] == "MemoryLimitExceeded", grown["error"]
    # podman's monitor marks an OOM with a file in its working directory: not the server's
    assert not (Path.cwd() / "oom").exists()
    after = _invoke(srv, name, {"again": True})  # a fresh container serves the next call
    assert after["status"] == "succeeded", after


@pytest.mark.parametrize("contract", ["http", "stdio"])
def test_timeout_kills_the_container(
    srv: Server, refs: dict[str, str], contract: str, podman: str
) -> None:
    name = f"img-slow-{contract}"
    _create(srv, name, refs[contract], contract, "--timeout", "1")
    slow = _invoke(srv, name, "slow")
    assert slow["status"] == "timed_out", slow
    # no container still runs the sleeping call (warm ones of other tests may run)
    running = subprocess.run([podman, "ps", "-q"], capture_output=True, text=True).stdout.split()
    for container in running:
        top = subprocess.run([podman, "top", container, "args"], capture_output=True, text=True)
        assert "sleep 30" not in top.stdout
    assert _invoke(srv, name, {"next": 1})["status"] == "succeeded"


@pytest.mark.parametrize("network", [False, True])
def test_no_host_loopback(
    srv: Server, refs: dict[str, str], loopback_server: int, network: bool
) -> None:
    name = f"img-net-{network}".lower()
    flags = ["--network"] if network else []
    _create(srv, name, refs["stdio"], "stdio", *flags)
    answer = _invoke(srv, name, f"connect 127.0.0.1 {loopback_server}")
    assert answer["status"] == "succeeded", answer
    assert answer["result"].strip() == "unreachable"


def test_secrets_reach_the_container_as_environment(srv: Server, refs: dict[str, str]) -> None:
    srv.cli("secret-create", "IMG_TOKEN", "--value", "s3cr3t-value")
    _create(srv, "img-env", refs["stdio"], "stdio", "--secret", "IMG_TOKEN")
    answer = _invoke(srv, "img-env", "env")
    assert answer["status"] == "succeeded", answer
    assert answer["result"] == 'token is s3cr3t-value\n{"port": "8080", "fn": "img-env"}'


def test_delete_forgets_the_ref_but_versions_keep_running(
    srv: Server, refs: dict[str, str], tmp_path: Path
) -> None:
    archive, ref = build_image(tmp_path, "stdio")
    srv.cli("image-load", str(archive))
    _LOADED.append(ref)
    _create(srv, "img-kept", ref, "stdio")
    srv.cli("image-delete", ref)
    assert ref not in {i["ref"] for i in srv.cli_json("image-list")}
    again = srv.cli("function-create", "img-lost", "--image", ref, check=False)
    assert again.returncode == 1 and "not found" in again.stderr
    # the engine kept the image: the function's version still runs it
    assert _invoke(srv, "img-kept", {"still": 1})["result"] == {"got": {"still": 1}, "uid": "65534"}
