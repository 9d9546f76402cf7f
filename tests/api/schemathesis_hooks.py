"""Schemathesis hooks for tests/api/test_openapi_contract.py (loaded by SCHEMATHESIS_HOOKS).

The fuzzer runs as an admin, and an admin may revoke any key of its project, its own too: it
can read its own key id from GET /v1/whoami or GET /v1/keys and feed it to DELETE
/v1/keys/{key_id}. That one request would lock the rest of the run out, so it goes to a key id
that does not exist instead (a 404, which the document declares). Every other request,
revoking other keys included, is sent as generated.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

OWN_KEY_ID = os.environ["PRATAI_FUZZ_KEY_ID"]


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    parameters = case.path_parameters or {}
    if case.method.upper() == "DELETE" and parameters.get("key_id") == OWN_KEY_ID:
        parameters["key_id"] = f"{OWN_KEY_ID}-never-issued"
