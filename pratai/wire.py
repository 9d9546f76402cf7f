"""What both clients of the HTTP API (the CLI's `ApiClient`, the SDK) read and send alike: an
answer's body or its `ApiError`, form fields, and the error of a server out of reach. It loads
neither httpx nor the SDK, so the CLI and the SDK can both import it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pratai.errors import ApiError

__all__ = ["decode", "fields", "unreachable"]


def decode(status: int, reason: str, content: bytes) -> Any:
    """The JSON body of a success; an `ApiError` carrying the error body otherwise."""
    if status == 204:
        return None
    try:
        body: Any = json.loads(content) if content else None
    except ValueError:
        body = content.decode(errors="replace")
    if status >= 400:
        message = body.get("message") if isinstance(body, dict) else body and str(body)
        raise ApiError(status, message or reason, body)
    return body


def unreachable(url: str, exc: BaseException) -> ApiError:
    return ApiError(0, f"cannot reach Pratai at {url}: is it running? ({exc})")


def fields(options: Mapping[str, Any]) -> dict[str, str | list[str]]:
    """Form fields or query parameters as the API reads them: booleans in lowercase, a list as
    repeated fields, None and () left out."""
    return {
        k: [_text(x) for x in v] if isinstance(v, list | tuple) else _text(v)
        for k, v in options.items()
        if v is not None and v != ()
    }


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
