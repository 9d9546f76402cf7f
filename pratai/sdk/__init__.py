"""The Python SDK: a client of the HTTP API only.

import pratai
client = pratai.Client()
client.submit(fn, *args, **kwargs).result()
"""

from __future__ import annotations

from pratai.errors import ApiError, RuntimeMismatch
from pratai.sdk.aio import AsyncClient, AsyncInvocation, AsyncJob
from pratai.sdk.client import Client, Invocation, Job
from pratai.sdk.errors import BuildFailed, RemoteError
from pratai.sdk.executor import Executor, JobFuture
from pratai.sdk.jobs import JobOptions

__all__ = [
    "ApiError",
    "AsyncClient",
    "AsyncInvocation",
    "AsyncJob",
    "BuildFailed",
    "Client",
    "Executor",
    "Invocation",
    "Job",
    "JobFuture",
    "JobOptions",
    "RemoteError",
    "RuntimeMismatch",
]
