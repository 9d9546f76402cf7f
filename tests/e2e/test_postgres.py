"""The same platform on PostgreSQL: deploy, invoke sync and async, survive a restart."""

from __future__ import annotations

import psycopg

from tests.helpers import start_server, wait_for


def test_platform_runs_on_postgresql(tmp_path, pg_url, make_zip_file) -> None:
    server = start_server(tmp_path, PRATAI_DATABASE_URL=pg_url)
    try:
        path = make_zip_file({"main.py": "def main(p):\n    return {'twice': p['n'] * 2}\n"})
        server.cli("function-create", "double", "--file", str(path))
        assert server.cli_json("invoke", "double", "--payload", '{"n": 4}')["result"] == {
            "twice": 8
        }
        queued = server.cli("invoke", "double", "--payload", '{"n": 5}', "--async").stdout.strip()
        server.kill()
        server.start()
        record = wait_for(
            lambda: (
                (r := server.cli_json("invocation-show", queued))["status"] == "succeeded" and r
            ),
            what="the async invocation after a restart",
        )
        assert record["result"] == {"twice": 10}
        with psycopg.connect(pg_url) as db:
            count = db.execute("SELECT count(*) FROM invocations").fetchone()
        assert count is not None and count[0] == 2
    finally:
        server.stop()
