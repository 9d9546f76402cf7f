"""Every bad input gets a clear 4xx (or CLI error) and changes nothing."""

from __future__ import annotations

import io
import zipfile

import httpx
import pytest

from tests.helpers import Server, make_zip

GOOD = {"main.py": "def main(p):\n    return p\n"}


def _bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("main.py", GOOD["main.py"])
        archive.writestr("zeros.bin", b"\0" * (300 * 1024 * 1024))
    return buffer.getvalue()


BAD_PACKAGES = {
    "not a zip": (b"this is not a zip file", "not a zip"),
    "empty": (b"", "empty"),
    "dot-dot path": (make_zip({**GOOD, "../evil.py": "x = 1"}), ".."),
    "absolute path": (make_zip({**GOOD, "/etc/evil.py": "x = 1"}), "absolute"),
    "no handler": (make_zip({"README.md": "hi", "lib.py": "x = 1"}), "handler"),
    "syntax error": (make_zip({"main.py": "def main(p):\n    return (\n\nx = [\n"}), "main.py"),
}


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return _bomb()


def _create(http: httpx.Client, name: str, package: bytes) -> httpx.Response:
    return http.post("/v1/functions", data={"name": name}, files={"file": ("f.zip", package)})


@pytest.mark.parametrize("case", sorted(BAD_PACKAGES))
def test_bad_packages_are_refused_and_change_nothing(server: Server, case: str) -> None:
    package, expected = BAD_PACKAGES[case]
    with server.http() as http:
        before = http.get("/v1/functions").json()
        answer = _create(http, "bad-package", package)
        assert answer.status_code == 400, answer.text
        body = answer.json()
        assert body["error"] == "invalid_package"
        assert expected in body["message"].lower() or expected in body["message"]
        assert http.get("/v1/functions").json() == before


def test_syntax_error_names_file_and_line(server: Server) -> None:
    package = make_zip({"main.py": "def main(p):\n    return p\n\ndef broken(:\n    pass\n"})
    with server.http() as http:
        message = _create(http, "syntax", package).json()["message"]
    assert "main.py" in message and "line 4" in message


def test_zip_bomb_is_refused(server: Server, bomb: bytes) -> None:
    with server.http() as http:
        answer = _create(http, "bomb", bomb)
    assert answer.status_code in (400, 413)
    assert "bomb" in answer.json()["message"] or "limit" in answer.json()["message"]


def test_cli_reports_bad_package_with_nonzero_exit(server: Server, tmp_path) -> None:
    path = tmp_path / "bad.zip"
    path.write_bytes(b"nope")
    done = server.cli("function-create", "cli-bad", "--file", str(path), check=False)
    assert done.returncode != 0
    assert done.stderr.startswith("error:") and "not a zip" in done.stderr
    missing = server.cli(
        "function-create", "cli-bad", "--file", str(tmp_path / "nope.zip"), check=False
    )
    assert missing.returncode != 0 and "cannot read" in missing.stderr


@pytest.mark.parametrize("name", ["Upper", "-dash", "has space", "a" * 64, "dot.name", ""])
def test_names_must_be_dns_labels(server: Server, name: str) -> None:
    with server.http() as http:
        answer = _create(http, name, make_zip(GOOD))
    assert answer.status_code in (400, 422)
    assert "name" in answer.json()["message"]


def test_duplicate_name_is_a_conflict(server: Server, deploy) -> None:
    name = deploy(GOOD)
    with server.http() as http:
        answer = _create(http, name, make_zip(GOOD))
    assert answer.status_code == 409 and "already exists" in answer.json()["message"]


def test_unknown_function_is_404(server: Server) -> None:
    with server.http() as http:
        for method, path in [
            ("GET", "/v1/functions/ghost"),
            ("POST", "/v1/functions/ghost/invoke"),
            ("DELETE", "/v1/functions/ghost"),
            ("GET", "/v1/invocations/ghost"),
        ]:
            answer = http.request(method, path)
            assert answer.status_code == 404, (method, path)
            assert "not found" in answer.json()["message"]
    done = server.cli("invoke", "ghost", check=False)
    assert done.returncode != 0 and "not found" in done.stderr


def test_payload_over_the_limit_is_413(server: Server, deploy) -> None:
    name = deploy(GOOD)
    with server.http() as http:
        answer = http.post(f"/v1/functions/{name}/invoke", content=b"x" * (300 * 1024))
        assert answer.status_code == 413
        assert "limit" in answer.json()["message"]
        assert http.get("/v1/invocations", params={"function": name}).json() == []


def test_bad_api_key_is_401(server: Server) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer pk_0000.nope"},
        {"Authorization": "Basic x"},
        {"Authorization": f"Bearer {server.api_key}x"},
    ):
        answer = httpx.get(server.url + "/v1/functions", headers=headers)
        assert answer.status_code == 401
        assert answer.json()["error"] == "unauthorized"
    env = {**server.env, "PRATAI_URL": server.url, "PRATAI_API_KEY": "pk_bad.key"}
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "pratai", "function-list"], env=env, capture_output=True, text=True
    )
    assert done.returncode != 0 and "invalid API key" in done.stderr
