from __future__ import annotations

import asyncio
import hashlib
import stat
import subprocess
import time
from pathlib import Path

import pytest

from pratai.core.builds import READY_MARKER, EnvironmentBuilder, find_uv
from pratai.settings import Settings

PYTHON = Settings().sandbox_python
SIX = "six==1.16.0\n"
pytestmark = pytest.mark.skipif(not PYTHON, reason="no sandbox python")


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "sandbox" / "envs"


def test_uv_is_found() -> None:
    assert find_uv() is not None


async def test_install_and_cache(root: Path) -> None:
    builder = EnvironmentBuilder(root, PYTHON)
    result = await builder.ensure(SIX, digest(SIX))
    assert result.ok, result.log
    assert not result.cached
    assert result.env_dir == root / digest(SIX)
    assert "six==1.16.0" in result.log
    assert (result.env_dir / READY_MARKER).read_text() == SIX
    assert leftovers(root) == [digest(SIX)]
    assert (root.parent / "uv-cache").is_dir()

    out = subprocess.run(
        [str(result.env_dir / "bin" / "python"), "-c", "import six, sys; print(six.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "1.16.0"

    # world-readable, so the sandbox uid can use it
    for p in [result.env_dir, *result.env_dir.rglob("*")]:
        if p.is_symlink():
            continue
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode & 0o005 == 0o005 if p.is_dir() else mode & 0o004, p

    start = time.perf_counter()
    again = await builder.ensure(SIX, digest(SIX))
    assert time.perf_counter() - start < 0.05
    assert again.ok and again.cached and again.env_dir == result.env_dir
    # a new builder (another process) sees the finished env too
    assert (await EnvironmentBuilder(root, PYTHON).ensure(SIX, digest(SIX))).cached
    assert builder.builds == 1


async def test_bad_requirement_leaves_nothing(root: Path) -> None:
    reqs = "this-package-does-not-exist-pratai==1.0\n"
    builder = EnvironmentBuilder(root, PYTHON)
    result = await builder.ensure(reqs, digest(reqs))
    assert not result.ok and not result.cached and result.env_dir is None
    assert "this-package-does-not-exist-pratai" in result.log
    assert "not found" in result.log or "No solution" in result.log
    assert leftovers(root) == []
    assert not builder.is_ready(digest(reqs))


async def test_concurrent_ensure_builds_once(root: Path) -> None:
    builder = EnvironmentBuilder(root, PYTHON)
    results = await asyncio.gather(*(builder.ensure(SIX, digest(SIX)) for _ in range(3)))
    assert all(r.ok and r.env_dir == root / digest(SIX) for r in results)
    assert builder.builds == 1
    assert results[0] is results[1] is results[2]  # one shared build


async def test_two_builders_share_via_file_lock(root: Path) -> None:
    a, b = EnvironmentBuilder(root, PYTHON), EnvironmentBuilder(root, PYTHON)
    ra, rb = await asyncio.gather(a.ensure(SIX, digest(SIX)), b.ensure(SIX, digest(SIX)))
    assert ra.ok and rb.ok
    assert a.builds + b.builds == 1
    assert sorted([ra.cached, rb.cached]) == [False, True]


async def test_stale_leftovers_are_replaced(root: Path) -> None:
    h = digest(SIX)
    (root / f".{h}.tmp-dead").mkdir(parents=True)  # a build that crashed
    (root / h).mkdir()  # an env dir without its marker is not built
    (root / h / "junk").write_text("x")
    result = await EnvironmentBuilder(root, PYTHON).ensure(SIX, h)
    assert result.ok and not result.cached, result.log
    assert not (root / h / "junk").exists()
    assert leftovers(root) == [h]


async def test_pip_fallback(root: Path) -> None:
    builder = EnvironmentBuilder(root, PYTHON, use_uv=False)
    assert builder.uv is None
    result = await builder.ensure(SIX, digest(SIX))
    assert result.ok, result.log
    assert "-m pip install" in result.log
    env = root / digest(SIX)
    subprocess.run([str(env / "bin" / "python"), "-c", "import six"], check=True)
    # console scripts point at the final location, not the temporary build dir
    assert ".tmp-" not in (env / "bin" / "pip").read_text()
    out = subprocess.run([str(env / "bin" / "pip"), "--version"], capture_output=True, text=True)
    assert str(env) in out.stdout, out


async def test_timeout(root: Path) -> None:
    result = await EnvironmentBuilder(root, PYTHON, timeout=0.01).ensure(SIX, digest(SIX))
    assert not result.ok and "timed out" in result.log
    assert leftovers(root) == []


def test_invalid_hash(root: Path) -> None:
    with pytest.raises(ValueError):
        EnvironmentBuilder(root, PYTHON).env_dir("../etc")
