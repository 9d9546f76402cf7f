"""Pratai's errors: two roots, one for each side of the wire, and the body that crosses it.

The server raises a `PrataiError`; `pratai.api.errors` answers it with its status and its
`to_dict()`, an `ErrorBody`. A client (the CLI, the SDK) raises an `ApiError`: the server said no
(its status, and the `code`, `message` and `details` of the `ErrorBody` it sent), or could not be
reached at all (status 0).

    PrataiError                 raised by the server
    ├── InvalidInput            (400) the request is malformed or breaks a rule
    │   ├── InvalidName         a function name is not a DNS-style label
    │   ├── InvalidPackage      not a zip, unsafe paths, zip bomb, no handler, syntax error
    │   ├── UnprocessableInput  (422) a gateway request that breaks the function's schema
    │   ├── RuntimeMismatch     no such runtime here, or a pickle from another Python version
    │   └── PayloadTooLarge     (413) body or package over its size limit
    ├── Unauthorized            (401) missing, unknown, revoked or expired API key
    ├── Forbidden               (403) the key's role does not allow the action
    ├── NotFound                (404) no such object in this project
    ├── Conflict                (409) the name exists, or the object is in the wrong state
    ├── RateLimited             (429) over a route's or key's rate limit (Retry-After set)
    ├── Unavailable             (503) the platform cannot take the work right now
    ├── SandboxError            (500) the sandbox failed to start or broke its protocol
    └── SettingsError           a PRATAI_* variable the process cannot start with (CLI: exit 2)

    ApiError                    raised by a client: the server said no, or could not be reached
    ├── RuntimeMismatch         the same class as above (see below)
    └── BuildFailed             (pratai.sdk.errors) a function's build failed

`RuntimeMismatch` is the one error both sides name, so it is one class in both trees: the server
raises it, and the SDK raises it again when an answer carries its code, so that a caller catches
what the server refused as `pratai.RuntimeMismatch` or as any `pratai.ApiError`. Every other
server error reaches a client as a plain `ApiError` whose `code` names it.

The HTTP mapping lives in one place: `pratai.api.errors`.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict, cast

ErrorDetails = dict[str, Any] | list[dict[str, Any]]


class ErrorBody(TypedDict):
    """The JSON body of every error answer (`pratai.api.errors.ErrorBody` documents it)."""

    error: str  # a stable code: invalid_input, not_found, runtime_mismatch, ...
    message: str
    details: NotRequired[ErrorDetails]  # for invalid_input, one {field, problem} each


# not ErrorBody.__required_keys__: Python 3.11 counts a postponed NotRequired as required
_REQUIRED = ("error", "message")


def error_body(answer: object) -> ErrorBody | None:
    """A decoded answer if it is an `ErrorBody`, else None (a proxy's page, another API's)."""
    if isinstance(answer, dict) and all(isinstance(answer.get(k), str) for k in _REQUIRED):
        return cast(ErrorBody, answer)
    return None


class ApiError(Exception):
    """The server said no (`status`, and the `code`, `message` and `details` of its error body;
    `code` is "" when the answer had none), or could not be reached (status 0)."""

    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body
        error = error_body(body)
        self.code: str = error["error"] if error else ""
        self.details: ErrorDetails = error.get("details", {}) if error else {}


class PrataiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def to_dict(self) -> ErrorBody:
        body = ErrorBody(error=self.code, message=self.message)
        if self.details:
            body["details"] = self.details
        return body


class InvalidInput(PrataiError):
    status = 400
    code = "invalid_input"


class InvalidName(InvalidInput):
    code = "invalid_name"


class InvalidPackage(InvalidInput):
    code = "invalid_package"


# mypy holds that `details` (a dict here, a dict or a list there) could be assigned a list
# through ApiError; nothing assigns it after construction, and here it is always a dict.
class RuntimeMismatch(InvalidInput, ApiError):  # type: ignore[misc]
    """Raised by the server with what it runs in `details`; raised by the SDK from the answer."""

    code = "runtime_mismatch"

    def __init__(self, message: str, **details: Any) -> None:
        body = ErrorBody(error=self.code, message=message, details=details)
        ApiError.__init__(self, self.status, message, body)

    @classmethod
    def received(cls, answer: ApiError) -> RuntimeMismatch:
        """The server's refusal as a client received it: its status and body as they came."""
        mismatch = cls(
            answer.message, **(answer.details if isinstance(answer.details, dict) else {})
        )
        mismatch.status, mismatch.body = answer.status, answer.body
        return mismatch


class UnprocessableInput(InvalidInput):
    status = 422
    code = "invalid_request"


class PayloadTooLarge(InvalidInput):
    status = 413
    code = "payload_too_large"


class Unauthorized(PrataiError):
    status = 401
    code = "unauthorized"


class Forbidden(PrataiError):
    status = 403
    code = "forbidden"


class NotFound(PrataiError):
    status = 404
    code = "not_found"


class Conflict(PrataiError):
    status = 409
    code = "conflict"


class RateLimited(PrataiError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, retry_after=round(retry_after, 3))
        self.retry_after = retry_after


class Unavailable(PrataiError):
    status = 503
    code = "unavailable"


class SandboxError(PrataiError):
    status = 500
    code = "sandbox_error"


class SettingsError(PrataiError):
    """Raised by `Settings.from_env` before anything starts; one line per bad variable."""

    code = "invalid_settings"
