"""`node_modules` for Node.js functions: one folder per dependency set, built once with npm.

The same layout, lock and life cycle as the Python environments (`pratai.core.builds`):

    <hash>/package.json, <hash>/node_modules/   a finished build (contains `.pratai-ready`)
    .<hash>.tmp-<random>/                       a build in progress, renamed when complete

The sandbox mounts `<hash>/node_modules` read-only at `/node_modules`, where both `require()`
and `import` from `/code` look. Install scripts are not run (`--ignore-scripts`): the build
runs on the platform's host, outside any sandbox.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from pratai.core.builds import (
    EnvironmentBuilder,
)


class NodeModulesBuilder(EnvironmentBuilder):
    def __init__(self, root: Path, *, npm: str | None = None, timeout: float = 600.0) -> None:
        super().__init__(root, "", use_uv=False, timeout=timeout)
        self.npm = npm or shutil.which("npm")
        self.cache_dir = self.root.parent / "npm-cache"

    async def _install(self, requirements: str, tmp: Path, env: Path, log: list[str]) -> bool:
        """`requirements` is the JSON of package.json's dependencies."""
        if self.npm is None:
            log.append("npm is not installed: install Node.js 20 with npm\n")
            return False
        tmp.mkdir(mode=0o755)
        manifest = {"name": "pratai-deps", "private": True}
        manifest["dependencies"] = json.loads(requirements)
        (tmp / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
        cmd = [
            self.npm, "install", "--prefix", str(tmp), "--omit=dev", "--ignore-scripts",
            "--no-audit", "--no-fund", "--no-package-lock", "--no-update-notifier",
        ]  # fmt: skip
        if not await self._run(cmd, log, time.monotonic() + self.timeout):
            return False
        (tmp / "node_modules").mkdir(exist_ok=True)  # the sandbox mounts it
        return True

    def _env(self) -> dict[str, str]:
        env = super()._env()
        env.pop("NODE_OPTIONS", None)
        env.update(
            npm_config_cache=str(self.cache_dir),
            npm_config_update_notifier="false",
            npm_config_fund="false",
            npm_config_audit="false",
            npm_config_progress="false",
        )
        return env


__all__ = ["NodeModulesBuilder"]
