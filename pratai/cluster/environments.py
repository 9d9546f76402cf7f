"""Dependency environments for nodes that cannot build them: built by the control plane, shipped
through the shared artifact store.

A node often has no way to PyPI or npm (it reaches NATS and nothing else). When it lacks the
environment of a version's requirements, it asks on `pratai.cluster.env` (one api or scheduler
answers: a queue group); that process builds the environment as it does for a deploy (usually
it is there already), packs it, puts the archive in the artifact store and answers its digest.
The node unpacks it where its own builder would have put it. Environments are relocatable
(`uv venv --relocatable`); the answer is refused when the node's sandbox Python differs from
the builder's, and the node then builds for itself.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import secrets
import shutil
import tarfile
from pathlib import Path

from nats.aio.msg import Msg

from pratai.artifacts import ArtifactStore
from pratai.cluster.link import Link
from pratai.core.builds import READY_MARKER, BuildResult
from pratai.core.workspace import Workspace

log = logging.getLogger("pratai.cluster")

ENV_SUBJECT = "pratai.cluster.env"
_QUEUE = "pratai-envs"
ASK_S = 900.0  # a first build of large requirements takes minutes


def pack(env_dir: Path) -> bytes:
    """The environment as a gzipped tar, its symlinks kept (a venv's python is one)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(env_dir, arcname=".")
    return buffer.getvalue()


def unpack_into(data: bytes, env_dir: Path) -> None:
    """Unpacks an environment to `env_dir`, atomically (it appears whole, or not at all)."""
    tmp = env_dir.parent / f".{env_dir.name}.tmp-{secrets.token_hex(4)}"
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            tar.extractall(tmp, filter="tar")  # no absolute names, no escaping `tmp`
        if not (tmp / READY_MARKER).is_file():
            raise ValueError("the archive is not a finished environment")
        for folder, dirs, files in os.walk(tmp):
            for name in [*dirs, *files]:
                path = Path(folder) / name
                if not path.is_symlink():
                    path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
        tmp.chmod(0o755)
        os.rename(tmp, env_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class EnvironmentServer:
    """Answers nodes' requests for environments (in every api and scheduler)."""

    def __init__(self, link: Link, workspace: Workspace, python: str) -> None:
        self.link = link
        self.workspace = workspace
        self.python = python  # the sandbox Python's version, e.g. "python3.11"
        self._shipped: dict[tuple[str, str], str] = {}  # (runtime, hash) -> archive digest
        self._answering: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.link.nc.subscribe(ENV_SUBJECT, queue=_QUEUE, cb=self._on_request)

    async def _on_request(self, msg: Msg) -> None:
        task = asyncio.create_task(self._answer(msg))  # a build takes long: answer others meanwhile
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _answer(self, msg: Msg) -> None:
        try:
            asked = json.loads(msg.data)
            runtime, python = str(asked["runtime"]), str(asked["python"])
            requirements, requirements_hash = str(asked["requirements"]), str(asked["hash"])
        except (ValueError, KeyError, TypeError):
            await msg.respond(json.dumps({"error": "not an environment request"}).encode())
            return
        try:
            answer = await self._digest(runtime, python, requirements, requirements_hash)
        except Exception as exc:  # whatever it is, the node builds for itself
            log.exception("environment %s could not be shipped", requirements_hash)
            answer = {"error": f"the control plane could not ship it: {exc}"}
        await msg.respond(json.dumps(answer).encode())

    async def _digest(
        self, runtime: str, python: str, requirements: str, requirements_hash: str
    ) -> dict[str, str]:
        if runtime == "python" and python != self.python:
            return {"error": f"built with {self.python}, the node runs {python}"}
        key = (runtime, requirements_hash)
        if key not in self._shipped:
            built = await self.workspace.environment(requirements, requirements_hash, runtime)
            if not built.ok or built.env_dir is None:
                return {"error": built.log or "the build failed"}
            data = await asyncio.to_thread(pack, built.env_dir)
            self._shipped[key] = await asyncio.to_thread(self.workspace.artifacts.put, data)
        return {"digest": self._shipped[key]}


class ShippedEnvironments:
    """A node's source of environments: ask the control plane, unpack what it ships."""

    def __init__(self, link: Link, artifacts: ArtifactStore, python: str) -> None:
        self.link = link
        self.artifacts = artifacts
        self.python = python

    async def fetch(
        self, runtime: str, requirements: str, requirements_hash: str, env_dir: Path
    ) -> BuildResult | None:
        """The environment, unpacked at `env_dir`; None when none was shipped (the caller
        builds it)."""
        ask = {
            "runtime": runtime,
            "python": self.python,
            "requirements": requirements,
            "hash": requirements_hash,
        }
        try:
            reply = await self.link.nc.request(ENV_SUBJECT, json.dumps(ask).encode(), timeout=ASK_S)
            answer = json.loads(reply.data)
            digest = str(answer["digest"])
        except Exception as exc:  # no responder, a timeout, a refusal
            log.warning("environment %s not shipped (%s): building it here", requirements_hash, exc)
            return None
        data = await asyncio.to_thread(self.artifacts.get, digest)
        if not (env_dir / READY_MARKER).is_file():
            if not env_dir.parent.exists():  # as the builder makes it: the sandbox uid reads it
                env_dir.parent.mkdir(parents=True, exist_ok=True)
                env_dir.parent.chmod(0o755)
            try:
                await asyncio.to_thread(unpack_into, data, env_dir)
            except OSError:
                if not (env_dir / READY_MARKER).is_file():  # not a race lost to another: a fault
                    raise
        return BuildResult(True, env_dir, "shipped by the control plane", cached=False)
