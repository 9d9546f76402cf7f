"""The API does what its OpenAPI document says: schemathesis, with every check, against a real
`pratai serve` of its own (the fuzzer creates projects, users, keys, secrets and jobs)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Server, start_server

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")

HERE = Path(__file__).parent
ROOT = HERE.parent.parent

# Operations whose input is a file the schema can only call "binary" (a zip with a handler
# that compiles, an image archive) or a string only a parser can judge (a cron expression):
# schema-valid requests to them may be refused with 400, and only 400. Every other check,
# and every other status, stays as strict as for the rest of the API.
FREE_FORM_INPUT = [
    ("POST", "/v1/functions"),
    ("PATCH", "/v1/functions/{name}"),
    ("POST", "/v1/images"),
    ("POST", "/v1/triggers"),
    ("PUT", "/v1/saved-jobs/{name}/schedule"),
]
# schemathesis's own default for this check (5xx are failures of not_a_server_error)
POSITIVE_DEFAULT = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]


def _config() -> str:
    # no cache: each run stands on its own, not on failures an earlier run remembered
    sections = ["[cache]\nenabled = false\n"]
    for method, path in FREE_FORM_INPUT:
        statuses = ", ".join(f'"{s}"' for s in [*POSITIVE_DEFAULT, "400"])
        sections.append(
            f'[[operations]]\ninclude-method = "{method}"\ninclude-path = "{path}"\n'
            f"[operations.checks.positive_data_acceptance]\nexpected-statuses = [{statuses}]\n"
        )
    return "\n".join(sections)


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[Server]:
    base = Path(tempfile.mkdtemp(prefix="pratai-fuzz-", dir="/var/tmp"))
    base.chmod(0o755)
    server = start_server(base, PRATAI_IDLE_TIMEOUT="5")
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


def test_the_api_does_what_its_openapi_document_says(fuzzed: Server, tmp_path: Path) -> None:
    with fuzzed.http() as http:  # an admin key of its own, so the run can tell it apart
        answer = http.post("/v1/keys", json={"role": "admin", "name": "schemathesis"})
        assert answer.status_code == 201, answer.text
        key_id, token = answer.json()["id"], answer.json()["token"]
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config())
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.api.schemathesis_hooks",
        "PRATAI_FUZZ_KEY_ID": key_id,
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("st")),
            "--config-file",
            str(config),
            "--no-color",
            "run",
            f"{fuzzed.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            "all",
            # the body is a pickle of Python code: the SDK's tests send real ones
            "--exclude-path",
            "/v1/jobs/callable",
            "--max-examples",
            "30",
            "--seed",
            "9",
            # one worker: CPython 3.11's ast.parse, which Hypothesis calls to describe its
            # filters, is not thread-safe ("AST constructor recursion depth mismatch")
            "--workers",
            "1",
            "--request-timeout",
            "30",
        ],
        cwd=tmp_path,  # where schemathesis may write its files
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    report = done.stdout[-20000:] + done.stderr[-4000:]
    assert done.returncode == 0, report
    # every operation but the excluded one was tested, as the admin it was given
    selected = re.search(r"Selected: (\d+)/(\d+)", done.stdout)
    assert selected and int(selected[1]) == int(selected[2]) - 1, report
    assert f"Tested: {selected[1]}" in done.stdout, report
    assert "Missing authentication" not in done.stdout, report
    with httpx.Client(base_url=fuzzed.url, headers={"Authorization": f"Bearer {token}"}) as http:
        assert http.get("/v1/whoami").status_code == 200, "the run revoked its own key"
