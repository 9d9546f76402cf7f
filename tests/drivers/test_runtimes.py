"""The process driver's runtime table: one entry per runtime core knows, each naming a bootstrap
that exists, and the programs and mounts it builds from it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pratai.core.runtimes import NODE, PYTHON
from pratai.core.runtimes import RUNTIMES as NAMES
from pratai.drivers.runtime_files import PACKAGED
from pratai.drivers.runtimes import FSIZE_LIMIT, PRLIMIT, RUNTIMES, runtime_of
from pratai.errors import SandboxError
from pratai.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env(
        {
            "PRATAI_HOME": str(tmp_path / "home"),
            "PRATAI_SANDBOX_PYTHON": "/usr/bin/python3",
            "PRATAI_SANDBOX_NODE": "/usr/bin/node",
            "PRATAI_MAX_PIDS": "77",
        }
    )


def test_every_runtime_core_accepts_has_an_entry_and_its_bootstrap() -> None:
    assert sorted(RUNTIMES) == sorted(NAMES)
    for runtime in RUNTIMES.values():
        assert (PACKAGED / runtime.folder / runtime.bootstrap).is_file()
    with pytest.raises(SandboxError, match="no runtime 'cobol'"):
        runtime_of("cobol")


def test_python_runs_isolated_and_a_virtualenv_with_site(settings: Settings) -> None:
    python = runtime_of(PYTHON)
    bare = python.program(settings, 128, None, cgroup=True)
    assert bare == ["/usr/bin/python3", "-I", "-S", "/runtime/bootstrap.py"]
    venv = Path("/envs/abc")
    assert python.program(settings, 128, venv, cgroup=False) == [
        "/envs/abc/bin/python",
        "-I",
        "/runtime/bootstrap.py",
    ]
    assert python.mounts(venv) == ["--ro-bind", "/envs/abc", "/envs/abc"]
    assert python.env(venv, "/usr/bin") == {
        "PATH": "/envs/abc/bin:/usr/bin",
        "VIRTUAL_ENV": "/envs/abc",
    }
    assert python.mounts(None) == [] and python.env(None, "/usr/bin") == {}


def test_node_caps_its_heap_and_takes_its_limits_from_prlimit(settings: Settings) -> None:
    node = runtime_of(NODE)
    program = node.program(settings, 128, Path("/envs/n"), cgroup=False)
    assert program[-3:] == ["/usr/bin/node", "--max-old-space-size=96", "/runtime/bootstrap.js"]
    if PRLIMIT:
        limits = [PRLIMIT, "--core=0", f"--fsize={FSIZE_LIMIT}", "--nproc=77", "--"]
        assert program[:-3] == limits
        assert "--nproc=77" not in node.program(settings, 128, None, cgroup=True)
    assert node.program(settings, 16, None, cgroup=True)[-2] == "--max-old-space-size=16"
    assert node.mounts(Path("/envs/n")) == ["--ro-bind", "/envs/n/node_modules", "/node_modules"]
    assert node.env(Path("/envs/n"), "/usr/bin") == {}


def test_a_missing_node_says_how_to_install_it(settings: Settings) -> None:
    missing = replace(settings, sandbox_node="/usr/bin/pratai-no-such-node")
    message = r"Node\.js is not installed at /usr/bin/pratai-no-such-node: .*PRATAI_SANDBOX_NODE"
    with pytest.raises(SandboxError, match=message):
        runtime_of(NODE).check(missing)
    runtime_of(PYTHON).check(missing)  # Python's interpreter is not checked before it runs
