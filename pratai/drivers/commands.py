"""One-shot commands in the same sandbox as functions: argv in, exit code and output out.

Jobs (`pratai job-submit -- CMD...`) run here: one bubblewrap sandbox per run, the function's
limits (cgroup memory, pids and CPU, or rlimits without cgroups; a wall-clock timeout; no network
unless asked), stdin from the job, stdout and stderr handed to a sink chunk by chunk as the
command writes them, so callers can store and stream them while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pratai.drivers.base import InstanceSpec, failure
from pratai.drivers.cgroups import Cgroup
from pratai.drivers.instance import children
from pratai.drivers.process import ProcessDriver
from pratai.drivers.sandbox import launcher
from pratai.errors import SandboxError

# The sandbox's own bin folder, first on PATH: `python` means the job's runtime Python.
BIN_DIR = "/opt/pratai/bin"
OutputSink = Callable[[str, bytes], None]  # ("stdout" | "stderr", chunk)


@dataclass
class CommandResult:
    status: str  # "succeeded" | "failed" | "timed_out"
    exit_code: int | None
    error: dict[str, Any] | None
    duration_ms: float
    peak_memory_kb: int | None = None


def _exit_error(code: int) -> dict[str, Any]:
    if code > 128 and code - 128 in signal.valid_signals():  # bwrap reports 128 + signum
        name = signal.Signals(code - 128).name
        return failure("Killed", f"the command was killed by signal {code - 128} {name}")
    return failure("NonZeroExit", f"the command exited with code {code}")


async def _pump(stream: asyncio.StreamReader, name: str, sink: OutputSink) -> None:
    while chunk := await stream.read(65536):
        sink(name, chunk)


async def run_command(
    driver: ProcessDriver,
    spec: InstanceSpec,
    argv: list[str],
    stdin: bytes,
    timeout_s: float,
    sink: OutputSink,
    python: str | None = None,
) -> CommandResult:
    """Run `argv` once in a fresh sandbox. Cancelling the awaiting task kills the sandbox."""
    if not driver.bwrap:
        raise SandboxError("bubblewrap (bwrap) is not installed")
    cmd, env = driver.sandbox(spec)  # may raise: before the cgroup, which would need removing
    cgroup = driver.cgroups.create(
        spec.key,
        spec.memory_mb * 1024 * 1024,
        driver.settings.max_pids,
        driver.provision(spec.memory_mb),  # a job's CPU follows its memory as a function's
    )
    python = python or driver.settings.sandbox_python
    cmd += ["--dir", BIN_DIR, "--symlink", python, f"{BIN_DIR}/python"]
    env["PATH"] = f"{BIN_DIR}:{env['PATH']}"
    limits: list[str] = []
    if cgroup is None:  # no cgroup to join: bound the address space and processes instead
        limits = ["/bin/sh", "-c", 'ulimit -v "$1"; ulimit -u "$2"; shift 2; exec "$@"', "sh"]
        limits += [str(spec.memory_mb * 1024), str(driver.settings.max_pids)]
    prefix = launcher(cgroup.procs_files if cgroup else [], driver.drop_privileges)
    if prefix is None:
        raise SandboxError("setpriv (util-linux) is needed to run jobs as an unprivileged user")
    started = time.perf_counter()
    try:
        proc = await _spawn([*prefix, *limits, *cmd, "--", *argv], env, stdin)
    except OSError as exc:
        if cgroup:
            cgroup.remove()
        raise SandboxError(f"could not start the sandbox: {exc}") from exc
    return await _wait(proc, cgroup, timeout_s, sink, started, spec.memory_mb)


async def _spawn(argv: list[str], env: dict[str, str], stdin: bytes) -> asyncio.subprocess.Process:
    with tempfile.TemporaryFile() as stdin_file:
        stdin_file.write(stdin)
        stdin_file.seek(0)
        return await asyncio.create_subprocess_exec(
            *argv, stdin=stdin_file, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True, cwd="/",
        )  # fmt: skip


async def _wait(
    proc: asyncio.subprocess.Process,
    cgroup: Cgroup | None,
    timeout_s: float,
    sink: OutputSink,
    started: float,
    memory_mb: int,
) -> CommandResult:
    """Hands the output to `sink` until the command exits; kills it at `timeout_s` (or when
    cancelled), then removes its cgroup."""
    assert proc.stdout is not None and proc.stderr is not None
    oom_base = cgroup.oom_kills() if cgroup else 0
    pumps = [
        asyncio.create_task(_pump(proc.stdout, "stdout", sink)),
        asyncio.create_task(_pump(proc.stderr, "stderr", sink)),
    ]
    peak, oom = None, False
    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*pumps)
            code = await proc.wait()
    except TimeoutError:
        await _kill(proc, cgroup)
        return CommandResult(
            "timed_out",
            None,
            failure("TimedOut", f"the command did not finish within {timeout_s:g} s"),
            (time.perf_counter() - started) * 1000,
            cgroup.peak_kb() if cgroup else None,
        )
    finally:
        if proc.returncode is None:  # cancelled, or timed out
            await _kill(proc, cgroup)
        for pump in pumps:
            pump.cancel()
        if cgroup:
            peak, oom = cgroup.peak_kb(), cgroup.oom_kills() > oom_base
            await cgroup.discard()
    elapsed = (time.perf_counter() - started) * 1000
    if code == 0:
        return CommandResult("succeeded", 0, None, elapsed, peak)
    error = _exit_error(code)
    if oom:
        error = failure(
            "MemoryLimitExceeded",
            f"the command exceeded the memory limit of {memory_mb} MB and was killed",
        )
    return CommandResult("failed", code, error, elapsed, peak)


async def _kill(proc: asyncio.subprocess.Process, cgroup: Cgroup | None) -> None:
    """The sandbox's pid-namespace init first (its namespace dies with it), then the rest."""
    for pid in children(proc.pid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    if cgroup:
        cgroup.kill()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            await proc.wait()
