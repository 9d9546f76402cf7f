"""The Functions service with a real SQLite store, artifacts and workspace: deploys, versions,
option bounds, builds (including failed and interrupted ones), rollback and delete."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from pratai.artifacts.filesystem import FilesystemArtifacts
from pratai.core.code import MAX_SHOWN_BYTES, Code, PackageFile
from pratai.core.functions import DeploySpec, FunctionOptions, Functions, FunctionView
from pratai.core.gateway import RouteSpec
from pratai.core.models import BuildState, Function, FunctionVersion, Project, new_id
from pratai.core.ports import Store
from pratai.core.saved_payloads import SavedPayloads
from pratai.core.tenants import Tenants
from pratai.core.triggers import TriggerSpec
from pratai.core.workspace import Workspace
from pratai.errors import Conflict, InvalidInput, InvalidName, NotFound
from pratai.settings import Settings
from tests.helpers import make_zip

pytestmark = pytest.mark.asyncio(loop_scope="function")

HELLO = make_zip({"main.py": "def main(p):\n    return 'v1'\n"})
HELLO_SOURCE = "def main(p):\n    return 'v3'\n"
HELLO_2 = make_zip({"main.py": "def main(p):\n    return 'v2'\n"})
MISSING_REQUIREMENT = "pratai-no-such-package-zzz==1.0"
BROKEN = make_zip(
    {"main.py": "def main(p):\n    return 'v3'\n", "requirements.txt": MISSING_REQUIREMENT + "\n"}
)


@dataclass
class Env:
    settings: Settings
    store: Store
    workspace: Workspace
    functions: Functions
    project: Project

    async def create(
        self, name: str = "hello", package: bytes = HELLO, **options: Any
    ) -> FunctionView:
        spec = DeploySpec(name=name, package=package, options=FunctionOptions(**options))
        return await self.functions.deploy(self.project, spec)

    async def stored(self, name: str = "hello") -> Function:
        function = await self.store.get_function(self.project.id, name)
        assert function is not None
        return function

    async def states(self, name: str = "hello") -> list[tuple[int, BuildState]]:
        return [(v.version, v.state) for v in await self.functions.versions(self.project, name)]


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    s = Settings.from_env({"PRATAI_HOME": str(tmp_path / "home")})
    yield s
    if not s.sandbox_dir.is_relative_to(s.home):
        shutil.rmtree(s.sandbox_dir, ignore_errors=True)


@pytest_asyncio.fixture(loop_scope="function")
async def env(settings: Settings, make_store: Callable[[Settings], Store]) -> AsyncIterator[Env]:
    workspace = Workspace(settings, FilesystemArtifacts(settings.artifacts_dir))
    store = make_store(settings)
    await store.open()
    functions = Functions(settings, store, workspace)
    try:
        project = await Tenants(store).ensure_project()
        yield Env(settings, store, workspace, functions, project)
    finally:
        await functions.wait_built()
        await store.close()


async def test_create_is_ready_at_version_1(env: Env) -> None:
    view = await env.create(
        description="says hi", memory_mb=256, timeout_s=5, network=True, concurrency=2
    )
    assert view.state == BuildState.READY
    assert view.function.latest_version == 1 and view.function.active_version == 1
    assert view.active is not None and view.active.version == 1
    assert view.latest.handler == "main.main"
    assert "no requirements.txt" in view.latest.build_log
    # the package is stored and unpacked where sandboxes read it
    assert env.workspace.artifacts.get(view.latest.package_digest) == HELLO
    assert (env.workspace.code_root / view.latest.package_digest / "main.py").is_file()

    stored = await env.stored()
    assert (stored.description, stored.memory_mb, stored.timeout_s) == ("says hi", 256, 5.0)
    assert (stored.network, stored.concurrency, stored.active_version) == (True, 2, 1)
    assert await env.states() == [(1, BuildState.READY)]


async def test_create_defaults(env: Env) -> None:
    await env.create()
    stored = await env.stored()
    assert (stored.memory_mb, stored.timeout_s, stored.network) == (128, 30.0, False)
    assert stored.concurrency == env.settings.default_concurrency
    assert [f.name for f in await env.functions.all(env.project)] == ["hello"]


async def test_deploy_stores_its_trigger_and_route_and_says_so(env: Env) -> None:
    told: list[object] = []
    env.functions.trigger_listeners.append(told.append)
    env.functions.route_listeners.append(told.append)
    trigger = TriggerSpec(kind="message", topic="news")
    spec = DeploySpec(
        name="hello", package=HELLO, trigger=trigger, route=RouteSpec(route="GET /hi")
    )
    view = await env.functions.deploy(env.project, spec)
    stored_triggers = await env.store.list_triggers(env.project.id, function_id=view.function.id)
    stored_routes = await env.store.list_routes(env.project.id, view.function.id)
    assert [t.topic for t in stored_triggers] == ["news"]
    assert [(r.method, r.path) for r in stored_routes] == [("GET", "/hi")]
    assert told == [*stored_triggers, *stored_routes]

    clash = DeploySpec(
        name="other", package=HELLO, trigger=trigger, route=RouteSpec(route="GET /hi")
    )
    with pytest.raises(Conflict, match="the project already routes GET /hi"):
        await env.functions.deploy(env.project, clash)
    bad_rate = DeploySpec(
        name="other", package=HELLO, route=RouteSpec(route="GET /x", rate_limit="9/week")
    )
    with pytest.raises(InvalidInput, match="rate limit"):
        await env.functions.deploy(env.project, bad_rate)
    assert [f.name for f in await env.functions.all(env.project)] == ["hello"]
    assert await env.store.list_triggers(env.project.id) == stored_triggers
    assert len(told) == 2


async def test_duplicate_name_is_a_conflict(env: Env) -> None:
    first = await env.create()
    with pytest.raises(Conflict, match="already exists"):
        await env.create(package=HELLO_2)
    # the existing function is untouched
    assert await env.states() == [(1, BuildState.READY)]
    view = await env.functions.view(await env.stored())
    assert view.latest.package_digest == first.latest.package_digest


@pytest.mark.parametrize(
    "name", ["Hello", "-hello", "hello-", "_hello", "", "a" * 64, "has space", "dot.name"]
)
async def test_invalid_name_is_refused(env: Env, name: str) -> None:
    with pytest.raises(InvalidName):
        await env.create(name=name)
    assert await env.functions.all(env.project) == []


async def test_valid_name_edge_cases(env: Env) -> None:
    for name in ("a", "a" * 63, "music_tag", "x-1"):
        assert (await env.create(name=name)).state == BuildState.READY
    assert len(await env.functions.all(env.project)) == 4


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"memory_mb": 15}, "memory"),
        ({"memory_mb": 8193}, "memory"),
        ({"timeout_s": 0}, "timeout"),
        ({"timeout_s": -1}, "timeout"),
        ({"timeout_s": 900.5}, "timeout"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": 1001}, "concurrency"),
    ],
)
async def test_option_bounds(env: Env, options: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput, match=field):
        await env.create(**options)
    assert await env.functions.all(env.project) == []

    await env.create()
    with pytest.raises(InvalidInput, match=field):
        await env.functions.update(env.project, "hello", None, FunctionOptions(**options))
    stored = await env.stored()
    assert (stored.memory_mb, stored.timeout_s, stored.concurrency) == (
        128,
        30.0,
        env.settings.default_concurrency,
    )


async def test_option_bounds_are_inclusive(env: Env) -> None:
    await env.create("low", memory_mb=16, timeout_s=0.1, concurrency=1)
    await env.create("high", memory_mb=8192, timeout_s=900, concurrency=1000)
    low, high = await env.stored("low"), await env.stored("high")
    assert (low.memory_mb, low.timeout_s, low.concurrency) == (16, 0.1, 1)
    assert (high.memory_mb, high.timeout_s, high.concurrency) == (8192, 900.0, 1000)


async def test_update_with_a_package_makes_version_2_active(env: Env) -> None:
    first = await env.create()
    view = await env.functions.update(env.project, "hello", HELLO_2, FunctionOptions())
    assert view.state == BuildState.READY
    assert view.function.latest_version == 2 and view.function.active_version == 2
    assert view.active is not None and view.active.version == 2
    assert view.latest.package_digest != first.latest.package_digest
    assert await env.states() == [(1, BuildState.READY), (2, BuildState.READY)]
    assert (await env.stored()).active_version == 2

    back = await env.functions.rollback(env.project, "hello", 1)
    assert back.function.active_version == 1 and back.function.latest_version == 2
    assert back.active is not None and back.active.package_digest == first.latest.package_digest
    assert (await env.stored()).active_version == 1


async def test_update_options_only_keeps_the_version(env: Env) -> None:
    await env.create(description="old")
    before = await env.stored()
    changed: list[str] = []
    env.functions.listeners.append(lambda f: changed.append(f.name))

    view = await env.functions.update(
        env.project, "hello", None, FunctionOptions(memory_mb=512, timeout_s=3, concurrency=7)
    )
    assert view.function.latest_version == 1 and view.function.active_version == 1
    assert await env.states() == [(1, BuildState.READY)]
    stored = await env.stored()
    assert (stored.memory_mb, stored.timeout_s, stored.concurrency) == (512, 3.0, 7)
    assert stored.description == "old"  # options not given are left alone
    assert stored.updated_at > before.updated_at
    assert changed == ["hello"]  # e.g. the invocation cache is told at once

    with pytest.raises(InvalidInput, match="handler"):
        await env.functions.update(env.project, "hello", None, FunctionOptions(handler="x.y"))


async def test_update_or_rollback_of_an_unknown_function_is_not_found(env: Env) -> None:
    with pytest.raises(NotFound):
        await env.functions.update(env.project, "nope", HELLO, FunctionOptions())
    with pytest.raises(NotFound):
        await env.functions.rollback(env.project, "nope", 1)
    with pytest.raises(NotFound):
        await env.functions.delete(env.project, "nope")


async def test_failed_build_keeps_the_previous_version_serving(env: Env) -> None:
    await env.create()
    building = await env.functions.update(env.project, "hello", BROKEN, FunctionOptions())
    assert building.state == BuildState.BUILDING
    assert building.function.active_version == 1

    await env.functions.wait_built()
    view = await env.functions.view(await env.stored())
    assert view.state == BuildState.BUILD_FAILED
    assert view.function.latest_version == 2 and view.function.active_version == 1
    assert view.active is not None and view.active.version == 1
    assert MISSING_REQUIREMENT.split("==")[0] in view.latest.build_log  # the installer's error
    assert await env.states() == [(1, BuildState.READY), (2, BuildState.BUILD_FAILED)]

    with pytest.raises(Conflict, match="build_failed"):
        await env.functions.rollback(env.project, "hello", 2)
    with pytest.raises(NotFound):
        await env.functions.rollback(env.project, "hello", 3)
    assert (await env.stored()).active_version == 1


async def test_failed_first_build_leaves_no_active_version(env: Env) -> None:
    view = await env.create(package=BROKEN)
    assert view.state == BuildState.BUILDING and view.active is None
    await env.functions.wait_built()
    view = await env.functions.view(await env.stored())
    assert view.state == BuildState.BUILD_FAILED
    assert view.function.active_version is None and view.active is None


async def test_delete_removes_the_function_and_its_versions(env: Env) -> None:
    await env.create()
    await env.functions.update(env.project, "hello", HELLO_2, FunctionOptions())
    function_id = (await env.stored()).id

    await env.functions.delete(env.project, "hello")
    with pytest.raises(NotFound):
        await env.functions.get(env.project, "hello")
    with pytest.raises(NotFound):
        await env.functions.versions(env.project, "hello")
    assert await env.store.list_versions(function_id) == []
    assert await env.functions.all(env.project) == []

    again = await env.create(package=HELLO_2)  # the name is free again, numbering restarts
    assert again.function.id != function_id
    assert await env.states() == [(1, BuildState.READY)]


async def test_resume_builds_finishes_a_version_left_building(env: Env) -> None:
    """As after a crash mid-build: the version is stored in state building, no build runs."""
    package = make_zip(
        {"main.py": "def main(p):\n    return p\n", "requirements.txt": "six==1.16.0\n"}
    )
    info = env.workspace.inspect(package)
    function = Function(id=new_id(), project_id=env.project.id, name="resumed", latest_version=1)
    version = FunctionVersion(
        function.id, 1, env.workspace.artifacts.put(package), info.handler, info.requirements_hash
    )
    await env.store.create_function(function, version)
    plain = Function(id=new_id(), project_id=env.project.id, name="plain", latest_version=1)
    await env.store.create_function(
        plain, FunctionVersion(plain.id, 1, env.workspace.artifacts.put(HELLO), "main.main", None)
    )

    # a fresh service, as in a new process
    functions = Functions(env.settings, env.store, env.workspace)
    left = await env.store.versions_with_state(BuildState.BUILDING)
    assert {v.function_id for v in left} == {function.id, plain.id}
    await functions.resume_builds(left)
    await functions.wait_built()

    for name in ("resumed", "plain"):
        view = await functions.view(await env.stored(name))
        assert view.state == BuildState.READY, view.latest.build_log
        assert view.function.active_version == 1
        assert (env.workspace.code_root / view.latest.package_digest / "main.py").is_file()
    assert await env.store.versions_with_state(BuildState.BUILDING) == []


async def test_the_code_of_the_live_version_lists_its_files_and_reads_one(env: Env) -> None:
    await env.create(package=make_zip({"app/main.py": "def main(p):\n    return 'v1'\n"}))
    blob = bytes(range(256)) * 2
    big = "x = 1\n" * 60_000  # over the size shown
    package = make_zip({"main.py": "def main(p):\n    return 'v2'\n", "lib/data.bin": blob})
    await env.functions.update(env.project, "hello", package, FunctionOptions())
    await env.functions.update(
        env.project, "hello", make_zip({"main.py": HELLO_SOURCE, "big.py": big}), FunctionOptions()
    )
    code = Code(env.functions)
    await env.functions.rollback(env.project, "hello", 2)
    live = await code.version(env.project, "hello")
    assert live is not None and live.version == 2
    assert await code.files(live) == [PackageFile("lib/data.bin", 512), PackageFile("main.py", 29)]
    source = await code.read(live, "main.py")
    assert source.text == "def main(p):\n    return 'v2'\n" and not source.truncated
    binary = await code.read(live, "lib/data.bin")
    assert binary.text is None and binary.size == 512
    with pytest.raises(NotFound, match=r"no file 'nope\.py'"):
        await code.read(live, "nope.py")
    # A zip of one folder reads as the sandbox sees it: without the folder.
    first = await code.version(env.project, "hello", 1)
    assert first is not None and [f.path for f in await code.files(first)] == ["main.py"]
    third = await code.version(env.project, "hello", 3)
    assert third is not None
    shown = await code.read(third, "big.py")
    assert shown.truncated and shown.size == len(big) and len(shown.text or "") == MAX_SHOWN_BYTES
    with pytest.raises(NotFound):
        await code.version(env.project, "hello", 9)


async def test_saved_payloads_are_json_named_per_function_and_replace(env: Env) -> None:
    await env.create()
    payloads = SavedPayloads(env.store, env.functions)
    await payloads.save(env.project, "hello", "small", '{"n": 1}')
    await payloads.save(env.project, "hello", "small", '{"n": 2}')
    assert [(s.name, s.payload) for s in await payloads.all(env.project, "hello")] == [
        ("small", '{"n": 2}')
    ]
    with pytest.raises(InvalidInput, match="not valid JSON: Expecting"):
        await payloads.save(env.project, "hello", "bad", "{nope")
    with pytest.raises(InvalidName):
        await payloads.save(env.project, "hello", "Has Spaces", "1")
    with pytest.raises(NotFound):
        await payloads.save(env.project, "nobody", "small", "1")
    await payloads.delete(env.project, "hello", "small")
    with pytest.raises(NotFound, match="no saved payload 'small'"):
        await payloads.delete(env.project, "hello", "small")
