"""Functions and events through the SDK, against a real server."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

import pratai
from tests.helpers import Server, code, make_zip, wait_for

RESIZE = code(
    """
    def main(payload):
        if payload.get("fail"):
            raise ValueError("cannot resize to " + str(payload["w"]))
        return {"w": payload["w"], "h": payload["w"] // 2}
    """
)


def _name(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{time.monotonic_ns() % 10**9}"


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "resize"
    (folder / "__pycache__").mkdir(parents=True)
    (folder / "main.py").write_text(RESIZE)
    (folder / "__pycache__" / "junk.pyc").write_bytes(b"not python")
    return folder


def test_client_reads_the_cli_credentials(server: Server, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PRATAI_URL", raising=False)
    monkeypatch.delenv("PRATAI_API_KEY", raising=False)
    monkeypatch.delenv("PRATAI_CREDENTIALS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PRATAI_HOME", str(server.home))
    with pratai.Client() as client:
        assert client.url == server.url
        assert client.request("GET", "/v1/whoami")["project"] == "default"
    # a `pratai login` wins over the server's own file, for the SDK as for the CLI
    viewer = server.cli_json("key-create", "--role", "viewer")
    login = tmp_path / ".config" / "pratai" / "credentials.json"
    login.parent.mkdir(parents=True)
    login.write_text(json.dumps({"url": server.url, "api_key": viewer["token"]}))
    with pratai.Client() as client:
        assert client.request("GET", "/v1/whoami")["key_id"] == viewer["id"]


def test_create_from_a_folder_then_invoke(client: pratai.Client, tmp_path: Path) -> None:
    name = _name("resize")
    fn = client.functions.create(name, path=_folder(tmp_path), memory=256)
    assert fn["state"] == "ready" and fn["memory_mb"] == 256
    assert client.functions.invoke(name, {"w": 100}) == {"w": 100, "h": 50}

    inv = client.functions.invoke_async(name, {"w": 100})
    assert inv.id
    assert inv.result(timeout=30) == {"w": 100, "h": 50}
    assert inv.status == "succeeded"


def test_create_from_a_zip_file(client: pratai.Client, tmp_path: Path) -> None:
    name = _name("zipped")
    package = tmp_path / "f.zip"
    package.write_bytes(make_zip({"main.py": RESIZE}))
    client.functions.create(name, path=package, timeout=10)
    assert client.functions.invoke(name, {"w": 8}) == {"w": 8, "h": 4}


def test_fresh_per_call_is_a_function_option(client: pratai.Client, tmp_path: Path) -> None:
    name = _name("fresh")
    fn = client.functions.create(name, path=_folder(tmp_path), fresh_per_call=True)
    assert fn["fresh_per_call"] is True
    assert client.functions.update(name, fresh_per_call=False)["fresh_per_call"] is False


def test_a_failed_invocation_raises_the_remote_error(client: pratai.Client, tmp_path: Path) -> None:
    name = _name("failing")
    client.functions.create(name, path=_folder(tmp_path))
    with pytest.raises(pratai.RemoteError) as caught:
        client.functions.invoke(name, {"w": 7, "fail": True})
    assert caught.value.type == "ValueError"
    assert caught.value.message == "cannot resize to 7"
    assert 'raise ValueError("cannot resize to "' in caught.value.traceback

    with pytest.raises(pratai.RemoteError, match="cannot resize to 9"):
        client.functions.invoke_async(name, {"w": 9, "fail": True}).result(timeout=30)


def test_a_failed_build_raises(client: pratai.Client, tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "main.py").write_text("def main(p):\n    return p\n")
    (folder / "requirements.txt").write_text("this-package-does-not-exist-pratai==0.0.1\n")
    with pytest.raises(pratai.BuildFailed, match="build of"):
        client.functions.create(_name("broken"), path=folder)


def test_unknown_function_is_an_api_error(client: pratai.Client) -> None:
    with pytest.raises(pratai.ApiError) as caught:
        client.functions.invoke("no-such-function-here", {})
    assert caught.value.status == 404


def test_publish_runs_subscribers(client: pratai.Client, tmp_path: Path) -> None:
    topic = _name("orders")
    folder = tmp_path / "echo"
    folder.mkdir()
    (folder / "main.py").write_text("def main(payload):\n    return payload\n")
    name = _name("sub")
    client.functions.create(name, path=folder, event="message", type="async", subscribe_to=topic)
    event_id = client.events.publish(topic, {"id": 1})
    assert event_id
    assert client.events.publish(topic, {"id": 2}, id="sdk-e-2") == "sdk-e-2"

    def finished() -> list[dict]:
        listed = client.request("GET", "/v1/invocations", params={"function": name})
        done = [i for i in listed if i["status"] == "succeeded"]
        return done if len(done) == 2 else []

    results = {(i["event_id"], i["result"]["id"]) for i in wait_for(finished, what="subscribers")}
    assert results == {(event_id, 1), ("sdk-e-2", 2)}


def test_a_keep_alive_connection_the_server_closed_is_replaced(client: pratai.Client) -> None:
    from pratai.sdk.transport import _closed_by_peer

    client.list_jobs(limit=1)
    conn = client._http._local.conn
    wait_for(
        lambda: conn.sock is None or _closed_by_peer(conn.sock),
        timeout=60,
        what="the server to close the idle keep-alive connection",
    )
    assert client.list_jobs(limit=1) is not None  # reconnects instead of failing


def test_an_unreachable_server_is_an_api_error() -> None:
    from tests.helpers import free_port

    with pytest.raises(pratai.ApiError, match="cannot reach Pratai") as caught:
        pratai.Client(f"http://127.0.0.1:{free_port()}", "pk_x.y").list_jobs()
    assert caught.value.status == 0
