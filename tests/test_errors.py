"""The error vocabulary: the server's tree, the client's root, and the one class in both."""

from __future__ import annotations

import pytest

import pratai
from pratai.errors import ApiError, NotFound, PrataiError, RuntimeMismatch, error_body
from pratai.sdk.errors import from_api_error


def test_a_client_error_is_not_a_server_error() -> None:
    refused = ApiError(404, "no such function", NotFound("no such function", name="f").to_dict())
    assert not isinstance(refused, PrataiError)
    assert (refused.status, refused.code, refused.message) == (404, "not_found", "no such function")
    assert refused.details == {"name": "f"}


@pytest.mark.parametrize("answer", [None, "Bad Gateway", {"error": {"code": 401}}, [1]])
def test_an_answer_of_another_shape_has_no_code(answer: object) -> None:
    assert error_body(answer) is None
    assert (ApiError(502, "Bad Gateway", answer).code, ApiError(0, "down").details) == ("", {})


def test_the_server_and_the_sdk_raise_one_runtime_mismatch() -> None:
    raised = RuntimeMismatch("this platform runs Python 3.11", client="3.2", server="3.11")
    body = raised.to_dict()
    assert body == {
        "error": "runtime_mismatch",
        "message": "this platform runs Python 3.11",
        "details": {"client": "3.2", "server": "3.11"},
    }
    assert (raised.status, raised.code) == (400, "runtime_mismatch")

    received = from_api_error(ApiError(400, body["message"], body))
    assert type(received) is RuntimeMismatch is pratai.RuntimeMismatch
    assert isinstance(received, pratai.ApiError) and isinstance(received, PrataiError)
    assert (received.status, received.body, received.details) == (400, body, body["details"])
    assert received.to_dict() == body
    other = ApiError(400, "bad", {"error": "invalid_input", "message": "bad"})
    assert from_api_error(other) is other
