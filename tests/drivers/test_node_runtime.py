"""The Node.js runtime under the process driver, in real bubblewrap sandboxes: no mocks. Each
test runs twice: in a sandbox started for the instance, and in a claimed spare sandbox.

No skips: a machine without bwrap or Node.js fails these tests.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from pratai.drivers.base import InstanceSpec
from pratai.drivers.instance import ProcessInstance
from pratai.drivers.process import ProcessDriver
from pratai.drivers.spares import Shape
from pratai.errors import SandboxError
from pratai.settings import Settings
from tests.helpers import wait_for_async

Start = Callable[..., Awaitable[ProcessInstance]]


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    s = Settings(home=tmp_path / "home", max_output_bytes=1000, max_result_bytes=10_000)
    yield s
    if not s.sandbox_dir.is_relative_to(s.home):  # /var/tmp, as tmp_path is private
        shutil.rmtree(s.sandbox_dir, ignore_errors=True)


@pytest_asyncio.fixture(loop_scope="function", params=[0, 1], ids=["started", "spare"])
async def driver(
    settings: Settings, request: pytest.FixtureRequest
) -> AsyncIterator[ProcessDriver]:
    driver = ProcessDriver(settings, spares=request.param)
    assert driver.bwrap, "bubblewrap is needed: apt-get install bubblewrap"
    assert Path(settings.sandbox_node).is_file(), "Node.js 20 is needed at PRATAI_SANDBOX_NODE"
    yield driver
    await driver.close()


def write_tree(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
        path.chmod(0o644)


@pytest_asyncio.fixture(loop_scope="function")
async def start(driver: ProcessDriver, code_root: Path) -> AsyncIterator[Start]:
    instances: list[ProcessInstance] = []
    count = 0

    async def go(
        source: str | dict[str, str],
        handler: str = "index.main",
        memory_mb: int = 128,
        env_dir: Path | None = None,
        **kw: object,
    ) -> ProcessInstance:
        nonlocal count
        count += 1
        code = code_root / f"fn{count}"
        write_tree(code, {"index.js": source} if isinstance(source, str) else source)
        spec = InstanceSpec(
            f"node-test:{count}",
            code,
            env_dir,
            handler,
            memory_mb,
            runtime="node20",
            name="demo",
            **kw,  # type: ignore[arg-type]
        )
        spares = driver.spares
        if spares.per_shape:
            spares.refill(Shape.of(spec, heap_flag=True))
            await wait_for_async(lambda: spares.stats()["waiting"], what="a spare sandbox")
        claimed = spares.stats()["claimed"]
        try:
            inst = await driver.start(spec)
        finally:
            assert spares.stats()["claimed"] == claimed + spares.per_shape
        instances.append(inst)
        return inst

    yield go
    for inst in instances:
        await inst.stop()


async def call(inst: ProcessInstance, payload: object = None, timeout: float = 5) -> object:
    res = await inst.call(json.dumps(payload).encode(), "application/json", timeout)
    assert res.status == "succeeded", res.error
    assert res.result is not None
    return json.loads(res.result)


async def test_sync_main_keeps_state_between_calls(start: Start) -> None:
    inst = await start(
        """
        let calls = 0;
        exports.main = (payload) => {
          calls += 1;
          return { echo: payload, calls, uid: process.getuid() };
        };
        """
    )
    assert inst.alive and inst.init_ms > 0
    for n in range(1, 31):
        assert await call(inst, {"x": n}) == {"echo": {"x": n}, "calls": n, "uid": 1000}
    res = await inst.call(b"{}", "application/json", 5)
    assert res.peak_memory_kb and res.peak_memory_kb > 1000


async def test_async_main_awaits_timers_and_promises(start: Start) -> None:
    inst = await start(
        """
        const { setTimeout: sleep } = require('timers/promises');
        module.exports.main = async function main(payload) {
          await sleep(20);
          const doubled = await Promise.all(payload.map(async (n) => n * 2));
          return { doubled };
        };
        """
    )
    for _ in range(3):
        assert await call(inst, [1, 2, 3]) == {"doubled": [2, 4, 6]}


async def test_returned_promise_and_undefined(start: Start) -> None:
    inst = await start(
        """
        exports.main = (p) => (p === 'none' ? undefined : Promise.resolve({ got: p }));
        """
    )
    assert await call(inst, "x") == {"got": "x"}
    assert await call(inst, "none") is None


async def test_context_and_aws_callback_style(start: Start) -> None:
    inst = await start(
        """
        exports.main = (event, context) => ({
          name: context.functionName,
          memory: context.memoryLimitInMB,
          id: context.awsRequestId.length,
          left: context.getRemainingTimeInMillis() > 1000,
        });
        """
    )
    assert await call(inst, {}) == {"name": "demo", "memory": 128, "id": 32, "left": True}
    cb2 = await start(
        {
            "cb.js": """
            exports.handler = (event, context, callback) => {
              setImmediate(() => callback(null, { cb: event.n + 1 }));
            };
            """
        },
        handler="cb.handler",
    )
    assert await call(cb2, {"n": 41}) == {"cb": 42}


async def test_payload_decoding(start: Start) -> None:
    inst = await start(
        """
        exports.main = (p) => [Buffer.isBuffer(p) ? 'buffer' : p === null ? 'null' : typeof p,
                               Buffer.isBuffer(p) ? p.length : p];
        """
    )
    res = await inst.call(b"\x00\xffraw", "application/octet-stream", 5)
    assert json.loads(res.result or "") == ["buffer", 5]
    res = await inst.call(b"", "application/json; charset=utf-8", 5)
    assert json.loads(res.result or "") == ["null", None]
    res = await inst.call(b'{"a": 1}', "application/cloudevents+json", 5)
    assert json.loads(res.result or "") == ["object", {"a": 1}]
    res = await inst.call(b"{nope", "application/json", 5)
    assert res.status == "failed" and res.error and res.error["type"] == "InvalidPayload"
    assert inst.alive


async def test_thrown_error_has_type_message_and_js_stack(start: Start) -> None:
    inst = await start(
        """
        function inner(p) {
          return p.missing.field;
        }
        exports.main = (p) => inner(p);
        """
    )
    res = await inst.call(b"{}", "application/json", 5)
    assert res.status == "failed" and res.error is not None
    assert res.error["type"] == "TypeError"
    assert "Cannot read properties of undefined" in res.error["message"]
    tb = res.error["traceback"]
    assert tb.startswith("TypeError: ") and "at inner (/code/index.js:2:" in tb
    assert "bootstrap.js" not in tb  # the runtime's own frames are hidden
    assert inst.alive and await call(inst, {"missing": {"field": 7}}) == 7


async def test_async_rejection_and_non_error_values(start: Start) -> None:
    inst = await start(
        """
        class QuotaError extends Error {
          constructor(m) { super(m); this.name = 'QuotaError'; }
        }
        exports.main = async (p) => {
          await null;
          if (p === 'custom') throw new QuotaError('over quota');
          if (p === 'string') throw 'plain string';
          if (p === 'object') throw { code: 42 };
          return 'ok';
        };
        """
    )
    res = await inst.call(b'"custom"', "application/json", 5)
    assert res.error and res.error["type"] == "QuotaError"
    assert (
        res.error["message"] == "over quota" and "QuotaError: over quota" in res.error["traceback"]
    )
    res = await inst.call(b'"string"', "application/json", 5)
    assert res.status == "failed" and res.error == {
        "type": "string",
        "message": "plain string",
        "traceback": "",
    }
    res = await inst.call(b'"object"', "application/json", 5)
    assert res.error and res.error["type"] == "Object" and "code: 42" in res.error["message"]
    assert await call(inst, "fine") == "ok"


async def test_error_thrown_later_in_a_timer_fails_the_call(start: Start) -> None:
    inst = await start(
        """
        exports.main = (p) => new Promise(() => {
          setTimeout(() => { throw new RangeError('from a timer'); }, 5);
        });
        """
    )
    res = await inst.call(b"{}", "application/json", 5)
    assert res.status == "failed" and res.error and res.error["type"] == "RangeError"
    assert res.error["message"] == "from a timer" and inst.alive


async def test_promise_that_can_never_settle(start: Start) -> None:
    inst = await start("exports.main = () => new Promise(() => {});\n")
    res = await inst.call(b"{}", "application/json", 5)
    assert res.status == "failed" and res.error and res.error["type"] == "PromiseNeverSettled"
    assert inst.alive


async def test_result_not_serialisable_or_too_large(start: Start) -> None:
    inst = await start(
        """
        exports.main = (p) => {
          if (p === 'bigint') return 10n;
          if (p === 'cycle') { const o = {}; o.self = o; return o; }
          if (p === 'function') return () => 1;
          return 'x'.repeat(20000);
        };
        """
    )
    for kind, text in (("bigint", "BigInt"), ("cycle", "circular"), ("function", "function")):
        res = await inst.call(json.dumps(kind).encode(), "application/json", 5)
        assert res.status == "failed" and res.error and res.error["type"] == "TypeError", kind
        assert "not JSON-serialisable" in res.error["message"] and text in res.error["message"]
    res = await inst.call(b'"big"', "application/json", 5)
    assert res.status == "failed" and res.error and res.error["type"] == "ResultTooLarge"
    assert "10000 bytes" in res.error["message"] and res.result is None


async def test_output_captured_per_call_and_truncated(start: Start) -> None:
    inst = await start(
        """
        console.log('loading');
        exports.main = (p) => {
          if (p.big) { process.stdout.write('y'.repeat(5000)); return 0; }
          console.log('out', p.n);
          console.error('err', p.n);
          process.stdout.write(Buffer.from('raw\\n'));
          return p.n;
        };
        """
    )
    first = await inst.call(b'{"n": 1}', "application/json", 5)
    assert first.stdout == "out 1\nraw\n" and first.stderr == "err 1\n"
    second = await inst.call(b'{"n": 2}', "application/json", 5)
    assert second.stdout == "out 2\nraw\n" and second.stderr == "err 2\n"
    big = await inst.call(b'{"big": true}', "application/json", 5)
    assert big.stdout.startswith("y" * 1000) and "[output truncated at 1000 bytes]" in big.stdout
    assert len(big.stdout) < 1100


async def test_load_errors_are_reported(start: Start) -> None:
    with pytest.raises(SandboxError) as missing:
        await start("exports.other = () => 1;\n")
    assert missing.value.details["type"] == "TypeError"
    assert 'does not export a function "main"' in missing.value.message
    assert "other" in missing.value.message

    with pytest.raises(SandboxError) as syntax:
        await start("console.log('before');\nexports.main = (p) => {\n  return p +;\n};\n")
    assert syntax.value.details["type"] == "SyntaxError"
    assert "/code/index.js:3" in syntax.value.details["traceback"]

    with pytest.raises(SandboxError) as thrown:
        await start("console.log('init output');\nthrow new Error('no config');\n")
    assert thrown.value.details["type"] == "Error"
    assert "no config" in thrown.value.message
    assert thrown.value.details["stdout"] == "init output\n"


async def test_es_module_and_node_modules(start: Start, code_root: Path) -> None:
    deps = code_root / "deps"
    write_tree(
        deps / "node_modules" / "shout",
        {
            "package.json": '{"name": "shout", "version": "1.0.0", "main": "index.js"}',
            "index.js": "module.exports = (s) => s.toUpperCase() + '!';\n",
        },
    )
    cjs = await start(
        "const shout = require('shout');\nexports.main = (p) => shout(p);\n", env_dir=deps
    )
    assert await call(cjs, "hi") == "HI!"
    esm = await start(
        {
            "index.mjs": """
            import shout from 'shout';
            export async function main(p) { return shout(p) + ' (esm)'; }
            """
        },
        env_dir=deps,
    )
    assert await call(esm, "yo") == "YO! (esm)"
    typed = await start(
        {
            "package.json": '{"type": "module"}',
            "index.js": "export const main = (p) => ({ esm: p });\n",
        }
    )
    assert await call(typed, 1) == {"esm": 1}


async def test_timeout_kills_instance(start: Start) -> None:
    inst = await start("exports.main = () => { for (;;) {} };\n")
    res = await inst.call(b"{}", "application/json", 1)
    assert res.status == "timed_out" and res.error and res.error["type"] == "TimedOut"
    assert not inst.alive
    waiting = await start("exports.main = () => new Promise((r) => setTimeout(r, 60000));\n")
    res = await waiting.call(b"{}", "application/json", 1)
    assert res.status == "timed_out" and not waiting.alive


HEAP_HOG = """
exports.main = () => {
  const keep = [];
  for (;;) keep.push({ filler: 'x'.repeat(64) + keep.length, n: keep.length });
};
"""


async def test_heap_growth_is_a_memory_limit_error(start: Start) -> None:
    inst = await start(HEAP_HOG, memory_mb=96)
    res = await inst.call(b"{}", "application/json", 30)
    assert res.status == "failed" and res.error and res.error["type"] == "MemoryLimitExceeded"
    assert "memory limit of 96 MB" in res.error["message"] and not inst.alive
    fresh = await start("exports.main = () => Buffer.alloc(8 << 20, 1).length;\n", memory_mb=96)
    assert await call(fresh) == 8 << 20


async def test_buffers_beyond_the_cgroup_are_a_memory_limit_error(start: Start) -> None:
    inst = await start(
        """
        exports.main = () => {
          const keep = [];
          for (let i = 0; i < 64; i++) keep.push(Buffer.alloc(16 << 20, 1));
          return keep.length;
        };
        """,
        memory_mb=96,
    )
    res = await inst.call(b"{}", "application/json", 30)
    assert res.status == "failed" and res.error and res.error["type"] == "MemoryLimitExceeded"


async def test_heap_limit_holds_without_cgroups(start: Start, driver: ProcessDriver) -> None:
    driver.cgroups.version = None  # as on a host where cgroups are not writable
    inst = await start(HEAP_HOG, memory_mb=96)
    res = await inst.call(b"{}", "application/json", 30)
    assert res.status == "failed" and res.error and res.error["type"] == "MemoryLimitExceeded"
    # V8's message is found after much other output on the sandbox's stderr, too
    noisy = await start(
        HEAP_HOG.replace(
            "exports.main = () => {",
            """exports.main = () => {
  require('child_process').execFileSync('/bin/sh', ['-c', 'yes noise | head -c 50000 >&2'],
    { stdio: ['ignore', 'ignore', 'inherit'] });""",
        ),
        memory_mb=96,
    )
    res = await noisy.call(b"{}", "application/json", 30)
    assert res.status == "failed" and res.error and res.error["type"] == "MemoryLimitExceeded"


async def test_filesystem_and_network_are_sandboxed(start: Start) -> None:
    inst = await start(
        """
        const fs = require('fs');
        exports.main = async () => {
          const out = { etc: fs.existsSync('/etc/shadow'), home: fs.existsSync('/root') };
          try { fs.writeFileSync('/code/x', '1'); out.code = 'written'; }
          catch (e) { out.code = e.code; }
          fs.writeFileSync('/tmp/scratch', 'ok');
          out.tmp = fs.readFileSync('/tmp/scratch', 'utf8');
          const signal = AbortSignal.timeout(2000);
          try { await fetch('http://1.1.1.1', { signal }); out.net = 'open'; }
          catch (e) { out.net = 'closed'; }
          return out;
        };
        """
    )
    assert await call(inst) == {
        "etc": False,
        "home": False,
        "code": "EROFS",
        "tmp": "ok",
        "net": "closed",
    }


async def test_unknown_runtime_is_refused(driver: ProcessDriver, code_root: Path) -> None:
    spec = InstanceSpec("x:1", code_root, None, "index.main", 64, runtime="cobol")
    with pytest.raises(SandboxError, match="no runtime 'cobol'"):
        await driver.start(spec)


async def test_large_payload_and_result_round_trip(start: Start) -> None:
    inst = await start("exports.main = (p) => (Buffer.isBuffer(p) ? p.length : p.s.repeat(2));\n")
    res = await inst.call(b"z" * (5 << 20), "application/octet-stream", 5)
    assert res.result == str(5 << 20)
    assert await call(inst, {"s": "y" * 3000}) == "y" * 6000


async def test_child_processes_run_without_the_protocol_pipes(start: Start) -> None:
    inst = await start(
        """
        const { execFileSync } = require('child_process');
        exports.main = () => execFileSync('/bin/ls', ['/proc/self/fd']).toString().split('\\n');
        """
    )
    fds = {fd for fd in await call(inst) if fd}  # type: ignore[union-attr]
    assert fds <= {"0", "1", "2", "3"}  # stdio, and ls's own directory handle


async def test_node_options_apply_with_spares_too(settings: Settings, code_root: Path) -> None:
    """NODE_OPTIONS is read by node as it starts, before a spare learns its environment: a
    function that sets it starts its own sandbox, and the option applies."""
    driver = ProcessDriver(settings, spares=1)
    try:
        code = code_root / "options"
        write_tree(code, {"index.js": "exports.main = () => Error.stackTraceLimit;\n"})
        spec = InstanceSpec(
            "node-test:options", code, None, "index.main", 128, runtime="node20",
            env={"NODE_OPTIONS": "--stack-trace-limit=3"},
        )  # fmt: skip
        driver.spares.refill(Shape.of(spec, heap_flag=True))
        await wait_for_async(lambda: driver.spares.stats()["waiting"], what="a spare sandbox")
        inst = await driver.start(spec)
        try:
            assert await call(inst) == 3
            assert driver.spares.stats()["claimed"] == 0
        finally:
            await inst.stop()
    finally:
        await driver.close()
