"""Secrets: injected as environment variables, encrypted at rest, never shown back, rotatable."""

from __future__ import annotations

import glob
import uuid

from cryptography.fernet import Fernet

from tests.helpers import Server, code, make_zip, start_server, wait_for

USES_SECRET = code("""
    import os
    def main(p):
        value = os.environ.get("DB_PASSWORD", "")
        print("connecting with", value)
        return {"length": len(value), "has_token": "API_TOKEN" in os.environ}
""")


def test_secret_reaches_the_function_and_never_comes_back(server: Server, deploy) -> None:
    value = f"pw-{uuid.uuid4().hex}"
    name = f"db_password_{uuid.uuid4().hex[:6]}"
    server.cli("secret-create", name, "--value", value)
    fn = deploy({"main.py": USES_SECRET}, "--secret", f"DB_PASSWORD={name}")
    answer = server.cli_json("invoke", fn)
    assert answer["result"] == {"length": len(value), "has_token": False}
    assert answer["stdout"] == "connecting with ***\n"
    outputs = [
        server.cli("secret-list", "-o", "json").stdout,
        server.cli("function-show", fn, "-o", "json").stdout,
        server.cli("invocation-show", answer["id"], "-o", "json").stdout,
        server.cli("logs", fn).stdout,
        server.cli("audit-list", "-o", "json").stdout,
    ]
    for text in outputs:
        assert value not in text
    assert name in outputs[0]
    assert server.cli_json("function-show", fn)["secrets"] == {"DB_PASSWORD": name}
    for path in server.home.glob("*.sqlite3*"):
        assert value.encode() not in path.read_bytes()


def test_unknown_secret_is_refused_and_nothing_is_created(server: Server, tmp_path) -> None:
    path = tmp_path / "f.zip"
    path.write_bytes(make_zip({"main.py": USES_SECRET}))
    done = server.cli(
        "function-create", "nosecret", "--file", str(path), "--secret", "X=missing", check=False
    )
    assert done.returncode != 0 and "secret 'missing' not found" in done.stderr
    assert all(f["name"] != "nosecret" for f in server.cli_json("function-list"))


def test_rotating_the_secrets_key(tmp_path, make_zip_file) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    server = start_server(tmp_path, PRATAI_SECRETS_KEY=old)
    try:
        server.cli("secret-create", "DB_PASSWORD", "--value", "rotate-me-please")
        server.cli(
            "function-create",
            "rot",
            "--file",
            str(make_zip_file({"main.py": USES_SECRET})),
            "--secret",
            "DB_PASSWORD",
        )
        assert server.cli_json("invoke", "rot")["result"]["length"] == 16
        for keys in (f"{new},{old}", new):  # rotate, then drop the old key
            server.stop()
            server.env["PRATAI_SECRETS_KEY"] = keys
            server.start()
            assert server.cli_json("invoke", "rot")["result"]["length"] == 16, keys
        server.stop()
        server.env["PRATAI_SECRETS_KEY"] = old  # the old key alone no longer opens it
        server.start()
        failed = server.cli("invoke", "rot", check=False)
        assert failed.returncode != 0 and "no longer configured" in failed.stderr
    finally:
        server.stop()


def test_secret_as_a_file_only_the_sandbox_can_read(server: Server, deploy) -> None:
    value = f"tls-{uuid.uuid4().hex}"
    name = f"tls_key_{uuid.uuid4().hex[:6]}"
    server.cli("secret-create", name, "--value", value)
    reader = code(f"""
        import os
        def main(p):
            with open("/run/secrets/{name}") as f:
                content = f.read()
            try:
                open("/run/secrets/{name}", "w")
                writable = True
            except OSError:
                writable = False
            return {{"length": len(content), "writable": writable, "env": "{name}" in os.environ}}
    """)
    fn = deploy({"main.py": reader}, "--secret-file", name)
    result = server.cli_json("invoke", fn)["result"]
    assert result == {"length": len(value), "writable": False, "env": False}
    files = f"/dev/shm/pratai-secrets-*/{name}"
    assert glob.glob(files)  # the warm instance's, in memory
    server.cli("function-delete", fn)  # stops its instances, whose secret files go with them
    wait_for(lambda: not glob.glob(files), what="the secret files to be removed")
