"""CloudEvents 1.0 over HTTP, both content modes, as sent by the official SDKs.

- binary: attributes in `ce-*` headers, the body is the data, Content-Type its type;
- structured: `Content-Type: application/cloudevents+json`, the whole event in the body;
- anything else is plain data: Pratai makes the event around it.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from typing import Any

from pratai.core.models import Event
from pratai.errors import InvalidInput

_REQUIRED = ("id", "source", "type")
_CORE = {"specversion", "id", "source", "type", "subject", "time", "datacontenttype"}


def _check(attrs: Mapping[str, Any]) -> None:
    missing = [a for a in _REQUIRED if not attrs.get(a)]
    if missing:
        raise InvalidInput(f"CloudEvent without {', '.join(missing)}", missing=missing)
    if attrs.get("specversion") not in (None, "1.0"):
        raise InvalidInput(f"unsupported CloudEvents specversion {attrs.get('specversion')!r}")


def from_http(topic: str, headers: Mapping[str, str], body: bytes) -> Event:
    content_type = headers.get("content-type", "application/json")
    if content_type.split(";")[0].strip().lower() == "application/cloudevents+json":
        return _structured(topic, body)
    ce = {k.lower()[3:]: v for k, v in headers.items() if k.lower().startswith("ce-")}
    if ce:
        _check(ce)
        return Event(
            project_id="",
            topic=topic,
            id=ce["id"],
            source=ce["source"],
            type=ce["type"],
            subject=ce.get("subject"),
            time=ce.get("time", ""),
            datacontenttype=content_type,
            data=body,
            extensions={k: v for k, v in ce.items() if k not in _CORE},
        )
    return Event(
        project_id="",
        topic=topic,
        id=uuid.uuid4().hex,
        source="/pratai/api",
        type="pratai.event",
        datacontenttype=content_type,
        data=body,
    )


def _structured(topic: str, body: bytes) -> Event:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise InvalidInput(f"structured CloudEvent is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidInput("structured CloudEvent must be a JSON object")
    _check(doc)
    content_type = str(doc.get("datacontenttype") or "application/json")
    if "data_base64" in doc:
        data = base64.b64decode(doc["data_base64"])
    elif "data" not in doc:
        data = b""
    elif isinstance(doc["data"], str) and "json" not in content_type:
        data = doc["data"].encode()
    else:
        data = json.dumps(doc["data"]).encode()
    return Event(
        project_id="",
        topic=topic,
        id=str(doc["id"]),
        source=str(doc["source"]),
        type=str(doc["type"]),
        subject=doc.get("subject"),
        time=str(doc.get("time") or ""),
        datacontenttype=content_type,
        data=data,
        extensions={k: str(v) for k, v in doc.items() if k not in _CORE | {"data", "data_base64"}},
    )


def to_json(event: Event) -> dict[str, Any]:
    """The structured form, as `event-list` shows it."""
    doc: dict[str, Any] = {
        "specversion": "1.0",
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "time": event.time,
        "datacontenttype": event.datacontenttype,
        **event.extensions,
    }
    if event.subject:
        doc["subject"] = event.subject
    if "json" in event.datacontenttype:
        try:
            doc["data"] = json.loads(event.data) if event.data else None
        except ValueError:
            doc["data_base64"] = base64.b64encode(event.data).decode()
    else:
        try:
            doc["data"] = event.data.decode()
        except UnicodeDecodeError:
            doc["data_base64"] = base64.b64encode(event.data).decode()
    doc["topic"] = event.topic
    return doc
