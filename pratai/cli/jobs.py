"""Job commands of the `pratai` CLI: run a command once in the sandbox, now or on a schedule."""

from __future__ import annotations

import base64
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from pratai.api_client import ApiClient
from pratai.cli.group import Answer, command
from pratai.cli.output import fields, ms, when

F = TypeVar("F", bound=Callable[..., Any])
# What `--follow` exits with when the job has no exit code of its own (as timeout(1) does).
EXIT_TIMED_OUT, EXIT_FAILED, EXIT_CANCELLED = 124, 1, 130


def spec_options(func: F) -> F:
    """The options that describe a command job (job-submit, job-save)."""
    options = [
        click.option("--runtime", help="python3.11 (default) or node20: `python`/`node` on PATH"),
        click.option("--stdin-file", type=click.Path(exists=True, dir_okay=False, path_type=Path)),
        click.option("--env", "env", multiple=True, metavar="K=V", help="repeatable"),
        click.option("--memory", type=int, help="MB (default 256)"),
        click.option("--timeout", type=float, help="seconds (default 300)"),
        click.option("--network/--no-network", default=False, show_default=True),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _spec(
    command: tuple[str, ...],
    runtime: str | None,
    stdin_file: Path | None,
    env: tuple[str, ...],
    memory: int | None,
    timeout: float | None,
    network: bool,
) -> dict[str, Any]:
    if not command:
        raise click.UsageError("give the command after --, e.g. pratai job-submit -- echo hi")
    variables = {}
    for pair in env:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not K=V", param_hint="--env")
        variables[key] = value
    stdin = stdin_file.read_bytes() if stdin_file else b""
    return {
        "command": list(command),
        "runtime": runtime,
        "env": variables,
        "stdin": base64.b64encode(stdin).decode(),
        "memory_mb": memory,
        "timeout_s": timeout,
        "network": network,
    }


def _follow(client: ApiClient, job_id: str) -> NoReturn:
    """Print the job's output as it comes, then exit with its exit code."""
    end: dict[str, Any] = {}
    for line in client.follow_job(job_id):
        if "stream" in line:
            out = sys.stdout if line["stream"] == "stdout" else sys.stderr
            out.write(line["text"])
            out.flush()
        else:
            end = line
    status, code = end.get("status"), end.get("exit_code")
    if status == "succeeded":
        sys.exit(0)
    error = end.get("error") or {}
    click.echo(f"job {job_id} {status}: {error.get('message', '')}".rstrip(": "), err=True)
    if code is not None:
        sys.exit(code)
    sys.exit({"timed_out": EXIT_TIMED_OUT, "cancelled": EXIT_CANCELLED}.get(str(status), 1))


def _started(client: ApiClient, job: dict[str, Any], follow: bool) -> Answer:
    if follow:
        _follow(client, job["id"])
    return Answer.line(job, job["id"])


@command("job-submit")
@spec_options
@click.option("--follow", "-f", is_flag=True, help="stream its output; exit with its exit code")
@click.argument("command", nargs=-1, required=True)
def job_submit(command: tuple[str, ...], follow: bool, **spec: Any) -> Answer:
    """Run COMMAND once in a sandbox: pratai job-submit [OPTIONS] -- CMD [ARGS...]"""
    client = ApiClient()
    return _started(client, client.submit_job(**_spec(command, **spec)), follow)


@command("job-show")
@click.argument("job_id")
@click.option("--follow", "-f", is_flag=True, help="stream its output until it ends")
def job_show(job_id: str, follow: bool) -> Answer:
    """A job's status, exit code, duration, stdout and stderr."""
    client = ApiClient()
    if follow:
        _follow(client, job_id)
    job = client.get_job(job_id)
    return Answer(job, lambda: _show_job(job))


def _show_job(job: dict[str, Any]) -> None:
    error = job["error"] or {}
    fields(
        [
            ("id", job["id"]),
            ("command", " ".join(job["command"]) or f"({job['kind']})"),
            ("runtime", job["runtime"]),
            ("status", job["status"]),
            ("exit code", job["exit_code"]),
            ("error", f"{error.get('type')}: {error.get('message')}" if error else "-"),
            ("duration", ms(job["duration_ms"])),
            ("peak memory", f"{job['peak_memory_kb']} KB" if job["peak_memory_kb"] else "-"),
            ("created", when(job["created_at"])),
            ("saved job", job["saved_name"] or "-"),
        ]
    )
    for stream in ("stdout", "stderr"):
        if job[stream]:
            click.echo(f"--- {stream}")
            click.echo(job[stream], nl=not job[stream].endswith("\n"))


@command("job-list")
@click.option("--status", help="queued, running, succeeded, failed, timed_out or cancelled")
@click.option("--limit", type=int, default=20, show_default=True)
def job_list(status: str | None, limit: int) -> Answer:
    """Jobs of this project, newest first."""
    return Answer.rows(
        ApiClient().list_jobs(limit, status),
        ["ID", "STATUS", "EXIT", "DURATION", "CREATED", "COMMAND"],
        lambda j: (
            j["id"],
            j["status"],
            j["exit_code"],
            ms(j["duration_ms"]),
            when(j["created_at"]),
            j["saved_name"] or " ".join(j["command"])[:40] or f"({j['kind']})",
        ),
    )


@command("job-cancel", output=False)
@click.argument("job_id")
def job_cancel(job_id: str) -> Answer:
    """Cancel a queued or running job (a running one is killed)."""
    job = ApiClient().cancel_job(job_id)
    return Answer.line(job, f"job {job['id']} {job['status']}")


@command("job-save")
@click.argument("name")
@spec_options
@click.argument("command", nargs=-1, required=True)
def job_save(name: str, command: tuple[str, ...], **spec: Any) -> Answer:
    """Save COMMAND as job NAME: pratai job-save NAME [OPTIONS] -- CMD [ARGS...]"""
    saved = ApiClient().save_job(name, **_spec(command, **spec))
    return Answer.line(saved, f"saved job {saved['name']}: {' '.join(saved['command'])}")


@command("job-run")
@click.argument("name")
@click.option("--follow", "-f", is_flag=True, help="stream its output; exit with its exit code")
def job_run(name: str, follow: bool) -> Answer:
    """Run saved job NAME now; prints the new job's id."""
    client = ApiClient()
    return _started(client, client.run_saved_job(name), follow)


@command("job-schedule")
@click.argument("name")
@click.option("--cron", help='cron expression, e.g. "0 * * * *"')
@click.option("--timezone", help="IANA time zone of the cron expression (default UTC)")
@click.option("--off", is_flag=True, help="stop running it on a schedule")
def job_schedule(name: str, cron: str | None, timezone: str | None, off: bool) -> Answer:
    """Run saved job NAME on a cron schedule (at most once per tick)."""
    if off == bool(cron):
        raise click.UsageError("give --cron EXPR, or --off")
    saved = ApiClient().schedule_job(name, None if off else cron, timezone)
    if saved["cron"] is None:
        return Answer.line(saved, f"job {name} is no longer scheduled")
    return Answer.line(
        saved, f"job {name} runs on {saved['cron']!r}; next run {when(saved['next_run'])}"
    )


@command("job-saved")
def job_saved() -> Answer:
    """Saved jobs of this project."""
    return Answer.rows(
        ApiClient().list_saved_jobs(),
        ["NAME", "COMMAND", "SCHEDULE", "NEXT RUN"],
        lambda s: (s["name"], " ".join(s["command"])[:40], s["cron"], when(s["next_run"])),
    )


@command("job-delete", output=False)
@click.argument("name")
def job_delete(name: str) -> Answer:
    """Delete saved job NAME (and its schedule); jobs it already ran stay."""
    ApiClient().delete_saved_job(name)
    return Answer.line(None, f"deleted saved job {name}")


COMMANDS = (
    job_submit,
    job_show,
    job_list,
    job_cancel,
    job_save,
    job_run,
    job_schedule,
    job_saved,
    job_delete,
)
