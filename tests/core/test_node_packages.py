"""Node.js packages: inspection of the zip, and node_modules builds with the real npm."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
from pathlib import Path

import pytest

from pratai.core.builds import READY_MARKER
from pratai.core.node_builds import NodeModulesBuilder
from pratai.core.node_packages import inspect_node_package
from pratai.core.packages import Limits
from pratai.core.runtimes import check_runtime
from pratai.errors import InvalidInput, InvalidPackage
from tests.helpers import make_zip

LIMITS = Limits()
MAIN = "exports.main = (p) => p;\n"


def inspect(files: dict[str, str | bytes], handler: str | None = None):
    return inspect_node_package(make_zip(files), LIMITS, handler)


def test_default_handler_and_no_dependencies() -> None:
    info = inspect({"index.js": MAIN, "lib/util.js": "module.exports = 1;\n"})
    assert info.handler == "index.main"
    assert info.requirements is None and info.requirements_hash is None
    info = inspect({"index.js": MAIN, "package.json": '{"name": "x", "dependencies": {}}'})
    assert info.requirements is None


def test_other_handlers_and_module_kinds() -> None:
    nested = {"src/app.mjs": "export const handler = 1;\n", "package.json": "{}"}
    assert inspect(nested, "src/app.handler").handler == "src/app.handler"
    # a zip holding one folder is unpacked from inside it: the handler follows
    assert inspect({"src/app.mjs": "export const handler = 1;\n"}, "src/app.handler").handler == (
        "app.handler"
    )
    assert inspect({"index.cjs": MAIN, "other.js": ""}).handler == "index.main"
    # a zip of a folder counts from inside the folder
    assert inspect({"myfn/index.js": MAIN, "myfn/package.json": "{}"}).strip_prefix == "myfn/"


def test_missing_index_or_export_is_refused() -> None:
    with pytest.raises(InvalidPackage, match=r"no index\.js"):
        inspect({"main.js": MAIN})
    with pytest.raises(InvalidPackage, match=r"index\.js does not export 'main'"):
        inspect({"index.js": "exports.handler = () => 1;\n"})
    # re-exported from elsewhere: left to the first call
    assert inspect({"index.js": "module.exports = require('./impl');\n"}).handler == "index.main"
    with pytest.raises(InvalidPackage, match="invalid handler"):
        inspect({"index.js": MAIN}, "../etc.main")


def test_dependencies_are_canonical() -> None:
    a = inspect({"index.js": MAIN, "package.json": '{"dependencies": {"b": "^1", "a": "2.0.0"}}'})
    b = inspect(
        {
            "index.js": MAIN,
            "package.json": json.dumps(
                {"name": "other", "version": "9.9.9", "dependencies": {"a": "2.0.0", "b": "^1"}},
                indent=4,
            ),
        }
    )
    assert a.requirements == '{"a":"2.0.0","b":"^1"}' and a.requirements_hash
    assert a.requirements_hash == b.requirements_hash
    with pytest.raises(InvalidPackage, match="not valid JSON"):
        inspect({"index.js": MAIN, "package.json": "{nope"})
    with pytest.raises(InvalidPackage, match="version strings"):
        inspect({"index.js": MAIN, "package.json": '{"dependencies": {"a": 1}}'})


def test_unknown_runtime_names_the_valid_ones() -> None:
    assert check_runtime("node20") == "node20"
    with pytest.raises(InvalidInput, match="use one of python, node20"):
        check_runtime("ruby")


IS_NUMBER = '{"is-number":"7.0.0"}'


async def test_npm_install_cache_and_failure(tmp_path: Path) -> None:
    root = tmp_path / "sandbox" / "node-envs"
    builder = NodeModulesBuilder(root)
    assert builder.npm, "npm is needed"
    digest = "a" * 64
    first, second = await asyncio.gather(
        builder.ensure(IS_NUMBER, digest), builder.ensure(IS_NUMBER, digest)
    )
    assert first.ok and second.ok, first.log
    assert builder.builds == 1  # two callers, one npm install
    env = root / digest
    assert (env / READY_MARKER).read_text() == IS_NUMBER
    assert json.loads((env / "node_modules/is-number/package.json").read_text())["version"] == (
        "7.0.0"
    )
    for p in [env, *env.rglob("*")]:
        if not p.is_symlink():
            assert stat.S_IMODE(p.stat().st_mode) & 0o004, p  # readable by the sandbox uid
    out = subprocess.run(
        ["node", "-e", "console.log(require('is-number')(5))"],
        cwd=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "true"
    again = await NodeModulesBuilder(root).ensure(IS_NUMBER, digest)
    assert again.ok and again.cached

    bad = '{"pratai-no-such-package-zzz":"1.0.0"}'
    failed = await builder.ensure(bad, "b" * 64)
    assert not failed.ok and failed.env_dir is None
    assert "404" in failed.log and "pratai-no-such-package-zzz" in failed.log
    assert sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock")) == [digest]
