"""Where function code and environments live on a machine that runs or builds them.

Packages are unpacked once per content digest under `sandbox/code/<digest>`; environments are
built once per requirements set under `sandbox/envs/<hash>` (Python) or
`sandbox/node-envs/<hash>` (Node.js `node_modules`). Both are readable by the sandbox uid,
while the rest of the data folder stays private.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from pratai.artifacts import ArtifactStore
from pratai.core.builds import BuildResult, EnvironmentBuilder
from pratai.core.node_builds import NodeModulesBuilder
from pratai.core.node_packages import inspect_node_package
from pratai.core.packages import Limits, PackageInfo, inspect_package, unpack
from pratai.core.runtimes import NODE, PYTHON
from pratai.settings import Settings

Fetch = Callable[[str, str, str, Path], Awaitable[BuildResult | None]]
"""(runtime, requirements, requirements hash, where it goes) -> the environment there, or None."""


class Workspace:
    def __init__(
        self, settings: Settings, artifacts: ArtifactStore, fetch: Fetch | None = None
    ) -> None:
        """`fetch` gets an environment from elsewhere before this machine builds it (a node
        of a cluster, which often cannot reach PyPI or npm)."""
        self.settings = settings
        self.artifacts = artifacts
        self.fetch = fetch
        self.limits = Limits.from_settings(settings)
        self.code_root = settings.sandbox_dir / "code"
        self.builder = EnvironmentBuilder(settings.sandbox_dir / "envs", settings.sandbox_python)
        self.node_builder = NodeModulesBuilder(settings.sandbox_dir / "node-envs")
        for folder in (settings.home, settings.sandbox_dir, self.code_root):
            folder.mkdir(parents=True, exist_ok=True)
        # Home is private, but the sandbox uid must traverse it to reach sandbox/.
        os.chmod(settings.home, 0o711)
        os.chmod(settings.sandbox_dir, 0o755)
        os.chmod(self.code_root, 0o755)

    def inspect(
        self, data: bytes, handler: str | None = None, runtime: str = PYTHON
    ) -> PackageInfo:
        if runtime == NODE:
            return inspect_node_package(data, self.limits, handler)
        return inspect_package(data, self.limits, handler)

    async def code_dir(self, digest: str) -> Path:
        target = self.code_root / digest
        if target.is_dir():
            return target
        data = await asyncio.to_thread(self.artifacts.get, digest)
        tmp = self.code_root / f".{digest}.{uuid.uuid4().hex}"
        try:
            await asyncio.to_thread(unpack, data, tmp, self.limits)
            os.chmod(tmp, 0o755)
            try:
                os.rename(tmp, target)
            except OSError:
                if not target.is_dir():  # lost a race with another unpacker: fine
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target

    async def environment(
        self, requirements: str, requirements_hash: str, runtime: str = PYTHON
    ) -> BuildResult:
        builder = self.node_builder if runtime == NODE else self.builder
        if self.fetch is not None and not builder.is_ready(requirements_hash):
            env_dir = builder.env_dir(requirements_hash)
            fetched = await self.fetch(runtime, requirements, requirements_hash, env_dir)
            if fetched is not None:
                return fetched
        return await builder.ensure(requirements, requirements_hash)

    async def prepare(
        self, digest: str, handler: str, runtime: str = PYTHON
    ) -> tuple[Path, Path | None]:
        """Code dir and environment for a version, building the environment if this machine
        lacks it (a node that did not do the deploy)."""
        code = await self.code_dir(digest)
        data = await asyncio.to_thread(self.artifacts.get, digest)
        info = self.inspect(data, handler, runtime)
        if info.requirements is None or info.requirements_hash is None:
            return code, None
        built = await self.environment(info.requirements, info.requirements_hash, runtime)
        return code, built.env_dir if built.ok else None
