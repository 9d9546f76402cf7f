"""Every error Pratai raises on purpose derives from `PrataiError`.

    PrataiError
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

The HTTP mapping lives in one place: `pratai.api.errors`.
"""

from __future__ import annotations

from typing import Any


class PrataiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
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


class RuntimeMismatch(InvalidInput):
    code = "runtime_mismatch"


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
