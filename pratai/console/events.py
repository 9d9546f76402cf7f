"""Events: the project's topics and their subscribers, a topic's recent events, publishing a
test event, and the dead-letter topic with redrive (as /v1/events and /v1/dead-letter)."""

from __future__ import annotations

import json
import uuid
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from pratai.console.web import Svc, Viewer, render, role
from pratai.core.events import DEAD_LETTER_TOPIC, check_topic
from pratai.core.models import Event
from pratai.core.tenants import Principal
from pratai.errors import InvalidInput

router = APIRouter()
Invoker = Annotated[Principal, role("invoke")]
PREVIEW_CHARS = 160
SHOWN_BYTES = 64 * 1024  # an event's data shown whole up to this size
CONSOLE_SOURCE = "/pratai/console"


def preview(data: bytes, limit: int = PREVIEW_CHARS) -> str:
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return f"({len(data)} bytes, binary)"
    return text if len(text) <= limit else text[:limit] + "…"


def shown(data: bytes) -> str:
    """The data in full (indented when JSON), or a note when it is too big or binary."""
    if len(data) > SHOWN_BYTES:
        return f"({len(data)} bytes: too large to show here; GET /v1/events/TOPIC has it)"
    try:
        return json.dumps(json.loads(data), indent=2, ensure_ascii=False)
    except (UnicodeDecodeError, ValueError):
        return preview(data, SHOWN_BYTES)


@router.get("/events")
async def events_page(request: Request, who: Viewer, svc: Svc) -> Response:
    topics = await svc.events.topics(who.project)
    dead = next((t for t in topics if t.topic == DEAD_LETTER_TOPIC), None)
    return render(
        request,
        "events/index.html",
        topics=[t for t in topics if t.topic != DEAD_LETTER_TOPIC],
        dead=dead,
        dead_letter=DEAD_LETTER_TOPIC,
        topic="",
    )


@router.get("/events/topics/{topic:path}")
async def topic_page(
    topic: str, request: Request, who: Viewer, svc: Svc, published: str = ""
) -> Response:
    events = await svc.events.recent(who.project, check_topic(topic), 50)
    subscribers = []
    for trigger in await svc.events.subscribers(who.project.id, topic):
        function = await svc.functions.by_id(trigger.function_id)
        if function is not None:
            subscribers.append(function.name)
    topics = await svc.events.topics(who.project)
    return render(
        request,
        "events/topic.html",
        topic=topic,
        events=events,
        subscribers=sorted(subscribers),
        topics=topics,
        published=published,
        dead_letter=DEAD_LETTER_TOPIC,
        preview=preview,
        shown=shown,
    )


@router.post("/events/publish")
async def publish(
    request: Request,
    who: Invoker,
    svc: Svc,
    topic: Annotated[str, Form()] = "",
    data: Annotated[str, Form()] = "",
    event_type: Annotated[str, Form(alias="type")] = "",
) -> Response:
    """A test event from the console: its data must be JSON. Answers by opening the topic."""
    topic = check_topic(topic.strip())
    try:
        body = json.dumps(json.loads(data or "null")).encode()
    except ValueError as exc:
        raise InvalidInput(f"the event's data is not JSON: {exc}") from None
    event = Event(
        project_id=who.project.id,
        topic=topic,
        id=uuid.uuid4().hex,
        source=CONSOLE_SOURCE,
        type=event_type.strip() or "pratai.test",
        data=body,
    )
    stored, _ = await svc.events.publish(who.project, event)
    target = f"/ui/events/topics/{quote(topic)}?published={stored.id}"
    return Response(status_code=204, headers={"HX-Redirect": target})


@router.post("/events/dead-letter/{event_id}/redrive")
async def redrive(event_id: str, request: Request, who: Invoker, svc: Svc) -> Response:
    invocation = await svc.events.redrive(who.project, event_id)
    return render(request, "events/_redriven.html", invocation=invocation)
