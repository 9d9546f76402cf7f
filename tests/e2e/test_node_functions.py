"""Node.js functions (`--runtime node20`) through the real server, CLI and HTTP API."""

from __future__ import annotations

import json

from tests.helpers import Server, code, make_zip, wait_for

NODE = ("--runtime", "node20")

HELLO = {
    "index.js": code("""
    let calls = 0;
    exports.main = async (payload, context) => {
      calls += 1;
      console.log('hello from node', payload && payload.name);
      console.error('calls so far', calls);
      return { hello: (payload && payload.name) || 'world', calls, fn: context.functionName };
    };
""")
}

IS_NUMBER = {
    "index.js": code("""
    const isNumber = require('is-number');
    exports.main = (p) => ({ checks: p.map((v) => isNumber(v)) });
"""),
    "package.json": json.dumps({"name": "checker", "dependencies": {"is-number": "7.0.0"}}),
}


def test_deploy_invoke_and_warm_instance(server: Server, deploy) -> None:
    name = deploy(HELLO, *NODE, "--memory", "128")
    shown = server.cli_json("function-show", name)
    assert shown["state"] == "ready" and shown["runtime"] == "node20"
    assert shown["handler"] == "index.main"
    assert "no package.json dependencies" in shown["build_log"]
    assert "runtime" in server.cli("function-show", name).stdout

    first = server.cli_json("invoke", name, "--payload", '{"name": "node"}')
    assert first["status"] == "succeeded", first
    assert first["result"] == {"hello": "node", "calls": 1, "fn": name}
    assert first["cold_start"] is True and first["init_ms"] > 0
    second = server.cli_json("invoke", name, "--payload", "{}")
    assert second["result"]["calls"] == 2 and second["cold_start"] is False
    record = server.cli_json("invocation-show", second["id"])
    assert record["stdout"] == "hello from node undefined\n"
    assert record["stderr"] == "calls so far 2\n"
    assert record["peak_memory_kb"] > 0


def test_error_has_js_type_and_stack(server: Server, deploy) -> None:
    name = deploy({"index.js": "exports.main = (p) => {\n  return p.nope.deeper;\n};\n"}, *NODE)
    done = server.cli("invoke", name, check=False)
    assert done.returncode == 1 and "TypeError" in done.stderr
    record = server.cli_json("invocation-list", name)[0]
    assert record["status"] == "failed" and record["error"]["type"] == "TypeError"
    assert "/code/index.js:2" in record["error"]["traceback"]


def test_async_invocation_and_timeout(server: Server, deploy) -> None:
    name = deploy(
        {
            "index.js": code("""
            exports.main = async (p) => {
              if (p.wait) await new Promise(() => setInterval(() => {}, 1000));
              return { got: p };
            };
        """)
        },
        *NODE,
        "--timeout",
        "1",
    )
    invocation_id = server.cli("invoke", name, "--payload", '{"k": 1}', "--async").stdout.strip()
    assert len(invocation_id) == 32
    shown = wait_for(
        lambda: (
            (r := server.cli_json("invocation-show", invocation_id))["status"]
            not in ("queued", "running")
            and r
        ),
        what="the async invocation to finish",
    )
    assert shown["status"] == "succeeded" and shown["result"] == {"got": {"k": 1}}
    late = json.loads(
        server.cli("invoke", name, "--payload", '{"wait": true}', "-o", "json", check=False).stdout
    )
    assert late["status"] == "timed_out" and late["error"]["type"] == "TimedOut"
    assert server.cli_json("invoke", name, "--payload", "{}")["status"] == "succeeded"


def test_npm_dependency_is_installed_once_and_shared(server: Server, deploy) -> None:
    first = deploy(IS_NUMBER, *NODE)
    answer = server.cli_json("invoke", first, "--payload", '[5, "5", "x", null]')
    assert answer["result"] == {"checks": [True, True, False, False]}, answer
    log = server.cli_json("function-show", first)["build_log"]
    assert "npm install" in log and "reused from cache" not in log

    # the same dependency set, written differently: built once, reused
    same = {**IS_NUMBER, "package.json": '{"dependencies": {"is-number": "7.0.0"}, "version": "2"}'}
    second = deploy(same, *NODE)
    assert "reused from cache" in server.cli_json("function-show", second)["build_log"]
    assert server.cli_json("invoke", second, "--payload", "[1]")["result"] == {"checks": [True]}


def test_bad_dependency_fails_the_build_and_the_old_version_serves(
    server: Server, deploy, tmp_path
) -> None:
    name = deploy(HELLO, *NODE)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(
        make_zip(
            {**HELLO, "package.json": '{"dependencies": {"pratai-no-such-package-zzz": "1.0.0"}}'}
        )
    )
    done = server.cli("function-update", name, "--file", str(bad), check=False)
    assert done.returncode != 0 and "build of version 2 failed" in done.stderr
    shown = server.cli_json("function-show", name)
    assert shown["state"] == "build_failed" and shown["active_version"] == 1
    assert "404" in shown["build_log"] and "pratai-no-such-package-zzz" in shown["build_log"]
    assert server.cli_json("invoke", name, "--payload", '{"name": "still"}')["result"]["hello"] == (
        "still"
    )


def test_update_keeps_the_runtime(server: Server, deploy, tmp_path) -> None:
    name = deploy(HELLO, *NODE)
    v2 = tmp_path / "v2.zip"
    v2.write_bytes(make_zip({"index.js": "exports.main = () => ({ version: 2 });\n"}))
    updated = server.cli_json("function-update", name, "--file", str(v2))
    assert updated["runtime"] == "node20" and updated["active_version"] == 2
    assert server.cli_json("invoke", name)["result"] == {"version": 2}
    server.cli("function-update", name, "--file", str(v2), "--runtime", "node20")
    changed = server.cli("function-update", name, "--runtime", "python", check=False)
    assert changed.returncode != 0 and "runtime cannot change" in changed.stderr


def test_bad_node_packages_and_runtimes_are_refused(server: Server) -> None:
    with server.http() as http:

        def create(files: dict[str, str | bytes], runtime: str = "node20"):
            return http.post(
                "/v1/functions",
                data={"name": "bad-node", "runtime": runtime},
                files={"file": ("f.zip", make_zip(files))},
            )

        before = http.get("/v1/functions").json()
        unknown = create(HELLO, runtime="cobol")
        assert unknown.status_code == 400, unknown.text
        assert unknown.json()["error"] == "invalid_input"
        assert "python, node20" in unknown.json()["message"]

        missing = create({"main.js": "exports.main = () => 1;\n"})
        assert missing.status_code == 400 and "no index.js" in missing.json()["message"]
        no_main = create({"index.js": "exports.handler = () => 1;\n"})
        assert no_main.status_code == 400
        assert "does not export 'main'" in no_main.json()["message"]
        bad_json = create({**HELLO, "package.json": "{oops"})
        assert bad_json.status_code == 400 and "package.json" in bad_json.json()["message"]
        # a Python zip is not a Node.js one
        python = create({"main.py": "def main(p):\n    return p\n"})
        assert python.status_code == 400
        assert http.get("/v1/functions").json() == before


def test_load_error_is_reported_at_the_first_call(server: Server, deploy) -> None:
    name = deploy(
        {"index.js": "module.exports = require('./impl');\n", "impl.js": "exports.other = 1;\n"},
        *NODE,
    )
    record = json.loads(server.cli("invoke", name, "-o", "json", check=False).stdout)
    assert record["status"] == "failed" and record["error"]["type"] == "TypeError"
    assert "does not export a function" in record["error"]["message"]
