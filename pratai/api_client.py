"""`ApiClient`: the HTTP API call by call, for the CLI; where it finds the server and the key is
`pratai.credentials`, how it reads answers and writes forms is `pratai.wire` (as the SDK does)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx

from pratai.credentials import find_credentials
from pratai.wire import decode, fields, unreachable

__all__ = ["ApiClient"]


def _decoded(response: httpx.Response) -> Any:
    """The decoded JSON body of a success; an `ApiError` carrying the error body otherwise."""
    return decode(response.status_code, response.reason_phrase, response.content)


class ApiClient:
    """One method a call of the HTTP API; answers are the decoded JSON bodies."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 960,
        max_connections: int = 100,
    ):
        if url is None or api_key is None:
            found = find_credentials()
            url, api_key = url or found.url, api_key or found.api_key
        self.url = url.rstrip("/")
        # The SDK keeps many long-polls in flight: every one of them may hold a connection.
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
            limits=limits,
        )

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise unreachable(self.url, exc) from exc
        return _decoded(response)

    def stream_lines(self, path: str, **params: Any) -> Iterator[Any]:
        """GET a JSON-lines response, decoding each line as it arrives."""
        try:
            with self._http.stream("GET", path, params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    _decoded(response)
                for line in response.iter_lines():
                    if line.strip():
                        yield json.loads(line)
        except httpx.ConnectError as exc:
            raise unreachable(self.url, exc) from exc

    # functions
    def create_function(self, name: str, package: bytes | BinaryIO | None, **options: Any) -> Any:
        """`package` None: an image function (options image=REF, contract=http|stdio). A file
        object is read by chunks as it is sent (the CLI counts them for its progress)."""
        form = {**fields(options), "name": name}
        files = {"file": ("package.zip", package)} if package is not None else None
        return self.request("POST", "/v1/functions", data=form, files=files)

    def update_function(self, name: str, package: bytes | BinaryIO | None, **options: Any) -> Any:
        form = fields(options)
        files = {"file": ("package.zip", package)} if package is not None else None
        return self.request("PATCH", f"/v1/functions/{name}", data=form, files=files)

    def list_functions(self) -> Any:
        return self.request("GET", "/v1/functions")

    def get_function(self, name: str) -> Any:
        return self.request("GET", f"/v1/functions/{name}")

    def list_versions(self, name: str) -> Any:
        return self.request("GET", f"/v1/functions/{name}/versions")

    def rollback(self, name: str, version: int) -> Any:
        return self.request("POST", f"/v1/functions/{name}/rollback", json={"version": version})

    def delete_function(self, name: str) -> None:
        self.request("DELETE", f"/v1/functions/{name}")

    # container images
    def load_image(self, path: str | Path, archive: BinaryIO | None = None) -> Any:
        """Uploads an OCI or docker-save archive, streamed from disk (from `archive`, the file
        opened, when given)."""
        with Path(path).open("rb") if archive is None else archive as stream:
            files = {"file": (Path(path).name, stream, "application/x-tar")}
            return self.request("POST", "/v1/images", files=files)

    def list_images(self) -> Any:
        return self.request("GET", "/v1/images")

    def delete_image(self, ref: str) -> None:
        self.request("DELETE", f"/v1/images/{ref}")

    # invocations
    def invoke(
        self,
        name: str,
        payload: bytes,
        *,
        run_async: bool = False,
        content_type: str = "application/json",
    ) -> Any:
        return self.request(
            "POST",
            f"/v1/functions/{name}/invoke",
            params={"async": "true"} if run_async else None,
            content=payload,
            headers={"Content-Type": content_type},
        )

    def get_invocation(self, invocation_id: str) -> Any:
        return self.request("GET", f"/v1/invocations/{invocation_id}")

    def list_invocations(self, function: str | None = None, limit: int = 50) -> Any:
        params: dict[str, Any] = {"limit": limit}
        if function:
            params["function"] = function
        return self.request("GET", "/v1/invocations", params=params)

    def invocation_tree(self, invocation_id: str) -> Any:
        return self.request("GET", f"/v1/invocations/{invocation_id}/tree")

    # events and triggers
    def publish(self, topic: str, data: bytes, headers: dict[str, str] | None = None) -> Any:
        return self.request("POST", f"/v1/events/{topic}", content=data, headers=headers or {})

    def list_events(self, topic: str, limit: int = 50) -> Any:
        return self.request("GET", f"/v1/events/{topic}", params={"limit": limit})

    def redrive(self, event_id: str) -> Any:
        return self.request("POST", f"/v1/dead-letter/{event_id}/redrive")

    def list_triggers(self, function: str | None = None) -> Any:
        return self.request(
            "GET", "/v1/triggers", params={"function": function} if function else None
        )

    def create_trigger(self, function: str, **spec: Any) -> Any:
        body = {k: v for k, v in spec.items() if v is not None}
        return self.request("POST", "/v1/triggers", json={"function": function, **body})

    def delete_trigger(self, trigger_id: str) -> None:
        self.request("DELETE", f"/v1/triggers/{trigger_id}")

    # tenancy
    def whoami(self) -> Any:
        return self.request("GET", "/v1/whoami")

    def create_project(self, name: str) -> Any:
        return self.request("POST", "/v1/projects", json={"name": name})

    def list_projects(self) -> Any:
        return self.request("GET", "/v1/projects")

    def create_user(self, name: str, project: str, role: str) -> Any:
        return self.request(
            "POST", "/v1/users", json={"name": name, "project": project, "role": role}
        )

    def set_password(self, name: str, password: str) -> None:
        path = f"/v1/users/{quote(name, safe='')}/password"
        self.request("PUT", path, json={"password": password})

    def create_key(self, **body: Any) -> Any:
        return self.request(
            "POST", "/v1/keys", json={k: v for k, v in body.items() if v is not None}
        )

    def list_keys(self, project: str | None = None) -> Any:
        return self.request("GET", "/v1/keys", params={"project": project} if project else None)

    def revoke_key(self, key_id: str) -> None:
        self.request("DELETE", f"/v1/keys/{key_id}")

    def audit(self, limit: int = 50) -> Any:
        return self.request("GET", "/v1/audit", params={"limit": limit})

    # node tokens
    def create_node_token(self, name: str) -> Any:
        return self.request("POST", "/v1/node-tokens", json={"name": name})

    def list_node_tokens(self) -> Any:
        return self.request("GET", "/v1/node-tokens")

    def revoke_node_token(self, token_id: str) -> None:
        self.request("DELETE", f"/v1/node-tokens/{token_id}")

    def list_nodes(self) -> Any:
        return self.request("GET", "/v1/nodes")

    def drain_node(self, name: str, drain: bool = True) -> Any:
        return self.request("POST" if drain else "DELETE", f"/v1/nodes/{name}/drain")

    # secrets
    def create_secret(self, name: str, value: str) -> Any:
        return self.request("POST", "/v1/secrets", json={"name": name, "value": value})

    def list_secrets(self) -> Any:
        return self.request("GET", "/v1/secrets")

    def delete_secret(self, name: str) -> None:
        self.request("DELETE", f"/v1/secrets/{name}")

    # connectors
    def create_connector(self, **body: Any) -> Any:
        return self.request("POST", "/v1/connectors", json=body)

    def list_connectors(self) -> Any:
        return self.request("GET", "/v1/connectors")

    def get_connector(self, name: str) -> Any:
        return self.request("GET", f"/v1/connectors/{name}")

    def delete_connector(self, name: str) -> None:
        self.request("DELETE", f"/v1/connectors/{name}")

    def logs(self, name: str, after: float | None = None) -> Any:
        params = {"after": after} if after is not None else None
        return self.request("GET", f"/v1/functions/{name}/logs", params=params)

    # jobs
    def submit_job(self, **spec: Any) -> Any:
        return self.request("POST", "/v1/jobs", json=spec)

    def get_job(self, job_id: str) -> Any:
        return self.request("GET", f"/v1/jobs/{job_id}")

    def list_jobs(self, limit: int = 50, status: str | None = None) -> Any:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        return self.request("GET", "/v1/jobs", params=params)["jobs"]

    def cancel_job(self, job_id: str) -> Any:
        return self.request("POST", f"/v1/jobs/{job_id}/cancel")

    def follow_job(self, job_id: str, follow: bool = True) -> Iterator[Any]:
        return self.stream_lines(f"/v1/jobs/{job_id}/output", follow=str(follow).lower())

    def save_job(self, name: str, **spec: Any) -> Any:
        return self.request("POST", "/v1/saved-jobs", json={"name": name, **spec})

    def list_saved_jobs(self) -> Any:
        return self.request("GET", "/v1/saved-jobs")["saved_jobs"]

    def get_saved_job(self, name: str) -> Any:
        return self.request("GET", f"/v1/saved-jobs/{name}")

    def delete_saved_job(self, name: str) -> None:
        self.request("DELETE", f"/v1/saved-jobs/{name}")

    def run_saved_job(self, name: str) -> Any:
        return self.request("POST", f"/v1/saved-jobs/{name}/run")

    def schedule_job(self, name: str, cron: str | None, timezone: str | None = None) -> Any:
        body = {"cron": cron, "timezone": timezone}
        return self.request("PUT", f"/v1/saved-jobs/{name}/schedule", json=body)
