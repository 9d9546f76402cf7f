"""The gateway: routes with path parameters, auth, rate limits across api processes, schemas."""

from __future__ import annotations

import json
import uuid

import httpx

from tests.helpers import Server, code, start_server

ROUTED = code("""
    def main(request):
        return {"statusCode": 200, "headers": {"X-Fn": "yes"},
                "body": {"id": request["params"].get("id"), "q": request["query"],
                         "body": request["body"]}}
""")


def _path() -> str:
    return f"/r{uuid.uuid4().hex[:8]}"


def test_public_route_with_path_parameters_openapi_and_cors(server: Server, deploy) -> None:
    base = _path()
    deploy(
        {"main.py": ROUTED},
        "--route",
        f"GET {base}/users/{{id}}",
        "--cors-origin",
        "https://app.example",
    )
    answer = httpx.get(f"{server.url}/fn/default{base}/users/42?x=1")
    assert answer.status_code == 200 and answer.headers["x-fn"] == "yes"
    assert answer.json() == {"id": "42", "q": {"x": "1"}, "body": None}
    assert httpx.post(f"{server.url}/fn/default{base}/users/42").status_code == 400
    assert httpx.get(f"{server.url}/fn/default{base}/nothing").status_code == 404
    spec = httpx.get(f"{server.url}/fn/default/openapi.json").json()
    operation = spec["paths"][f"{base}/users/{{id}}"]["get"]
    assert operation["parameters"][0]["name"] == "id"
    assert httpx.get(f"{server.url}/fn/default/docs").status_code == 200
    preflight = httpx.options(
        f"{server.url}/fn/default{base}/users/1",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    other = httpx.get(
        f"{server.url}/fn/default{base}/users/1", headers={"Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in other.headers


def test_route_roles(server: Server, deploy) -> None:
    base = _path()
    deploy({"main.py": ROUTED}, "--route", f"POST {base}/orders", "--route-auth", "invoker")
    url = f"{server.url}/fn/default{base}/orders"
    assert httpx.post(url, json={}).status_code == 401
    viewer = server.cli_json("key-create", "--role", "viewer")["token"]
    invoker = server.cli_json("key-create", "--role", "invoker")["token"]
    assert (
        httpx.post(url, json={}, headers={"Authorization": f"Bearer {viewer}"}).status_code == 403
    )
    ok = httpx.post(url, json={"n": 1}, headers={"Authorization": f"Bearer {invoker}"})
    assert ok.status_code == 200 and ok.json()["body"] == {"n": 1}


def test_input_schema_is_enforced_before_any_sandbox_starts(server: Server, deploy) -> None:
    base = _path()
    schema = {
        "input": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}},
        }
    }
    name = deploy(
        {"main.py": ROUTED, "schema.json": json.dumps(schema)}, "--route", f"POST {base}/greet"
    )
    url = f"{server.url}/fn/default{base}/greet"
    bad = httpx.post(url, json={"name": 7})
    assert bad.status_code == 422
    assert bad.json()["details"]["errors"][0]["field"] == "name"
    assert server.cli_json("invocation-list", name) == []  # nothing ran
    assert httpx.post(url, json={"name": "ana"}).status_code == 200
    spec = httpx.get(f"{server.url}/fn/default/openapi.json").json()
    body = spec["paths"][f"{base}/greet"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == schema["input"]


def test_route_body_limit(server: Server, deploy) -> None:
    base = _path()
    deploy({"main.py": ROUTED}, "--route", f"POST {base}/small", "--max-body", "16")
    url = f"{server.url}/fn/default{base}/small"
    assert httpx.post(url, content=b"x" * 64).status_code == 413
    assert httpx.post(url, json=[1]).status_code == 200


def test_rate_limit_holds_across_two_api_processes(tmp_path, make_zip_file) -> None:
    first = start_server(tmp_path)
    second = None
    try:
        first.cli(
            "function-create",
            "limited",
            "--file",
            str(make_zip_file({"main.py": ROUTED})),
            "--route",
            "GET /ping",
            "--rate-limit",
            "3/hour",
        )
        env = {k: v for k, v in first.env.items() if k != "PRATAI_PORT"}
        from tests.helpers import Server as Srv
        from tests.helpers import free_port

        port = free_port()
        second = Srv(home=first.home, port=port, env={**env, "PRATAI_PORT": str(port)})
        second.start()
        codes = [
            httpx.get(f"{s.url}/fn/default/ping").status_code
            for s in (first, second, first, second)
        ]
        assert codes[:3] == [200, 200, 200] and codes[3] == 429
        refused = httpx.get(f"{first.url}/fn/default/ping")
        assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 3600
        assert "3 requests per 3600 s" in refused.json()["message"]
    finally:
        if second is not None:
            second.stop()
        first.stop()


def test_route_time_limit_and_function_show(server: Server, deploy) -> None:
    base = _path()
    slow = "import time\ndef main(r):\n    time.sleep(5)\n    return 1\n"
    name = deploy(
        {"main.py": slow},
        "--route",
        f"GET {base}/slow",
        "--route-timeout",
        "0.5",
        "--rate-limit",
        "10/second",
    )
    answer = httpx.get(f"{server.url}/fn/default{base}/slow", timeout=30)
    assert answer.status_code == 504
    (route,) = server.cli_json("function-show", name)["routes"]
    assert route.startswith(f"GET {server.url}/fn/default{base}/slow")
    assert "10 per 1 s" in route and "timeout 0.5 s" in route


def test_input_declared_with_type_hints(server: Server, deploy) -> None:
    base = _path()
    typed = code("""
        from typing import TypedDict

        class Order(TypedDict):
            item: str
            count: int

        def main(order: Order):
            return order
    """)
    deploy({"main.py": typed}, "--route", f"POST {base}/orders")
    url = f"{server.url}/fn/default{base}/orders"
    bad = httpx.post(url, json={"item": "tea", "count": "many"})
    assert bad.status_code == 422 and "count" in bad.json()["message"]
    assert httpx.post(url, json={"item": "tea"}).status_code == 422
    good = httpx.post(url, json={"item": "tea", "count": 2})
    assert good.status_code == 200
    spec = httpx.get(f"{server.url}/fn/default/openapi.json").json()
    schema = spec["paths"][f"{base}/orders"]["post"]["requestBody"]["content"]
    assert schema["application/json"]["schema"]["required"] == ["count", "item"]
