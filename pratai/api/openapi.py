"""The OpenAPI document, made to say what the API does.

FastAPI's generated document is almost right; this corrects the two places where it is not:
- it declares a 422 `HTTPValidationError` on every operation with inputs, while Pratai answers
  input the schema refuses with 400 and the shared error body (`pratai.api.errors`);
- it makes optional form fields nullable, but a form field is sent or not: never null;
and it adds what only the running server knows: the runtimes jobs run in on this machine.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from pratai.api.errors import ErrorBody, responses
from pratai.core.jobs import Runtimes
from pratai.errors import InvalidInput

_FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")
_VALIDATION_REF = "#/components/schemas/HTTPValidationError"


def install(app: FastAPI, runtimes: Runtimes) -> None:
    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            _declare_invalid_input(doc)
            _forms_without_null(doc)
            _job_runtimes(doc, runtimes)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


def _operations(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for path in doc.get("paths", {}).values() for op in path.values()]


def _declare_invalid_input(doc: dict[str, Any]) -> None:
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    invalid = responses(InvalidInput)[InvalidInput.status]
    for operation in _operations(doc):
        answers = operation.get("responses", {})
        generated = answers.get("422", {}).get("content", {}).get("application/json", {})
        if generated.get("schema", {}).get("$ref") == _VALIDATION_REF:
            del answers["422"]
            answers.setdefault(
                "400",
                {
                    "description": invalid["description"],
                    "content": {"application/json": {"schema": {"$ref": _ref(ErrorBody.__name__)}}},
                },
            )
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas.setdefault(ErrorBody.__name__, ErrorBody.model_json_schema())


def _ref(name: str) -> str:
    return f"#/components/schemas/{name}"


def _forms_without_null(doc: dict[str, Any]) -> None:
    schemas = doc.get("components", {}).get("schemas", {})
    for operation in _operations(doc):
        content = operation.get("requestBody", {}).get("content", {})
        for media_type in _FORMS:
            schema = content.get(media_type, {}).get("schema", {})
            ref = schema.get("$ref", "")
            target = schemas.get(ref.rpartition("/")[2], {}) if ref else schema
            for name, prop in target.get("properties", {}).items():
                alternatives = prop.get("anyOf")
                if alternatives and {"type": "null"} in alternatives:
                    kept = [a for a in alternatives if a != {"type": "null"}]
                    del prop["anyOf"]
                    prop.update(kept[0] if len(kept) == 1 else {"anyOf": kept})
                    target["properties"][name] = prop


def _job_runtimes(doc: dict[str, Any], runtimes: Runtimes) -> None:
    schemas = doc.get("components", {}).get("schemas", {})
    for model in ("JobIn", "SavedJobIn"):
        runtime = schemas.get(model, {}).get("properties", {}).get("runtime")
        if runtime is not None:
            runtime.pop("anyOf", None)
            runtime["anyOf"] = [{"type": "string", "enum": runtimes.accepted()}, {"type": "null"}]
    submit = doc.get("paths", {}).get("/v1/jobs/callable", {}).get("post", {})
    for parameter in submit.get("parameters", []):
        if parameter["name"] == "python":
            parameter["schema"]["enum"] = [runtimes.python]
