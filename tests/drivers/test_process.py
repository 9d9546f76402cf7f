"""The process driver in real bubblewrap sandboxes, no mocks: what a sandbox adds (non-root, /code,
isolation, cgroups, kills). What every driver does is in tests/contracts/test_driver_contract.py."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from pratai.drivers.base import InstanceSpec
from pratai.drivers.instance import ProcessInstance
from pratai.drivers.process import ProcessDriver
from pratai.errors import SandboxError
from pratai.settings import Settings

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")

Start = Callable[..., Awaitable[ProcessInstance]]


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    s = Settings(home=tmp_path / "home", max_output_bytes=1000, max_result_bytes=10_000)
    yield s
    if not s.sandbox_dir.is_relative_to(s.home):  # /var/tmp, as tmp_path is private
        shutil.rmtree(s.sandbox_dir, ignore_errors=True)


@pytest.fixture
def driver(settings: Settings) -> ProcessDriver:
    return ProcessDriver(settings)


@pytest_asyncio.fixture(loop_scope="function")
async def start(driver: ProcessDriver, code_root: Path) -> AsyncIterator[Start]:
    instances: list[ProcessInstance] = []
    count = 0

    async def go(
        source: str, handler: str = "main.main", memory_mb: int = 128, **kw: object
    ) -> ProcessInstance:
        nonlocal count
        count += 1
        code = code_root / f"fn{count}"
        code.mkdir(mode=0o755)
        (code / "main.py").write_text(textwrap.dedent(source))
        (code / "main.py").chmod(0o644)
        spec = InstanceSpec(f"test:{count}", code, None, handler, memory_mb, **kw)  # type: ignore[arg-type]
        inst = await driver.start(spec)
        instances.append(inst)
        return inst

    yield go
    for inst in instances:
        await inst.stop()


def sandbox_pids(inst: ProcessInstance) -> list[int]:
    """The instance's processes (the outer bwrap and everything in its cgroup)."""
    pids = {inst.pid}
    if inst._cgroup is not None:
        pids.update(inst._cgroup.pids())
    return sorted(pids)


def running(pids: list[int]) -> list[int]:
    """Those of `pids` that still run (zombies waiting for host init to reap them do not)."""
    alive = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
            alive.append(pid)
    return alive


async def test_returns_json_and_keeps_state_between_calls(start: Start) -> None:
    inst = await start(
        """
        import os
        calls = 0
        def main(payload):
            global calls
            calls += 1
            return {"echo": payload, "calls": calls, "uid": os.getuid()}
        """
    )
    assert inst.alive and inst.init_ms > 0
    for n in range(1, 51):
        res = await inst.call(json.dumps({"x": n}).encode(), "application/json", 5)
        assert res.status == "succeeded", res.error
        assert res.result is not None
        body = json.loads(res.result)
        assert body == {"echo": {"x": n}, "calls": n, "uid": 1000}  # imported once, non-root
    assert res.peak_memory_kb and res.peak_memory_kb > 1000
    assert res.duration_ms < 50


async def test_exception_reports_type_message_traceback(start: Start) -> None:
    inst = await start("def main(p):\n    return 1 / 0\n")
    res = await inst.call(b"null", "application/json", 5)
    assert res.status == "failed" and res.error is not None
    assert res.error["type"] == "ZeroDivisionError"
    assert res.error["message"] == "division by zero"
    assert 'File "/code/main.py", line 2, in main' in res.error["traceback"]
    assert "bootstrap.py" not in res.error["traceback"]
    assert inst.alive  # a user exception keeps the instance warm
    res = await inst.call(b"null", "application/json", 5)
    assert res.error and res.error["type"] == "ZeroDivisionError"


async def test_syntax_error_names_file_and_line(start: Start) -> None:
    with pytest.raises(SandboxError) as info:
        await start("x = 1\ndef main(p):\n    return (\n")
    err = info.value
    assert err.details["type"] == "SyntaxError"
    assert "main.py" in err.message and "line 3" in err.message
    assert 'File "/code/main.py", line 3' in err.details["traceback"]


async def test_output_captured_per_call_and_truncated(start: Start) -> None:
    inst = await start(
        """
        import os, sys
        print("loading")  # import-time output does not leak into calls
        def main(p):
            print("out", p)
            print("err", p, file=sys.stderr)
            os.system("echo from-child")  # a child process writes to the same descriptor
            os.write(1, b"raw\\n")
            if p == "big":
                print("x" * 5000)
            return None
        """
    )
    res = await inst.call(b'"a"', "application/json", 5)
    assert res.stdout == "out a\nfrom-child\nraw\n" and res.stderr == "err a\n"
    res = await inst.call(b'"b"', "application/json", 5)
    assert res.stdout == "out b\nfrom-child\nraw\n"  # per call, not accumulated
    res = await inst.call(b'"big"', "application/json", 5)
    assert res.stdout.endswith("\n[output truncated at 1000 bytes]\n")
    assert len(res.stdout) < 1100


async def test_memory_hog_is_killed_and_reported(start: Start) -> None:
    inst = await start(
        "def main(p):\n    x = b'1' * (512 << 20)\n    return len(x)\n", memory_mb=64
    )
    res = await inst.call(b"", "application/json", 10)
    assert res.status == "failed" and res.error is not None
    assert res.error["type"] == "MemoryLimitExceeded"
    assert "memory limit of 64 MB" in res.error["message"]
    assert not inst.alive
    again = await inst.call(b"", "application/json", 5)
    assert again.status == "failed"
    fresh = await start("def main(p):\n    return len(b'1' * (8 << 20))\n", memory_mb=64)
    res = await fresh.call(b"", "application/json", 5)
    assert res.status == "succeeded" and res.result == str(8 << 20)


async def test_timeout_kills_instance(start: Start) -> None:
    inst = await start("def main(p):\n    while True:\n        pass\n")
    pids = sandbox_pids(inst)
    res = await inst.call(b"", "application/json", 1)
    assert res.status == "timed_out" and 900 < res.duration_ms < 3000
    assert not inst.alive
    assert running(pids) == []


async def test_fork_bomb_is_contained(start: Start, settings: Settings) -> None:
    inst = await start(
        """
        import os, subprocess
        def main(p):
            procs = []
            for _ in range(500):
                procs.append(subprocess.Popen(["sleep", "30"]))
            return len(procs)
        """
    )
    res = await inst.call(b"", "application/json", 10)
    assert res.status == "failed" and res.error is not None
    assert res.error["type"] in ("BlockingIOError", "OSError")  # fork: resource unavailable
    pids = sandbox_pids(inst)
    if inst._cgroup is not None:
        assert settings.max_pids - 5 <= len(pids) <= settings.max_pids  # held at pids.max
    assert subprocess.run(["true"]).returncode == 0  # the host can still start processes
    await inst.stop()
    assert running(pids) == []  # every sleep went with the sandbox
    fresh = await start("def main(p):\n    return 'ok'\n")
    assert (await fresh.call(b"", "application/json", 5)).result == '"ok"'


async def test_os_fork_loop_is_contained(start: Start) -> None:
    inst = await start(
        """
        import os
        def main(p):
            while True:
                os.fork()
        """
    )
    res = await inst.call(b"", "application/json", 10)
    assert res.status == "failed" and res.error and res.error["type"] == "BlockingIOError"
    pids = sandbox_pids(inst)
    await inst.stop()
    assert running(pids) == []


async def test_filesystem_is_isolated(start: Start, tmp_path: Path) -> None:
    secret = tmp_path / "private.txt"  # like the data folder: never mounted
    secret.write_text("top secret")
    inst = await start(
        """
        import os
        def main(p):
            out = {}
            for path in p:
                try:
                    with open(path) as f:
                        out[path] = f.read()[:20]
                except OSError as exc:
                    out[path] = type(exc).__name__
            try:
                open("/code/new.py", "w")
                out["write_code"] = "ok"
            except OSError as exc:
                out["write_code"] = type(exc).__name__
            out["root"] = sorted(os.listdir("/"))
            return out
        """
    )
    paths = ["/etc/shadow", "/etc/passwd", str(secret), "/etc/hosts"]
    res = await inst.call(json.dumps(paths).encode(), "application/json", 5)
    out = json.loads(res.result or "")
    assert out["/etc/shadow"] == "FileNotFoundError"
    assert out["/etc/passwd"] == "FileNotFoundError"
    assert out[str(secret)] == "FileNotFoundError"
    assert out["write_code"] in ("OSError", "PermissionError")
    assert "home" not in out["root"] and "root" not in out["root"]


NET = """
import socket
def main(p):
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
        return "connected"
    except OSError as exc:
        return type(exc).__name__
"""


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


async def test_no_network_unless_asked(start: Start) -> None:
    inst = await start(NET)
    res = await inst.call(b"", "application/json", 5)
    assert res.result == '"ConnectionRefusedError"'  # a private loopback with nothing on it
    assert _port_open(5432), "PostgreSQL must listen on 127.0.0.1:5432 (.ci/run starts it)"
    inst = await start(NET, network=True)
    res = await inst.call(b"", "application/json", 5)
    assert res.result == '"connected"'


async def test_env_and_virtualenv(start: Start, driver: ProcessDriver, code_root: Path) -> None:
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    env_dir = code_root / "venv"
    made = subprocess.run(
        [uv, "venv", "--python", "/usr/bin/python3", str(env_dir)], capture_output=True
    )
    assert made.returncode == 0, f"uv venv failed: {made.stderr.decode()}"
    site = next(env_dir.glob("lib/python3*/site-packages"))
    (site / "extra_dep.py").write_text("VALUE = 42\n")
    code = code_root / "venvfn"
    code.mkdir(mode=0o755)
    (code / "main.py").write_text(
        "import os, sys, extra_dep\n"
        "def main(p):\n"
        "    return [extra_dep.VALUE, sys.prefix, os.environ.get('GREETING')]\n"
    )
    subprocess.run(["chmod", "-R", "a+rX", str(code_root)], check=True)
    spec = InstanceSpec("venv:1", code, env_dir, "main.main", 128, env={"GREETING": "hi"})
    inst = await driver.start(spec)
    try:
        res = await inst.call(b"", "application/json", 5)
        assert json.loads(res.result or "") == [42, str(env_dir), "hi"], res.error
    finally:
        await inst.stop()


async def test_stop_is_idempotent_and_cleans_cgroup(start: Start, driver: ProcessDriver) -> None:
    inst = await start("def main(p):\n    return 1\n")
    cgroup = inst._cgroup
    await inst.stop()
    await inst.stop()
    assert not inst.alive
    if cgroup is not None:
        assert not any(d.exists() for d in cgroup.dirs)
    res = await inst.call(b"", "application/json", 5)
    assert res.status == "failed"


def test_features(driver: ProcessDriver) -> None:
    f = driver.features()
    assert f["driver"] == "process" and f["bwrap"]
    assert f["memory_limit"] in ("cgroup", "rlimit") and f["network_isolation"] is True


async def test_missing_bwrap_says_how_to_install(driver: ProcessDriver, code_root: Path) -> None:
    driver.bwrap = None
    with pytest.raises(SandboxError, match="bubblewrap"):
        await driver.start(InstanceSpec("x:1", code_root, None, "main.main", 64))


async def test_rlimit_fallback_without_cgroups(start: Start, driver: ProcessDriver) -> None:
    driver.cgroups.version = None  # as on a host where cgroups are not writable
    inst = await start(
        "def main(p):\n    x = b'1' * (512 << 20)\n    return len(x)\n", memory_mb=64
    )
    res = await inst.call(b"", "application/json", 10)
    assert res.status == "failed" and res.error and res.error["type"] == "MemoryLimitExceeded"
    assert inst.alive  # a MemoryError leaves the runtime usable
    assert res.peak_memory_kb is not None


async def test_env_is_clean_and_secrets_stay_off_the_command_line(
    start: Start, driver: ProcessDriver, code_root: Path
) -> None:
    inst = await start(
        "import os\ndef main(p):\n    return dict(os.environ)\n", env={"API_TOKEN": "s3cret"}
    )
    env = json.loads((await inst.call(b"", "application/json", 5)).result or "")
    assert env["API_TOKEN"] == "s3cret" and env["HOME"] == "/tmp"
    assert not any(k.startswith(("PRATAI", "PYTEST", "VIRTUAL_ENV")) for k in env)
    assert b"s3cret" not in Path(f"/proc/{inst.pid}/cmdline").read_bytes()


async def test_unreachable_code_folder_is_explained(driver: ProcessDriver, tmp_path: Path) -> None:
    if not driver.drop_privileges:
        pytest.skip("only when the platform runs as root and drops to uid 65534")
    private = tmp_path / "private"
    (private / "code").mkdir(parents=True)
    private.chmod(0o700)
    with pytest.raises(SandboxError, match=r"cannot reach .*/private/code: .* not searchable"):
        await driver.start(InstanceSpec("x:1", private / "code", None, "main.main", 64))
