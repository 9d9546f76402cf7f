"""Deploying functions: immutable versions, builds, rollback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from pratai.core.capacity import NodeCapacity, check_fits
from pratai.core.gateway import RouteSpec, new_route
from pratai.core.images import Images, check_contract, image_digest
from pratai.core.models import (
    BuildState,
    Function,
    FunctionVersion,
    Project,
    Route,
    Trigger,
    check_name,
    new_id,
    now,
)
from pratai.core.packages import PackageInfo
from pratai.core.ports import FunctionStore
from pratai.core.provisioning import Provisioning, provision
from pratai.core.runtimes import NODE, PYTHON, check_runtime
from pratai.core.secrets import Secrets
from pratai.core.triggers import TriggerSpec, new_trigger
from pratai.core.workspace import Workspace
from pratai.errors import Conflict, InvalidInput, NotFound
from pratai.settings import Settings

log = logging.getLogger("pratai.functions")

MIN_MEMORY_MB = 16
MAX_MEMORY_MB = 8192
DEFAULT_MEMORY_MB = 128
MAX_TIMEOUT_S = 900
MAX_CONCURRENCY = 1000
MAX_RETRIES = 20


class InstanceEvictor(Protocol):
    async def evict(self, function_id: str) -> None: ...


@dataclass
class FunctionView:
    function: Function
    latest: FunctionVersion
    active: FunctionVersion | None
    provisioned: Provisioning  # the CPU its instances get, from its memory and the nodes'

    @property
    def state(self) -> BuildState:
        return self.latest.state


@dataclass(frozen=True, kw_only=True)
class FunctionOptions:
    description: str | None = None
    memory_mb: int | None = None
    timeout_s: float | None = None
    network: bool | None = None
    concurrency: int | None = None
    handler: str | None = None
    max_retries: int | None = None
    secrets: dict[str, str] | None = None  # env var -> secret name
    runtime: str | None = None  # "python" (the default) or "node20"
    image: str | None = None  # a container image ref of the project (runtime "image")
    contract: str | None = None  # image functions: http | stdio (the version's handler)
    fresh_per_call: bool | None = None  # True: a new sandbox per call; False: warm reuse


@dataclass(frozen=True, kw_only=True)
class DeploySpec:
    """A new function: its package (or `options.image`), and the trigger and the gateway route
    that come with it."""

    name: str
    package: bytes | None = None
    options: FunctionOptions = field(default_factory=FunctionOptions)
    trigger: TriggerSpec | None = None
    route: RouteSpec | None = None


def _check_options(options: FunctionOptions) -> None:
    if options.memory_mb is not None and not MIN_MEMORY_MB <= options.memory_mb <= MAX_MEMORY_MB:
        raise InvalidInput(f"memory must be between {MIN_MEMORY_MB} and {MAX_MEMORY_MB} MB")
    if options.timeout_s is not None and not 0 < options.timeout_s <= MAX_TIMEOUT_S:
        raise InvalidInput(f"timeout must be between 0 and {MAX_TIMEOUT_S} seconds")
    if options.concurrency is not None and not 1 <= options.concurrency <= MAX_CONCURRENCY:
        raise InvalidInput(f"concurrency must be between 1 and {MAX_CONCURRENCY}")
    if options.max_retries is not None and not 0 <= options.max_retries <= MAX_RETRIES:
        raise InvalidInput("max retries must be between 0 and 20")
    if options.runtime is not None:
        check_runtime(options.runtime)


class Functions:
    def __init__(
        self,
        settings: Settings,
        store: FunctionStore,
        workspace: Workspace,
        evictor: InstanceEvictor | None = None,
        images: Images | None = None,
        secrets: Secrets | None = None,
        capacity: NodeCapacity | None = None,
    ) -> None:
        self.settings = settings
        self.capacity = capacity  # None: no node's budget is known, nothing is refused
        self.store = store
        self.workspace = workspace
        self.evictor = evictor
        self.images = images
        self.secrets = secrets
        self._builds: set[asyncio.Task[None]] = set()
        # told of every change this process makes, e.g. to drop cached copies
        self.listeners: list[Callable[[Function], None]] = []
        # told of the triggers and routes a deploy stored, e.g. to drop cached subscribers
        self.trigger_listeners: list[Callable[[Trigger], None]] = []
        self.route_listeners: list[Callable[[Route], None]] = []
        # told of functions deleted and of builds ended (metrics)
        self.delete_listeners: list[Callable[[Function], Awaitable[None]]] = []
        self.build_listeners: list[Callable[[BuildState], None]] = []

    def _changed(self, function: Function) -> None:
        for listener in self.listeners:
            listener(function)

    async def get(self, project: Project, name: str) -> Function:
        function = await self.store.get_function(project.id, name)
        if function is None:
            raise NotFound(f"function {name!r} not found", function=name)
        return function

    async def by_id(self, function_id: str) -> Function | None:
        return await self.store.get_function_by_id(function_id)

    async def view(self, function: Function) -> FunctionView:
        latest = await self.store.get_version(function.id, function.latest_version)
        assert latest is not None, "a function always has its latest version"
        active = None
        if function.active_version is not None:
            active = await self.store.get_version(function.id, function.active_version)
        return FunctionView(function, latest, active, self.provisioned(function.memory_mb))

    def provisioned(self, memory_mb: int) -> Provisioning:
        """What an instance with `memory_mb` gets, bounded by the CPUs of the largest node
        (a node with fewer CPUs caps it at its own)."""
        return provision(memory_mb, self.capacity.largest_cpus() if self.capacity else None)

    async def all(self, project: Project) -> list[Function]:
        return await self.store.list_functions(project.id)

    async def versions(self, project: Project, name: str) -> list[FunctionVersion]:
        return await self.store.list_versions((await self.get(project, name)).id)

    async def deploy(self, project: Project, spec: DeploySpec) -> FunctionView:
        """A new function with its first version, trigger and route. Everything is checked
        first, in the order the API has always answered (route, secrets, trigger, name and
        options, package, a name already taken), then stored in one transaction: a bad or
        clashing part leaves nothing behind."""
        function_id = new_id()
        routes = [new_route(project.id, function_id, spec.route)] if spec.route else []
        await self._check_bindings(project, spec.options)
        triggers = [new_trigger(project.id, function_id, spec.trigger)] if spec.trigger else []
        function = self._new_function(project, spec, function_id)
        package = None if function.runtime == "image" else spec.package
        info = None
        if package is not None:
            info = self.workspace.inspect(package, spec.options.handler, function.runtime)
        if await self.store.get_function(project.id, spec.name) is not None:
            raise Conflict(f"function {spec.name!r} already exists", function=spec.name)
        if package is None or info is None:  # it runs an image
            image, contract = spec.options.image or "", spec.options.contract or "http"
            version = await self._image_version(project, function, image, contract)
            await self._store_new(function, version, triggers, routes)
            return await self.view(function)
        version = await self._package_version(function, package, info)
        await self._store_new(function, version, triggers, routes)
        return await self._build(function, version, info.requirements)

    async def _package_version(
        self, function: Function, package: bytes, info: PackageInfo
    ) -> FunctionVersion:
        """The function's latest version, of this package (stored), as `info` describes it."""
        digest = await asyncio.to_thread(self.workspace.artifacts.put, package)
        return FunctionVersion(
            function_id=function.id,
            version=function.latest_version,
            package_digest=digest,
            handler=info.handler,
            requirements_hash=info.requirements_hash,
        )

    async def _store_new(
        self,
        function: Function,
        version: FunctionVersion,
        triggers: list[Trigger],
        routes: list[Route],
    ) -> None:
        await self.store.create_function(function, version, triggers, routes)
        for trigger in triggers:
            for on_trigger in self.trigger_listeners:
                on_trigger(trigger)
        for route in routes:
            for on_route in self.route_listeners:
                on_route(route)

    async def _check_bindings(self, project: Project, options: FunctionOptions) -> None:
        if not options.secrets:
            return
        if self.secrets is None:  # never silently accept bindings nobody checked
            raise InvalidInput("this platform keeps no secrets to bind")
        await self.secrets.check_bindings(project, options.secrets)

    def _new_function(self, project: Project, spec: DeploySpec, function_id: str) -> Function:
        """The function to deploy: of runtime "image" when it runs `options.image`."""
        options = spec.options
        check_name(spec.name)
        _check_options(options)
        check_fits(self.capacity, f"function {spec.name!r}", options.memory_mb or DEFAULT_MEMORY_MB)
        package = None if options.image is not None else spec.package
        if package is None and not options.image:
            raise InvalidInput("a function needs a package (--file) or an image (--image)")
        return Function(
            id=function_id,
            project_id=project.id,
            name=spec.name,
            description=options.description or "",
            memory_mb=options.memory_mb or DEFAULT_MEMORY_MB,
            timeout_s=options.timeout_s or 30.0,
            network=bool(options.network),
            concurrency=options.concurrency or self.settings.default_concurrency,
            max_retries=2 if options.max_retries is None else options.max_retries,
            secrets=options.secrets or {},
            runtime="image" if package is None else options.runtime or PYTHON,
            latest_version=1,
            active_version=1 if package is None else None,  # an image needs no build
            fresh_per_call=bool(options.fresh_per_call),
        )

    async def update(
        self, project: Project, name: str, package: bytes | None, options: FunctionOptions
    ) -> FunctionView:
        """A new package makes a new version; options alone change the function in place."""
        await self._check_bindings(project, options)
        _check_options(options)
        if options.memory_mb is not None:
            check_fits(self.capacity, f"function {name!r}", options.memory_mb)
        function = await self.get(project, name)
        if options.runtime is not None and options.runtime != function.runtime:
            raise InvalidInput(
                f"function {name!r} runs {function.runtime}; a runtime cannot change (its "
                "versions stay deployable): create a new function",
                runtime=function.runtime,
            )
        if options.description is not None:
            function.description = options.description
        if options.memory_mb is not None:
            function.memory_mb = options.memory_mb
        if options.timeout_s is not None:
            function.timeout_s = options.timeout_s
        if options.network is not None:
            function.network = options.network
        if options.concurrency is not None:
            function.concurrency = options.concurrency
        if options.max_retries is not None:
            function.max_retries = options.max_retries
        if options.secrets is not None:
            function.secrets = options.secrets
        if options.fresh_per_call is not None:
            function.fresh_per_call = options.fresh_per_call
        function.updated_at = now()
        if function.runtime == "image" or options.image is not None:
            if package is not None:
                raise InvalidInput("a container image function takes --image, not a package")
            if options.image is not None or options.contract is not None:
                return await self._new_image_version(project, function, options)
        if package is None:
            if options.handler is not None:
                raise InvalidInput("a new handler needs a new package (--file)")
            await self.store.update_function(function)
            self._changed(function)
            await self._evict(function.id)
            return await self.view(function)
        latest = await self.store.get_version(function.id, function.latest_version)
        handler = options.handler or (latest.handler if latest else None)
        function.latest_version += 1
        info = self.workspace.inspect(package, handler, function.runtime)
        version = await self._package_version(function, package, info)
        await self.store.add_version(version)
        await self.store.update_function(function)
        self._changed(function)
        return await self._build(function, version, info.requirements)

    async def _image_version(
        self, project: Project, function: Function, ref: str, contract: str
    ) -> FunctionVersion:
        """A ready version running the project's image `ref`: its content id is the package
        digest and the contract the handler, so each image change is a version to roll back
        to."""
        if self.images is None:
            raise InvalidInput("this platform runs no container images")
        image = await self.images.get(project, ref)
        function.image = image.ref
        return FunctionVersion(
            function_id=function.id,
            version=function.latest_version,
            package_digest=image_digest(image.image_id),
            handler=check_contract(contract),
            requirements_hash=None,
            state=BuildState.READY,
            build_log=f"container image {image.ref} ({image.image_id[:12]})\n",
        )

    async def _new_image_version(
        self, project: Project, function: Function, options: FunctionOptions
    ) -> FunctionView:
        latest = await self.store.get_version(function.id, function.latest_version)
        function.latest_version += 1
        version = await self._image_version(
            project,
            function,
            options.image or function.image or "",
            options.contract or (latest.handler if latest else "http"),
        )
        function.runtime = "image"
        function.active_version = version.version
        await self.store.add_version(version)
        await self.store.update_function(function)
        self._changed(function)
        await self._evict(function.id)
        return await self.view(function)

    async def rollback(self, project: Project, name: str, version_number: int) -> FunctionView:
        function = await self.get(project, name)
        version = await self.store.get_version(function.id, version_number)
        if version is None:
            raise NotFound(
                f"function {name!r} has no version {version_number}", version=version_number
            )
        if version.state != BuildState.READY:
            raise Conflict(f"version {version_number} is {version.state}, not ready")
        function.active_version = version_number
        function.updated_at = now()
        await self.store.update_function(function)
        self._changed(function)
        return await self.view(function)

    async def delete(self, project: Project, name: str) -> None:
        function = await self.get(project, name)
        await self.store.delete_function(function.id)
        self._changed(function)
        for listener in self.delete_listeners:
            await listener(function)
        await self._evict(function.id)

    async def wait_built(self) -> None:
        """For tests and shutdown: wait for builds in flight."""
        while self._builds:
            await asyncio.gather(*list(self._builds), return_exceptions=True)

    async def resume_builds(self, versions: list[FunctionVersion]) -> None:
        """Builds interrupted by a restart start again."""
        for version in versions:
            function = await self.store.get_function_by_id(version.function_id)
            if function is not None:
                log.info("resuming the build of %s version %d", function.name, version.version)
                data = await asyncio.to_thread(self.workspace.artifacts.get, version.package_digest)
                info = self.workspace.inspect(data, version.handler, function.runtime)
                await self._build(function, version, info.requirements)

    async def _evict(self, function_id: str) -> None:
        if self.evictor is not None:
            await self.evictor.evict(function_id)

    async def _build(
        self, function: Function, version: FunctionVersion, requirements: str | None
    ) -> FunctionView:
        if requirements is None:
            await self.workspace.code_dir(version.package_digest)
            none = "package.json dependencies" if function.runtime == NODE else "requirements.txt"
            await self._finish_build(function, version, BuildState.READY, f"no {none}\n")
        else:
            task = asyncio.create_task(self._run_build(function, version, requirements))
            self._builds.add(task)
            task.add_done_callback(self._builds.discard)
        return await self.view(function)

    async def _run_build(
        self, function: Function, version: FunctionVersion, requirements: str
    ) -> None:
        try:
            await self.workspace.code_dir(version.package_digest)
            assert version.requirements_hash is not None
            result = await self.workspace.environment(
                requirements, version.requirements_hash, function.runtime
            )
            state = BuildState.READY if result.ok else BuildState.BUILD_FAILED
            note = "environment reused from cache\n" if result.cached else ""
            await self._finish_build(function, version, state, note + result.log)
        except Exception as exc:  # a build must always end in a state the user can see
            log.exception("build of %s v%s failed", function.name, version.version)
            await self._finish_build(function, version, BuildState.BUILD_FAILED, repr(exc))

    async def _finish_build(
        self, function: Function, version: FunctionVersion, state: BuildState, build_log: str
    ) -> None:
        version.state = state
        version.build_log = build_log[-64_000:]
        await self.store.update_version(version)
        for listener in self.build_listeners:
            listener(state)
        if state == BuildState.READY:
            current = await self.store.get_function_by_id(function.id)
            if current is not None and (current.active_version or 0) < version.version:
                current.active_version = version.version
                current.updated_at = now()
                await self.store.update_function(current)
                self._changed(current)
                function.active_version = version.version
