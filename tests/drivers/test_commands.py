"""One-shot commands in a real bubblewrap sandbox: exit codes, streaming output and limits."""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pratai.drivers.base import InstanceSpec
from pratai.drivers.commands import CommandResult, run_command
from pratai.drivers.process import ProcessDriver
from pratai.settings import Settings
from tests.helpers import wait_for_async


@pytest.fixture
def folder() -> Iterator[Path]:
    """World-readable: the sandbox runs as an unprivileged host uid."""
    root = Path(tempfile.mkdtemp(prefix="pratai-test-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[ProcessDriver]:
    settings = Settings(home=tmp_path / "home")
    yield ProcessDriver(settings)
    if not settings.sandbox_dir.is_relative_to(settings.home):  # /var/tmp, as tmp_path is private
        shutil.rmtree(settings.sandbox_dir, ignore_errors=True)


def spec(folder: Path, memory_mb: int = 128, **env: str) -> InstanceSpec:
    return InstanceSpec(
        key=f"cmd-test-{folder.name}",
        code_dir=folder,
        env_dir=None,
        handler="",
        memory_mb=memory_mb,
        env=env,
    )


async def run(
    driver: ProcessDriver, folder: Path, argv: list[str], stdin: bytes = b"", **kw: object
) -> tuple[CommandResult, dict[str, bytes]]:
    out: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def sink(name: str, chunk: bytes) -> None:
        out[name] += chunk

    timeout = float(kw.pop("timeout", 30.0))  # type: ignore[arg-type]
    memory = int(kw.pop("memory_mb", 128))  # type: ignore[call-overload]
    result = await run_command(driver, spec(folder, memory, **kw), argv, stdin, timeout, sink)  # type: ignore[arg-type]
    return result, out


async def test_stdin_env_exit_code_and_python_on_path(driver, folder) -> None:
    script = "import os, sys; print(sys.stdin.read().upper(), os.environ['K']); sys.exit(3)"
    result, out = await run(driver, folder, ["python", "-c", script], b"hello", K="V")
    assert (result.status, result.exit_code) == ("failed", 3)
    assert result.error is not None and "exited with code 3" in result.error["message"]
    assert out["stdout"] == b"HELLO V\n"
    ok, out = await run(driver, folder, ["sh", "-c", "echo out; echo err >&2"])
    assert (ok.status, ok.exit_code, ok.error) == ("succeeded", 0, None)
    assert (out["stdout"], out["stderr"]) == (b"out\n", b"err\n")


async def test_output_reaches_the_sink_while_the_command_runs(driver, folder) -> None:
    """The command prints, then waits for a file that the test writes only once it has seen
    that output: the command can only finish if its output streamed."""
    go = folder / "go"
    seen = asyncio.Event()

    def sink(name: str, chunk: bytes) -> None:
        if b"started" in chunk:
            seen.set()

    script = "echo started; while [ ! -e /code/go ]; do sleep 0.02; done; echo done"
    running = asyncio.create_task(
        run_command(driver, spec(folder), ["sh", "-c", script], b"", 30.0, sink)
    )
    await asyncio.wait_for(seen.wait(), 20)
    assert not running.done()
    go.write_text("")
    result = await running
    assert result.status == "succeeded"


async def test_timeout_kills_the_sandbox(driver, folder) -> None:
    result, _ = await run(driver, folder, ["sleep", "60"], timeout=0.5)
    assert result.status == "timed_out" and result.exit_code is None
    assert result.error is not None and result.error["type"] == "TimedOut"


async def test_cancelling_kills_the_command(driver, folder) -> None:
    task = asyncio.create_task(
        run_command(driver, spec(folder), ["sleep", "3599"], b"", 60.0, lambda n, c: None)
    )
    await wait_for_async(_sleepers, timeout=20, interval=0.01, what="the command to start")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _sleepers() == []


def _sleepers() -> list[Path]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes() == b"sleep\x003599\x00":
                found.append(proc)
        except OSError:
            pass
    return found


async def test_memory_limit(driver, folder) -> None:
    hog = "x = bytearray(300 * 1024 * 1024); print(len(x))"
    result, out = await run(driver, folder, ["python", "-c", hog], memory_mb=64)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error["type"] in ("MemoryLimitExceeded", "NonZeroExit")
    assert b"314572800" not in out["stdout"]


async def test_no_network_and_no_host_files(driver, folder) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        probe = (
            "import socket, os\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=2); print('reached')\n"
            "except OSError as e:\n"
            "    print('no network')\n"
            "print(os.path.exists('/root'), os.path.exists('/etc/shadow'))\n"
        )
        result, out = await run(driver, folder, ["python", "-c", probe])
    assert result.status == "succeeded"
    assert out["stdout"] == b"no network\nFalse False\n"
