"""Deploy, update, roll back and delete functions through the CLI and HTTP, on a real server."""

from __future__ import annotations

import json

from tests.helpers import Server, code, make_zip, start_server, wait_for

HELLO = {
    "main.py": code("""
    def main(payload):
        return {"hello": (payload or {}).get("name", "world"), "version": 1}
""")
}


def test_create_invoke_show_list_delete(server: Server, deploy, tmp_path) -> None:
    name = deploy(HELLO, "--description", "says hello", "--memory", "128", "--timeout", "30")

    shown = server.cli_json("function-show", name)
    assert shown["state"] == "ready"
    assert shown["description"] == "says hello"
    assert shown["memory_mb"] == 128 and shown["handler"] == "main.main"
    assert shown["provisioned"] == {"cpu_weight": 100, "cpus_max": 1.0}
    assert "weight 100 (100 = 128 MB), at most 1 CPU\n" in server.cli("function-show", name).stdout

    out = server.cli("invoke", name, "--payload", '{"name": "pratai"}').stdout
    assert json.loads(out) == {"hello": "pratai", "version": 1}

    listed = server.cli("function-list").stdout
    assert name in listed and "says hello" in listed
    assert any(f["name"] == name for f in server.cli_json("function-list"))

    assert "deleted" in server.cli("function-delete", name).stdout
    gone = server.cli("function-show", name, check=False)
    assert gone.returncode != 0 and "not found" in gone.stderr


def test_dependency_from_pypi_is_installed_once_and_shared(server: Server, deploy) -> None:
    files = {
        "main.py": code("""
            import six
            def main(payload):
                return {"six": six.__version__, "text": six.ensure_str(b"ok")}
        """),
        "requirements.txt": "six==1.16.0\n",
    }
    first = deploy(files)
    assert server.cli_json("invoke", first)["result"] == {"six": "1.16.0", "text": "ok"}
    log = server.cli_json("function-show", first)["build_log"]
    assert "six" in log

    second = deploy({**files, "requirements.txt": "# same set\nsix==1.16.0\n"})
    assert "reused from cache" in server.cli_json("function-show", second)["build_log"]
    assert server.cli_json("invoke", second)["status"] == "succeeded"


def test_update_makes_versions_and_rollback_serves_an_old_one(server: Server, deploy, tmp_path):
    name = deploy(HELLO)
    v2 = tmp_path / "v2.zip"
    v2.write_bytes(make_zip({"main.py": "def main(payload):\n    return {'version': 2}\n"}))
    updated = server.cli_json("function-update", name, "--file", str(v2))
    assert updated["active_version"] == 2
    assert server.cli_json("invoke", name)["result"] == {"version": 2}

    versions = server.cli_json("function-versions", name)
    assert [v["version"] for v in versions] == [1, 2]
    assert [v["active"] for v in versions] == [False, True]
    assert "* 2" in server.cli("function-versions", name).stdout

    server.cli("function-rollback", name, "--version", "1")
    assert server.cli_json("invoke", name)["result"]["version"] == 1
    missing = server.cli("function-rollback", name, "--version", "9", check=False)
    assert missing.returncode != 0 and "no version 9" in missing.stderr


def test_failed_build_keeps_the_previous_version_serving(server: Server, deploy, tmp_path):
    name = deploy(HELLO)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(make_zip({**HELLO, "requirements.txt": "pratai-no-such-package-xyz==9.9\n"}))
    done = server.cli("function-update", name, "--file", str(bad), check=False)
    assert done.returncode != 0
    assert "build of version 2 failed" in done.stderr

    shown = server.cli_json("function-show", name)
    assert shown["state"] == "build_failed"
    assert "pratai-no-such-package-xyz" in shown["build_log"]
    assert shown["active_version"] == 1
    assert server.cli_json("invoke", name)["result"]["version"] == 1


def test_no_wait_returns_while_building(server: Server, tmp_path) -> None:
    path = tmp_path / "slow.zip"
    path.write_bytes(make_zip({**HELLO, "requirements.txt": "idna==3.7\n"}))
    created = server.cli_json("function-create", "nowait-fn", "--file", str(path), "--no-wait")
    assert created["state"] in ("building", "ready")
    early = server.cli("invoke", "nowait-fn", check=False)
    if created["state"] == "building" and early.returncode != 0:
        assert "no ready version" in early.stderr


def test_handler_override_and_aws_style_handler(server: Server, deploy) -> None:
    files = {
        "app.py": code("""
        def handle(event, context):
            return {"event": event, "fn": context.function_name}
    """)
    }
    name = deploy(files, "--handler", "app.handle")
    result = server.cli_json("invoke", name, "--payload", '{"a": 1}')["result"]
    assert result == {"event": {"a": 1}, "fn": name}


def test_non_json_payload_arrives_as_bytes(server: Server, deploy) -> None:
    name = deploy(
        {"main.py": "def main(p):\n    return {'type': type(p).__name__, 'len': len(p)}\n"}
    )
    with server.http() as http:
        answer = http.post(
            f"/v1/functions/{name}/invoke",
            content=b"\x00\x01binary",
            headers={"Content-Type": "application/octet-stream"},
        ).json()
    assert answer["result"] == {"type": "bytes", "len": 8}


def test_openapi_and_docs_are_served(server: Server) -> None:
    with server.http() as http:
        spec = http.get("/openapi.json").json()
        assert "/v1/functions/{name}/invoke" in spec["paths"]
        assert http.get("/docs").status_code == 200


def test_build_interrupted_by_a_crash_finishes_after_restart(tmp_path, make_zip_file) -> None:
    server = start_server(tmp_path)
    try:
        path = make_zip_file(
            {
                "main.py": code("""
                    import idna
                    def main(p):
                        return idna.encode('bücher.de').decode()
                """),
                "requirements.txt": "idna==3.7\n",
            }
        )
        created = server.cli_json("function-create", "resumed", "--file", str(path), "--no-wait")
        server.kill()
        server.start()
        # (the version's state and the function's active version are two writes)
        shown = wait_for(
            lambda: (
                (f := server.cli_json("function-show", "resumed"))["state"] != "building"
                and (f["state"] != "ready" or f["active_version"] is not None)
                and f
            ),
            timeout=120,
            what="the interrupted build to finish",
        )
        assert created["state"] in ("building", "ready")
        assert shown["state"] == "ready" and shown["active_version"] == 1
        assert server.cli_json("invoke", "resumed")["result"] == "xn--bcher-kva.de"
    finally:
        server.stop()
