"""What every `Driver` promises (pratai/drivers/base.py), run against each: the process driver
in real bubblewrap sandboxes, the same with every instance a claimed spare sandbox
(pratai/drivers/spares.py), and the fake driver's plain child processes. What only a sandbox
does (isolation, cgroups, uids, network) is in tests/drivers/test_process.py and
tests/drivers/test_spares.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import textwrap
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from pratai.drivers.base import Driver, Instance, InstanceSpec
from pratai.drivers.fake import FakeDriver
from pratai.drivers.process import ProcessDriver
from pratai.drivers.spares import Shape
from pratai.errors import SandboxError
from pratai.settings import Settings
from tests.helpers import wait_for_async

Start = Callable[..., Awaitable[Instance]]
NO_BWRAP = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    s = Settings(home=tmp_path / "home", max_output_bytes=1000, max_result_bytes=10_000)
    yield s
    if not s.sandbox_dir.is_relative_to(s.home):  # /var/tmp, as tmp_path is private
        shutil.rmtree(s.sandbox_dir, ignore_errors=True)


class FromSpares:
    """The process driver, each start waiting first for a spare of its shape to claim."""

    name = "process"

    def __init__(self, settings: Settings) -> None:
        self.driver = ProcessDriver(settings, spares=1)

    async def start(self, spec: InstanceSpec) -> Instance:
        spares = self.driver.spares
        spares.refill(Shape.of(spec))
        await wait_for_async(lambda: spares.stats()["waiting"], what="a spare sandbox")
        claimed = spares.stats()["claimed"]
        try:
            return await self.driver.start(spec)
        finally:
            assert spares.stats()["claimed"] == claimed + 1

    def features(self) -> dict[str, Any]:
        return self.driver.features()

    async def close(self) -> None:
        await self.driver.close()


@pytest_asyncio.fixture(
    loop_scope="function",
    params=[
        pytest.param("process", marks=NO_BWRAP),
        pytest.param("spares", marks=NO_BWRAP),
        pytest.param("fake", marks=pytest.mark.fast),
    ],
)
async def driver(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Driver]:
    kinds: dict[str, Callable[[Settings], Driver]] = {
        "process": ProcessDriver,
        "spares": FromSpares,
        "fake": FakeDriver,
    }
    made = kinds[request.param](settings)
    yield made
    await made.close()


@pytest_asyncio.fixture(loop_scope="function")
async def start(driver: Driver, code_root: Path) -> AsyncIterator[Start]:
    """Starts an instance of `source` as main.py; every one is stopped after the test."""
    instances: list[Instance] = []
    folders = (code_root / f"fn{n}" for n in range(1000))

    async def go(source: str, handler: str = "main.main", **kw: object) -> Instance:
        code = next(folders)
        code.mkdir(mode=0o755)
        (code / "main.py").write_text(textwrap.dedent(source))
        (code / "main.py").chmod(0o644)
        options = {"memory_mb": 128, **kw}
        spec = InstanceSpec(f"contract:{code.name}", code, None, handler, **options)  # type: ignore[arg-type]
        instance = await driver.start(spec)
        instances.append(instance)
        return instance

    yield go
    for instance in instances:
        await instance.stop()


async def call(instance: Instance, payload: object = None, timeout_s: float = 5) -> object:
    """The handler's JSON answer to a JSON payload; fails on anything but success."""
    res = await instance.call(json.dumps(payload).encode(), "application/json", timeout_s)
    assert res.status == "succeeded" and res.result is not None, res.error
    return json.loads(res.result)


async def test_an_instance_imports_once_and_serves_many_calls(start: Start) -> None:
    counter = "calls = 0\ndef main(p):\n    global calls\n    calls += 1\n    return [calls, p]\n"
    instance = await start(counter)
    assert instance.alive and instance.init_ms > 0
    for n in range(1, 21):
        assert await call(instance, {"n": n}) == [n, {"n": n}]
    res = await instance.call(b"", "application/json", 5)
    assert res.duration_ms >= 0 and res.peak_memory_kb and res.peak_memory_kb > 1000


async def test_payloads_are_decoded_by_content_type(start: Start) -> None:
    instance = await start(
        "def main(p):\n    return [type(p).__name__, p if p is None else len(p)]\n"
    )
    for body, content_type, expected in (
        (b"\x00\xffraw", "application/octet-stream", ["bytes", 5]),
        (b"", "application/json; charset=utf-8", ["NoneType", None]),
        (b'{"a": 1}', "application/cloudevents+json", ["dict", 1]),
    ):
        res = await instance.call(body, content_type, 5)
        assert json.loads(res.result or "") == expected, content_type
    res = await instance.call(b"{not json", "application/json", 5)
    assert res.status == "failed" and res.error and res.error["type"] == "InvalidPayload"


async def test_an_aws_style_handler_gets_a_context(start: Start) -> None:
    source = """
        def handler(event, context):
            return [context.function_name, context.get_remaining_time_in_millis(), event]
    """
    instance = await start(source, handler="main.handler", name="tagger")
    name, left, event = await call(instance, {"k": "v"})  # type: ignore[misc]
    assert (name, event) == ("tagger", {"k": "v"}) and 0 < left <= 5000


async def test_an_exception_comes_back_as_type_message_traceback(start: Start) -> None:
    instance = await start("def main(p):\n    return 1 / 0\n")
    for _ in range(2):  # the instance stays warm after a user error
        res = await instance.call(b"null", "application/json", 5)
        assert res.status == "failed" and res.error is not None and instance.alive
        assert (res.error["type"], res.error["message"]) == (
            "ZeroDivisionError",
            "division by zero",
        )
        assert 'main.py", line 2, in main' in res.error["traceback"]
        assert "bootstrap.py" not in res.error["traceback"]


async def test_results_must_be_json_and_within_the_limit(start: Start) -> None:
    instance = await start("def main(p):\n    return {1, 2} if p == 'set' else 'x' * p\n")
    res = await instance.call(b'"set"', "application/json", 5)
    assert res.status == "failed" and res.error and res.error["type"] == "TypeError"
    assert "JSON" in res.error["message"]
    res = await instance.call(b"20000", "application/json", 5)
    assert res.status == "failed" and res.error and res.error["type"] == "ResultTooLarge"
    assert "10000 bytes" in res.error["message"] and res.result is None
    assert await call(instance, 3) == "xxx"


async def test_code_that_cannot_load_is_a_sandbox_error_with_the_users_error(
    start: Start,
) -> None:
    with pytest.raises(SandboxError) as info:
        await start("x = 1\ndef main(p):\n    return (\n")
    assert info.value.details["type"] == "SyntaxError"
    assert "main.py" in info.value.message and "line 3" in info.value.message
    assert 'main.py", line 3' in info.value.details["traceback"]
    with pytest.raises(SandboxError) as info:
        await start("print('loading')\ndef other(p):\n    return 1\n")
    assert info.value.details["type"] == "AttributeError" and "'main'" in info.value.message
    assert info.value.details["stdout"] == "loading\n"


async def test_output_is_captured_per_call_and_truncated(start: Start) -> None:
    source = """
        import os, sys
        print("loading")
        def main(p):
            print("out", p)
            print("err", p, file=sys.stderr)
            os.system("echo from-child")
            if p == "big":
                print("x" * 5000)
    """
    instance = await start(source)
    res = await instance.call(b'"a"', "application/json", 5)
    assert (res.stdout, res.stderr) == ("out a\nfrom-child\n", "err a\n")
    res = await instance.call(b'"b"', "application/json", 5)
    assert res.stdout == "out b\nfrom-child\n"
    res = await instance.call(b'"big"', "application/json", 5)
    assert res.stdout.endswith("\n[output truncated at 1000 bytes]\n") and len(res.stdout) < 1100


async def test_memory_over_the_limit_is_reported(start: Start) -> None:
    instance = await start("def main(p):\n    return len(b'1' * (512 << 20))\n", memory_mb=64)
    res = await instance.call(b"", "application/json", 10)
    assert res.status == "failed" and res.error is not None
    assert res.error["type"] == "MemoryLimitExceeded"
    assert "memory limit of 64 MB" in res.error["message"]
    fresh = await start("def main(p):\n    return len(b'1' * (8 << 20))\n", memory_mb=64)
    assert await call(fresh) == 8 << 20


async def test_a_crash_reports_the_exit_code_and_kills_the_instance(start: Start) -> None:
    instance = await start("import os\ndef main(p):\n    os._exit(3)\n")
    res = await instance.call(b"", "application/json", 5)
    assert res.status == "failed" and res.error and res.error["type"] == "InstanceCrashed"
    assert "code 3" in res.error["message"] and not instance.alive
    again = await instance.call(b"", "application/json", 5)
    assert again.status == "failed" and again.error and again.error["type"] == "InstanceCrashed"


async def test_a_timeout_kills_the_instance(start: Start) -> None:
    instance = await start("def main(p):\n    while True:\n        pass\n")
    res = await instance.call(b"", "application/json", 0.5)
    assert res.status == "timed_out" and res.error and res.error["type"] == "TimedOut"
    assert 400 < res.duration_ms < 3000 and "0.5 s" in res.error["message"]
    assert not instance.alive
    assert (await instance.call(b"", "application/json", 5)).status == "failed"


async def test_the_environment_is_the_specs_and_little_else(start: Start) -> None:
    instance = await start(
        "import os\ndef main(p):\n    return dict(os.environ)\n", env={"API_TOKEN": "s3cret"}
    )
    env = await call(instance)
    assert isinstance(env, dict) and env["API_TOKEN"] == "s3cret"
    assert not any(k.startswith(("PRATAI", "PYTEST")) for k in env)


async def test_large_payloads_and_results_round_trip(start: Start) -> None:
    instance = await start("def main(p):\n    return len(p) if len(p) > 9999 else p.decode() * 2\n")
    res = await instance.call(b"y" * 3000, "text/plain", 5)
    assert res.result == '"' + "y" * 6000 + '"'
    res = await instance.call(b"z" * (5 << 20), "application/octet-stream", 5)
    assert res.result == str(5 << 20)


async def test_stop_is_idempotent_and_ends_the_instance(start: Start) -> None:
    instance = await start("def main(p):\n    return 1\n")
    await instance.stop()
    await instance.stop()
    assert not instance.alive
    assert (await instance.call(b"", "application/json", 5)).status == "failed"


def test_features_name_the_driver(driver: Driver) -> None:
    assert driver.features()["driver"] == driver.name


def _with_cmdline(token: str) -> list[int]:
    """The pids of processes whose command line holds `token`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and token.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


async def test_a_start_cancelled_while_loading_leaves_nothing_running(start: Start) -> None:
    """A cold start given up (its call cancelled) stops what it started: a child process the
    import started too (a spare learns its environment late, so the token is in a command
    line rather than the environment)."""
    token = f"canary-{uuid.uuid4().hex}"
    loading = asyncio.ensure_future(
        start(
            "import subprocess\n"
            f"subprocess.run(['/bin/sh', '-c', 'sleep 60; : {token}'])\n"
            "def main(p):\n    return 1\n",
        )
    )
    await wait_for_async(lambda: _with_cmdline(token), timeout=30, what="the instance to start")
    loading.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await loading
    await wait_for_async(lambda: not _with_cmdline(token), timeout=30, what="its processes to end")
