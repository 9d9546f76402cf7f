"""Jobs through the CLI and the HTTP API of a real server: commands, callables, saved jobs."""

from __future__ import annotations

import base64
import subprocess
import sys

import cloudpickle

from tests.helpers import Server, start_server, wait_for

PICKLE = {"content-type": "application/vnd.pratai.pickle"}
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def test_submit_with_stdin_and_env_then_show(server: Server, tmp_path) -> None:
    stdin = tmp_path / "in.txt"
    stdin.write_text("hello jobs")
    job_id = server.cli(
        "job-submit", "--runtime", f"python{PYTHON}", "--stdin-file", str(stdin),
        "--env", "K=V", "--",
        "python", "-c", "import os, sys; print(sys.stdin.read().upper(), os.environ['K'])",
    ).stdout.strip()  # fmt: skip
    done = wait_for(
        lambda: (
            (j := server.cli_json("job-show", job_id))["status"] != "queued"
            and j["status"] != "running"
            and j
        ),
        what="the job to finish",
    )
    assert (done["status"], done["exit_code"], done["stdout"]) == (
        "succeeded",
        0,
        "HELLO JOBS V\n",
    ), done
    assert done["duration_ms"] > 0
    shown = server.cli("job-show", job_id).stdout
    assert "exit code    0" in shown and "HELLO JOBS V" in shown
    assert job_id in server.cli("job-list").stdout


def test_follow_streams_output_and_exits_with_the_exit_code(server: Server) -> None:
    script = "echo first; echo oops >&2; exit 7"
    done = server.cli("job-submit", "--follow", "--", "sh", "-c", script, check=False)
    assert done.returncode == 7
    assert done.stdout == "first\n"
    assert "oops" in done.stderr and "exited with code 7" in done.stderr


def test_follow_shows_output_before_the_job_ends(server: Server, tmp_path) -> None:
    """The job waits for a cancel; the follower must print its first line before that."""
    job_id = server.cli("job-submit", "--", "sh", "-c", "echo ready; sleep 120").stdout.strip()
    follower = subprocess.Popen(
        [sys.executable, "-m", "pratai", "job-show", job_id, "--follow"],
        env={k: v for k, v in server.env.items() if k not in ("PRATAI_URL", "PRATAI_API_KEY")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline() == "ready\n"
        assert server.cli_json("job-show", job_id)["status"] == "running"
        assert "cancelled" in server.cli("job-cancel", job_id).stdout
        assert follower.wait(timeout=30) == 130
    finally:
        follower.kill()
    job = server.cli_json("job-show", job_id)
    assert job["status"] == "cancelled" and job["stdout"] == "ready\n"


def test_timeout_and_bad_input(server: Server) -> None:
    timed = server.cli(
        "job-submit", "--timeout", "0.5", "--follow", "--", "sleep", "30", check=False
    )
    assert timed.returncode == 124 and "timed_out" in timed.stderr
    missing = server.cli("job-submit", check=False)
    assert missing.returncode != 0
    with server.http() as http:
        for body, problem in (
            ({"command": []}, "needs a command"),
            ({"command": ["true"], "runtime": "cobol"}, "no runtime 'cobol'"),
            ({"command": ["true"], "memory_mb": 1}, "memory"),
            ({"command": ["true"], "env": {"A=B": "x"}}, "environment variable"),
            ({"command": ["true"], "stdin": "not base64!"}, "base64"),
        ):
            answer = http.post("/v1/jobs", json=body)
            assert answer.status_code == 400, body
            assert problem in answer.json()["message"]
        assert http.get("/v1/jobs/nope").status_code == 404


def test_saved_job_run_schedule_and_delete(server: Server) -> None:
    name = "nightly-report"
    server.cli("job-save", name, "--env", "WHO=cron", "--", "sh", "-c", "echo report for $WHO")
    job_id = server.cli("job-run", name).stdout.strip()
    done = wait_for(
        lambda: (j := server.cli_json("job-show", job_id))["status"] == "succeeded" and j,
        what="the saved job's run",
    )
    assert done["stdout"] == "report for cron\n" and done["saved_name"] == name
    assert "next run" in server.cli("job-schedule", name, "--cron", "0 * * * *").stdout
    listed = server.cli_json("job-saved")
    mine = next(s for s in listed if s["name"] == name)
    assert mine["cron"] == "0 * * * *" and mine["env_names"] == ["WHO"]
    assert "cron" not in str(mine["env_names"]) and mine["next_run"] > done["created_at"]
    bad = server.cli("job-schedule", name, "--cron", "every day", check=False)
    assert bad.returncode != 0 and "invalid cron" in bad.stderr
    assert "no longer scheduled" in server.cli("job-schedule", name, "--off").stdout
    server.cli("job-delete", name)
    gone = server.cli("job-run", name, check=False)
    assert gone.returncode != 0 and "not found" in gone.stderr


def _submit(http, fn, *args, **params):
    body = cloudpickle.dumps({"fn": fn, "args": args, "kwargs": {}})
    return http.post(
        "/v1/jobs/callable", params={"python": PYTHON, **params}, content=body, headers=PICKLE
    )


def test_callable_round_trip_and_errors(server: Server) -> None:
    offset = 10

    def add(a, b):
        return a + b + offset

    def boom():
        raise KeyError("missing thing")

    def needs_module():
        import surely_not_installed_here  # noqa: F401

    with server.http() as http:
        answer = _submit(http, add, 3, 4, wait=30)
        assert answer.status_code == 200
        result = answer.json()
        assert result["status"] == "succeeded"
        assert cloudpickle.loads(base64.b64decode(result["result"])) == 17

        queued = _submit(http, boom)
        assert queued.status_code == 202 and queued.json()["kind"] == "callable"
        failed = http.get(f"/v1/jobs/{queued.json()['id']}/result", params={"timeout": 30}).json()
        assert failed["status"] == "failed" and failed["error"]["type"] == "KeyError"
        assert "in boom" in failed["error"]["traceback"]
        exc = cloudpickle.loads(base64.b64decode(failed["error"]["exception"]))
        assert isinstance(exc, KeyError) and exc.args == ("missing thing",)

        missing = _submit(http, needs_module, wait=30).json()
        assert missing["error"]["type"] == "ModuleNotFoundError"
        assert missing["error"]["module"] == "surely_not_installed_here"
        assert "requirements=['surely_not_installed_here']" in missing["error"]["message"]


def test_callable_needs_the_same_python_and_installs_requirements(server: Server) -> None:
    def six_version():
        import six

        return six.__name__

    with server.http() as http:
        before = len(http.get("/v1/jobs", params={"limit": 1000}).json()["jobs"])
        other = "3.10" if PYTHON != "3.10" else "3.12"
        body = cloudpickle.dumps({"fn": six_version, "args": (), "kwargs": {}})
        refused = http.post(
            "/v1/jobs/callable", params={"python": other}, content=body, headers=PICKLE
        )
        assert refused.status_code == 400
        assert refused.json()["error"] == "runtime_mismatch"
        assert f"Python {PYTHON}" in refused.json()["message"]
        assert len(http.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]) == before

        answer = _submit(http, six_version, requirements="six", wait=60)
        result = answer.json()
        while not result["finished"]:  # a first install of six may take longer than `wait`
            result = http.get(f"/v1/jobs/{result['id']}/result", params={"timeout": 60}).json()
        assert result["status"] == "succeeded", result["error"]
        assert cloudpickle.loads(base64.b64decode(result["result"])) == "six"


def test_cancel_a_queued_callable(server: Server) -> None:
    """Fill every warm instance with jobs that wait, so the next one stays queued."""

    def wait_forever():
        import time

        time.sleep(120)

    with server.http() as http:
        blockers = [_submit(http, wait_forever, memory_mb=64).json()["id"] for _ in range(4)]
        wait_for(
            lambda: all(http.get(f"/v1/jobs/{b}").json()["status"] == "running" for b in blockers),
            what="the blockers to run",
        )
        queued = _submit(http, wait_forever, memory_mb=64).json()["id"]
        assert http.get(f"/v1/jobs/{queued}").json()["status"] == "queued"
        assert http.post(f"/v1/jobs/{queued}/cancel").json()["status"] == "cancelled"
        for blocker in blockers:
            assert http.post(f"/v1/jobs/{blocker}/cancel").json()["status"] == "cancelled"
        assert http.post(f"/v1/jobs/{queued}/cancel").status_code == 409
        final = http.get(f"/v1/jobs/{queued}").json()
        assert final["status"] == "cancelled" and final["started_at"] is None


def test_queued_and_running_jobs_survive_kill_9(tmp_path) -> None:
    server = start_server(tmp_path)
    try:
        script = "sleep 1; echo done $N"
        ids = [
            server.cli("job-submit", "--env", f"N={n}", "--", "sh", "-c", script).stdout.strip()
            for n in range(3)
        ]
        server.kill()
        server.start()

        def all_done():
            jobs = [server.cli_json("job-show", i) for i in ids]
            return jobs if all(j["status"] == "succeeded" for j in jobs) else None

        jobs = wait_for(all_done, timeout=60, what="the jobs to run after the restart")
        assert [j["stdout"] for j in jobs] == [f"done {n}\n" for n in range(3)]
    finally:
        server.stop()
