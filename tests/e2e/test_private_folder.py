"""Pratai installed in, and keeping its data in, a folder other users cannot traverse.

Run as root, the sandbox is uid 65534; a clone in /root or in a `mktemp -d` folder (both 0700)
must still run functions and jobs, so nothing the sandbox mounts may come from the install."""

from __future__ import annotations

import base64
import os
import shutil
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import pytest

import pratai
from tests.helpers import Server, code, make_zip, start_server

pytestmark = [
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="only root hands sandboxes to another uid"),
]

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    """`pratai serve` running a copy of the package from a 0700 folder, data in another."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    assert not private.stat().st_mode & stat.S_IXOTH
    source = private / "src"
    shutil.copytree(
        Path(pratai.__file__).parent,
        source / "pratai",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    env = {"PYTHONPATH": str(source)}
    if "PYTHONDONTWRITEBYTECODE" in os.environ:  # the compiled files show which copy ran
        env["PYTHONDONTWRITEBYTECODE"] = ""
    server = start_server(private, cwd=source, **env)
    yield server, source / "pratai"
    server.stop()


def test_functions_and_jobs_run_from_a_private_clone(
    private_server: tuple[Server, Path], tmp_path: Path
) -> None:
    server, package = private_server
    assert (package / "__pycache__").is_dir(), "the server must run the private copy"

    python_zip = tmp_path / "python.zip"
    python_zip.write_bytes(
        make_zip({"main.py": code("def main(event, context):\n    return {'got': event}\n")})
    )
    server.cli("function-create", "private-py", "--file", str(python_zip))
    done = server.cli_json("invoke", "private-py", "--payload", '{"n": 1}')
    assert done["status"] == "succeeded", done
    assert done["result"] == {"got": {"n": 1}}

    if shutil.which("node") is not None:
        node_zip = tmp_path / "node.js.zip"
        node_zip.write_bytes(make_zip({"index.js": "exports.main = (p) => ({ node: p.n });\n"}))
        server.cli("function-create", "private-js", "--file", str(node_zip), "--runtime", "node20")
        done = server.cli_json("invoke", "private-js", "--payload", '{"n": 2}')
        assert done["status"] == "succeeded", done
        assert done["result"] == {"node": 2}

    ran = server.cli("job-submit", "--follow", "--", "sh", "-c", "echo from a job", check=False)
    assert (ran.returncode, ran.stdout) == (0, "from a job\n"), ran.stderr

    with server.http() as http:
        body = cloudpickle.dumps({"fn": pow, "args": (2, 10), "kwargs": {}})
        result = http.post(
            "/v1/jobs/callable",
            params={"python": PYTHON, "wait": 60},
            content=body,
            headers={"content-type": "application/vnd.pratai.pickle"},
        ).json()
    assert result["status"] == "succeeded", result
    assert cloudpickle.loads(base64.b64decode(result["result"])) == 1024
