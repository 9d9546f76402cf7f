"""Progress on long work (uploads, builds, image loads): drawn for a person at a terminal (the
CLI run on a pseudo-terminal), never for a script (no terminal, or `-o json`)."""

from __future__ import annotations

import json
import os
import pty
import secrets
import select
import subprocess
import sys
import time
from pathlib import Path

from pratai.cli.progress import Progress
from tests.helpers import Server, make_zip

SOURCE = "def main(payload):\n    return payload\n"
MB = 1024 * 1024


def in_terminal(server: Server, *args: str, timeout: float = 120) -> tuple[int, str]:
    """`pratai ARGS` with stdin, stdout and stderr on a pseudo-terminal, as in a person's
    shell (the user and credentials of `server.cli`): its exit code and all it wrote."""
    env = {k: v for k, v in server.env.items() if k not in ("PRATAI_URL", "PRATAI_API_KEY")}
    env |= {"HOME": str(server.home.parent / "user"), "TERM": "xterm"}
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "pratai", *args],
        stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True,
    )  # fmt: skip
    os.close(slave)
    written = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side closed with the process
                break
            if not chunk:
                break
            written += chunk
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
    return code, written.decode()


def big_zip(tmp_path: Path, name: str) -> Path:
    """A package of about 3 MB that does not compress, so the upload takes many reads."""
    path = tmp_path / f"{name}.zip"
    path.write_bytes(make_zip({"main.py": SOURCE, "blob.bin": secrets.token_bytes(3 * MB)}))
    return path


def name() -> str:
    return f"progress-{secrets.token_hex(4)}"


def test_an_upload_shows_the_bytes_sent_at_a_terminal(server: Server, tmp_path: Path) -> None:
    fn = name()
    package = big_zip(tmp_path, fn)
    code, written = in_terminal(server, "function-create", fn, "--file", str(package))
    assert code == 0, written
    assert f"uploading {package.name} [" in written and "0 B / 3.0 MB   0%" in written
    assert "3.0 MB sent; waiting for the server" in written  # all of it went
    progress, _, after = written.rpartition("\r\x1b[K")  # the line is erased, then the answer
    assert "uploading" in progress and "uploading" not in after
    assert after.startswith("name ") and f"{fn}\r\n" in after and "state " in after

    code, written = in_terminal(server, "function-update", fn, "--file", str(package))
    assert code == 0 and "3.0 MB sent" in written, written


def test_no_progress_without_a_terminal_or_with_json(server: Server, tmp_path: Path) -> None:
    fn = name()
    package = big_zip(tmp_path, fn)
    piped = server.cli("function-create", fn, "--file", str(package))
    assert piped.stderr == ""  # exactly as before: the answer on stdout, nothing else
    assert piped.stdout.startswith("name ") and "\r" not in piped.stdout

    code, written = in_terminal(server, "function-update", fn, "--file", str(package),
                                "-o", "json")  # fmt: skip
    assert code == 0, written
    assert "uploading" not in written and "\x1b" not in written
    assert json.loads(written.replace("\r\n", "\n"))["name"] == fn  # nothing but the JSON


def test_an_image_load_shows_its_upload_then_what_the_server_says(
    server: Server, tmp_path: Path
) -> None:
    archive = tmp_path / "not-an-image.tar"
    archive.write_bytes(secrets.token_bytes(2 * MB))
    code, written = in_terminal(server, "image-load", str(archive))
    assert code == 1  # the server refuses it, after the whole of it was sent
    assert "uploading not-an-image.tar [" in written and "2.0 MB sent" in written
    assert written.rpartition("\r\x1b[K")[2].startswith("error: ")

    piped = server.cli("image-load", str(archive), check=False)
    assert piped.returncode == 1 and piped.stderr.startswith("error: ")
    assert "uploading" not in piped.stderr + piped.stdout


def test_a_build_shows_a_spinner_and_the_time_it_takes(server: Server, tmp_path: Path) -> None:
    """A package with requirements builds an environment (from the package index)."""
    fn = name()
    package = tmp_path / f"{fn}.zip"
    # A version no other test asks for (comments do not change the requirements' hash), so
    # this build is not served from the cache of another test's environment.
    requirement = "six==1.15.0\n"
    package.write_bytes(make_zip({"main.py": SOURCE, "requirements.txt": requirement}))
    code, written = in_terminal(server, "function-create", fn, "--file", str(package))
    assert code == 0, written
    assert f"building {fn} v1... 0s" in written
    assert written.rpartition("\r\x1b[K")[2].startswith("name ")

    again = tmp_path / "again.zip"
    again.write_bytes(make_zip({"main.py": SOURCE, "requirements.txt": requirement + "#\n"}))
    quiet = server.cli("function-update", fn, "--file", str(again))
    assert quiet.stderr == "" and "building" not in quiet.stdout


def test_the_bar_fills_as_the_bytes_go() -> None:
    """What a slow upload shows between its first and last line."""
    progress = Progress("uploading f.zip", total=3 * MB)
    progress.advance(3 * MB // 2)
    assert progress.line() == ("uploading f.zip [############............] 1.5 MB / 3.0 MB  50%")
    progress.advance(3 * MB // 2)
    assert progress.line().endswith("uploading f.zip: 3.0 MB sent; waiting for the server... 0s")
