"""The gateway: functions as HTTP APIs on /fn/<project>/<path>.

A route is `METHOD /path/{param}`; path parameters reach the function. A route is public or needs
a key of the project with at least a given role. Rate limits count in fixed windows in the store,
so they hold across every api process that shares it. A function that ships `schema.json` with
an "input" JSON Schema has requests validated (422) before any sandbox starts.
"""

from __future__ import annotations

import ast
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jsonschema

from pratai.core.models import Function, Project, Role, Route, new_id
from pratai.core.ports import FunctionReader, RateCounter, RouteStore
from pratai.core.tenants import RANK, Principal
from pratai.core.workspace import Workspace
from pratai.errors import (
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    Unauthorized,
    UnprocessableInput,
)

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_SEGMENT = re.compile(r"^(\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z0-9._~-]+)$")
_WINDOWS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_CACHE_SECONDS = 1.0


@dataclass(frozen=True, kw_only=True)
class RouteSpec:
    route: str  # "GET /users/{id}"
    auth: str = "public"
    rate_limit: str | None = None  # "100/minute"
    max_body_bytes: int | None = None
    timeout_s: float | None = None
    cors_origins: tuple[str, ...] = ()


def parse_route(text: str) -> tuple[str, str]:
    method, _, path = text.strip().partition(" ")
    method, path = method.upper(), path.strip()
    if method not in METHODS:
        raise InvalidInput(f"route {text!r}: the method must be one of {', '.join(METHODS)}")
    segments = path.strip("/").split("/") if path.strip("/") else []
    if not path.startswith("/") or not all(_SEGMENT.match(s) for s in segments):
        raise InvalidInput(f"route {text!r}: the path must look like /users/{{id}}")
    return method, "/" + "/".join(segments)


def parse_rate(text: str) -> tuple[int, float]:
    count, _, unit = text.partition("/")
    if not (count.isascii() and count.isdigit()) or int(count) < 1 or unit not in _WINDOWS:
        raise InvalidInput(f"rate limit {text!r}: use e.g. 100/minute (second, minute, hour, day)")
    return int(count), float(_WINDOWS[unit])


_JSON_TYPES = {
    "dict": "object",
    "list": "array",
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
}


def _hint_schema(node: ast.expr | None, typed: dict[str, ast.ClassDef]) -> dict[str, Any] | None:
    if isinstance(node, ast.Subscript):  # dict[str, int], list[str]: the outer type is enough
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    if node.id in _JSON_TYPES:
        return {"type": _JSON_TYPES[node.id]}
    if node.id in typed:
        fields = {
            item.target.id: _hint_schema(item.annotation, typed) or {}
            for item in typed[node.id].body
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
        }
        return {"type": "object", "properties": fields, "required": sorted(fields)}
    return None


def schema_from_hints(code: Path, handler: str) -> dict[str, Any] | None:
    """`def main(order: Order)` with `class Order(TypedDict): id: int` -> a JSON Schema."""
    module, _, func = handler.rpartition(".")
    source = code / (module.replace(".", "/") + ".py")
    try:
        tree = ast.parse(source.read_text())
    except (OSError, SyntaxError):
        return None
    typed = {
        n.name: n
        for n in tree.body
        if isinstance(n, ast.ClassDef)
        and any(isinstance(b, ast.Name) and b.id == "TypedDict" for b in n.bases)
    }
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == func:
            args = node.args.args
            return _hint_schema(args[0].annotation, typed) if len(args) == 1 else None
    return None


def describe_limits(route: Route) -> str:
    parts = [route.auth]
    if route.rate_limit and route.rate_window_s:
        parts.append(f"{route.rate_limit} per {route.rate_window_s:g} s")
    if route.max_body_bytes:
        parts.append(f"body <= {route.max_body_bytes} B")
    if route.timeout_s:
        parts.append(f"timeout {route.timeout_s:g} s")
    if route.cors_origins:
        parts.append("CORS " + " ".join(route.cors_origins))
    return ", ".join(parts)


def _matches(template: str, path: str) -> dict[str, str] | None:
    want, got = template.strip("/").split("/"), path.strip("/").split("/")
    if len(want) != len(got):
        return None
    params = {}
    for w, g in zip(want, got, strict=True):
        if w.startswith("{"):
            if not g:
                return None
            params[w[1:-1]] = g
        elif w != g:
            return None
    return params


def new_route(project_id: str, function_id: str, spec: RouteSpec) -> Route:
    """The function's route that `spec` describes, or InvalidInput; stored by the deploy."""
    method, path = parse_route(spec.route)
    if spec.auth != "public" and spec.auth not in [r.value for r in Role]:
        raise InvalidInput("route auth must be public or a role: viewer, invoker, ...")
    count, window = parse_rate(spec.rate_limit) if spec.rate_limit else (None, None)
    return Route(
        id=new_id(),
        project_id=project_id,
        function_id=function_id,
        method=method,
        path=path,
        auth=spec.auth,
        rate_limit=count,
        rate_window_s=window,
        max_body_bytes=spec.max_body_bytes,
        timeout_s=spec.timeout_s,
        cors_origins=list(spec.cors_origins),
    )


class _Store(RouteStore, RateCounter, FunctionReader, Protocol):
    """What the gateway reads: routes, request counts, the functions routes run."""


class Gateway:
    def __init__(self, store: _Store, workspace: Workspace) -> None:
        self.store = store
        self.workspace = workspace
        self._routes: dict[str, tuple[float, list[Route]]] = {}
        self._schemas: dict[str, dict[str, Any] | None] = {}

    def forget(self, route: Route) -> None:
        """A route was added: its project's cached routes are stale."""
        self._routes.pop(route.project_id, None)

    async def routes_of(self, function: Function) -> list[Route]:
        return await self.store.list_routes(function.project_id, function.id)

    async def routes(self, project_id: str) -> list[Route]:
        cached = self._routes.get(project_id)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        found = await self.store.list_routes(project_id)
        self._routes[project_id] = (time.monotonic() + _CACHE_SECONDS, found)
        return found

    async def match(self, project: Project, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed_elsewhere = False
        for route in await self.routes(project.id):
            params = _matches(route.path, path)
            if params is None:
                continue
            if route.method == method:
                return route, params
            allowed_elsewhere = True
        if allowed_elsewhere:
            raise InvalidInput(f"{method} is not routed for {path}")
        raise NotFound(f"no route for {method} {path}")

    def authorize(self, route: Route, who: Principal | None, project: Project) -> None:
        if route.auth == "public":
            return
        if who is None:
            raise Unauthorized("this route needs an API key: send 'Authorization: Bearer <key>'")
        if who.project.id != project.id:
            raise NotFound(f"no route for {route.method} {route.path}")
        if RANK[who.role] < RANK[Role(route.auth)]:
            raise Forbidden(f"this route needs a {route.auth} key")

    async def limit(self, route: Route, caller: str) -> None:
        """Count the request against the route's limit, per caller (key id or client address)."""
        if not route.rate_limit or not route.rate_window_s:
            return
        now = time.time()
        window = int(now // route.rate_window_s)
        count = await self.store.hit(f"route:{route.id}:{caller}", window)
        if count > route.rate_limit:
            retry_after = (window + 1) * route.rate_window_s - now
            raise RateLimited(
                f"over the limit of {route.rate_limit} requests per "
                f"{route.rate_window_s:g} s on this route",
                retry_after,
            )

    async def input_schema(self, function: Function) -> dict[str, Any] | None:
        """The request body's schema of the active version: schema.json's "input", else the
        type hint of the handler's first parameter (a builtin type, or a TypedDict of the
        module)."""
        if function.runtime == "image" or function.active_version is None:
            return None  # a container declares no schema; nothing runs yet
        version = await self.store.get_version(function.id, function.active_version)
        if version is None:
            return None
        digest = version.package_digest
        if digest not in self._schemas:
            code = await self.workspace.code_dir(digest)
            schema = None
            if (code / "schema.json").is_file():
                declared = json.loads((code / "schema.json").read_text())
                schema = declared.get("input") if isinstance(declared, dict) else None
            else:
                schema = schema_from_hints(code, version.handler)
            self._schemas[digest] = schema
        return self._schemas[digest]

    @staticmethod
    def validate(schema: dict[str, Any], body: Any) -> None:
        errors = sorted(
            jsonschema.Draft202012Validator(schema).iter_errors(body), key=lambda e: e.path
        )
        if errors:
            problems = [
                {"field": "/".join(str(p) for p in e.path) or "(body)", "problem": e.message}
                for e in errors
            ]
            raise UnprocessableInput(
                "the request does not match the function's input schema: "
                + "; ".join(f"{p['field']}: {p['problem']}" for p in problems),
                errors=problems,
            )

    async def openapi(self, project: Project) -> dict[str, Any]:
        paths: dict[str, dict[str, Any]] = {}
        for route in await self.routes(project.id):
            function = await self.store.get_function_by_id(route.function_id)
            operation: dict[str, Any] = {
                "operationId": f"{route.method.lower()}_{function.name if function else '?'}",
                "summary": function.description if function else "",
                "parameters": [
                    {"name": p[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
                    for p in route.path.split("/")
                    if p.startswith("{")
                ],
                "responses": {"200": {"description": "the function's answer"}},
            }
            if route.auth != "public":
                operation["security"] = [{"bearer": []}]
            schema = await self.input_schema(function) if function else None
            if schema is not None:
                operation["requestBody"] = {"content": {"application/json": {"schema": schema}}}
            paths.setdefault(route.path, {})[route.method.lower()] = operation
        return {
            "openapi": "3.1.0",
            "info": {"title": f"{project.name} functions", "version": "1"},
            "servers": [{"url": f"/fn/{project.name}"}],
            "paths": paths,
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        }
