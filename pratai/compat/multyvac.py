"""The multyvac SDK's job calls, run on Pratai, for code written against that SDK.

    from pratai.compat import multyvac
    multyvac.config.set_key(api_key="pk_ID", api_secret_key="SECRET", api_url="http://...")
    jid = multyvac.submit(add, 3, 4)
    multyvac.get(jid).get_result()

Job ids are Pratai's (strings). Options keep multyvac's reserved underscore names where
Pratai has the same notion (`_memory_mb`, `_timeout_s`, `_requirements`); the others
(`_core`, `_layer`, `_vol`, `_name`, `_tags`, ...) are accepted and ignored."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, overload

from pratai.sdk.client import Client
from pratai.sdk.client import Job as _PrataiJob

__all__ = ["Job", "config", "get", "map", "submit"]

# multyvac's vocabulary for Pratai's job statuses
STATUSES = {
    "queued": "queued",
    "running": "processing",
    "succeeded": "done",
    "failed": "error",
    "timed_out": "error",
    "cancelled": "killed",
}


class _Config:
    """`multyvac.config`: the key and URL, and the client built from them on first use."""

    def __init__(self) -> None:
        self.api_key: str | None = None
        self.api_secret_key: str | None = None
        self.api_url: str | None = None
        self._client: Client | None = None

    def set_key(
        self,
        api_key: str | None = None,
        api_secret_key: str | None = None,
        api_url: str | None = None,
    ) -> None:
        """`api_key` is a whole Pratai key (`pk_<id>.<secret>`), or its `pk_<id>` part with
        the secret in `api_secret_key`. Without them, the CLI's credentials are used."""
        self.api_key, self.api_secret_key, self.api_url = api_key, api_secret_key, api_url
        if self._client is not None:
            self._client.close()
        self._client = None

    @property
    def key(self) -> str | None:
        if not self.api_key:
            return None
        if self.api_secret_key:
            return f"{self.api_key}.{self.api_secret_key}"
        return self.api_key

    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.api_url, self.key)
        return self._client


config = _Config()


class Job:
    """multyvac's Job: `status`, `wait()`, `get_result()`, `result`, `kill()`, `stdout`."""

    def __init__(self, job: _PrataiJob) -> None:
        self._job = job
        self.jid = job.id

    @property
    def status(self) -> str:
        """Asks the server until the job has finished (as multyvac's did)."""
        self._job.done()
        return STATUSES.get(self._job.status, self._job.status)

    def is_done(self) -> bool:
        return self._job.done()

    def wait(self, timeout: float | None = None) -> str:
        """Blocks until the job has finished; its multyvac status."""
        self._job.wait(timeout)
        return self.status

    def get_result(self, timeout: float | None = None) -> Any:
        return self._job.result(timeout)

    @property
    def result(self) -> Any:
        return self._job.result()

    def kill(self) -> None:
        self._job.cancel()

    @property
    def stdout(self) -> str:
        self._job.wait()
        return self._job.stdout

    @property
    def stderr(self) -> str:
        self._job.wait()
        return self._job.stderr

    def __repr__(self) -> str:
        return f"Job({self.jid!r}, status={self.status!r})"


def _options(options: dict[str, Any]) -> dict[str, Any]:
    return {
        "requirements": options.get("_requirements"),
        "memory_mb": options.get("_memory_mb"),
        "timeout_s": options.get("_timeout_s"),
        "network": options.get("_network"),
    }


def submit(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """Runs `fn(*args, **kwargs)` remotely; the job id. Keywords starting with `_` are options."""
    reserved = {k: kwargs.pop(k) for k in [k for k in kwargs if k.startswith("_")]}
    job = config.client().submit_with(fn, args, kwargs, **_options(reserved))
    return job.id


def map(fn: Callable[..., Any], iterable: Iterable[Any], **options: Any) -> list[str]:
    """One job per item (as multyvac did); their ids, in order."""
    client = config.client()
    return [client.submit_with(fn, (item,), **_options(options)).id for item in iterable]


@overload
def get(jid: str) -> Job: ...
@overload
def get(jid: list[str]) -> list[Job]: ...
def get(jid: str | list[str]) -> Job | list[Job]:
    if isinstance(jid, list):
        return [get(j) for j in jid]
    return Job(config.client().get_job(jid))
