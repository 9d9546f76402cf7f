"""/v1/events, /v1/triggers and /hooks: events in, subscriptions, webhooks."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from pratai.api import cloudevents, rules
from pratai.api.deps import Services, allowed, read_body, services
from pratai.api.errors import AUTHENTICATED, responses
from pratai.api.schemas import Input, InvocationOut, TriggerOut
from pratai.core.models import Status, Trigger, new_id
from pratai.core.tenants import Principal
from pratai.core.triggers import TriggerSpec
from pratai.errors import NotFound, PayloadTooLarge

router = APIRouter(tags=["events"])
Topic = Annotated[str, Path(json_schema_extra=rules.TOPIC)]

Reader = Annotated[Principal, Depends(allowed("read"))]
Invoker = Annotated[Principal, Depends(allowed("invoke"))]
Deployer = Annotated[Principal, Depends(allowed("deploy"))]
Svc = Annotated[Services, Depends(services)]


class Published(BaseModel):
    id: str
    duplicate: bool


class TriggerIn(Input):
    model_config = ConfigDict(strict=True, json_schema_extra={"allOf": rules.TRIGGER_FIELDS})

    function: str
    event: str = Field(json_schema_extra=rules.EVENT)
    type: str = Field("async", json_schema_extra=rules.MODE)
    subscribe_to: str | None = Field(None, description="topic (message)")
    frequency: float | None = Field(None, description="minutes (timer)")
    cron: str | None = Field(None, description="cron expression (timer)")
    timezone: str | None = Field(None, description="IANA time zone of cron")

    def spec(self) -> TriggerSpec:
        return TriggerSpec(
            kind=self.event,
            mode=self.type,
            topic=self.subscribe_to,
            frequency_minutes=self.frequency,
            cron=self.cron,
            timezone=self.timezone,
        )


_EVENT_BODY = {
    "requestBody": {
        "description": "the event's data, or a whole CloudEvent (application/cloudevents+json)",
        "content": {"*/*": {"schema": {}}},
    }
}


@router.post(
    "/v1/events/{topic:path}",
    status_code=202,
    response_model=Published,
    responses=responses(*AUTHENTICATED, PayloadTooLarge),
    openapi_extra=_EVENT_BODY,
)
async def publish_event(topic: Topic, request: Request, who: Invoker, svc: Svc) -> Published:
    """Publish to a topic: plain data, or a CloudEvent in binary or structured mode. Answers
    once the event is durable; the same (source, id) twice runs subscribers once."""
    body = await read_body(request, svc.settings.max_payload_bytes)
    event = cloudevents.from_http(topic, request.headers, body)
    stored, duplicate = await svc.events.publish(who.project, event)
    return Published(id=stored.id, duplicate=duplicate)


@router.get("/v1/events/{topic:path}", responses=responses(*AUTHENTICATED))
async def list_events(
    topic: Topic, who: Reader, svc: Svc, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> list[dict[str, Any]]:
    """The topic's events, newest first, in CloudEvents structured form."""
    return [cloudevents.to_json(e) for e in await svc.events.recent(who.project, topic, limit)]


@router.post(
    "/v1/dead-letter/{event_id}/redrive",
    status_code=202,
    responses=responses(*AUTHENTICATED, NotFound),
)
async def redrive(event_id: str, who: Invoker, svc: Svc) -> dict[str, str]:
    """Run a dead-lettered event's function again."""
    invocation = await svc.events.redrive(who.project, event_id)
    return {"id": invocation.id, "status": str(invocation.status)}


async def trigger_out(svc: Services, trigger: Trigger, base_url: str) -> TriggerOut:
    function = await svc.functions.by_id(trigger.function_id)
    return TriggerOut.of(trigger, function.name if function else "?", base_url)


@router.get(
    "/v1/triggers", response_model=list[TriggerOut], responses=responses(*AUTHENTICATED, NotFound)
)
async def list_triggers(
    request: Request, who: Reader, svc: Svc, function: str | None = None
) -> list[TriggerOut]:
    target = await svc.functions.get(who.project, function) if function else None
    found = await svc.triggers.all(who.project, target)
    return [await trigger_out(svc, t, str(request.base_url)) for t in found]


@router.post(
    "/v1/triggers",
    status_code=201,
    response_model=TriggerOut,
    responses=responses(*AUTHENTICATED, NotFound),
)
async def create_trigger(body: TriggerIn, request: Request, who: Deployer, svc: Svc) -> TriggerOut:
    function = await svc.functions.get(who.project, body.function)
    trigger = await svc.triggers.create(function, body.spec())
    return TriggerOut.of(trigger, function.name, str(request.base_url))


@router.delete(
    "/v1/triggers/{trigger_id}", status_code=204, responses=responses(*AUTHENTICATED, NotFound)
)
async def delete_trigger(trigger_id: str, who: Deployer, svc: Svc) -> None:
    await svc.triggers.delete(who.project, trigger_id)


@router.api_route(
    "/hooks/{token}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,  # one route, five methods: documented in the README
)
async def webhook(token: str, request: Request, svc: Svc) -> Response:
    """A function's webhook (the URL is the secret). `async` answers 202 with the invocation
    id once it is durable; `wait_for_response` answers with the function's output, and a
    returned {"statusCode", "headers", "body"} becomes the HTTP response."""
    trigger = await svc.triggers.by_token(token)
    body = await read_body(request, svc.settings.max_payload_bytes)
    try:
        decoded: Any = json.loads(body) if body else None
    except ValueError:
        decoded = body.decode(errors="replace")
    payload = json.dumps(
        {
            "method": request.method,
            "path": request.url.path,
            "query": dict(request.query_params),
            "headers": {k: v for k, v in request.headers.items() if k != "authorization"},
            "body": decoded,
        }
    ).encode()
    key = request.headers.get("idempotency-key")
    if trigger.mode != "wait_for_response":
        invocation_id = new_id()
        if key:  # the same key on the same hook: the first invocation, not a new one
            invocation_id = hashlib.sha256(f"{token}:{key}".encode()).hexdigest()[:32]
        queued = await svc.invocations.submit_for(
            trigger.function_id, payload, "application/json", invocation_id=invocation_id
        )
        if queued is None:
            return JSONResponse({"error": "not_found", "message": "no such function"}, 404)
        return JSONResponse({"id": queued.id, "status": str(queued.status)}, status_code=202)
    done = await svc.invocations.invoke_by_id(trigger.function_id, payload, "application/json", key)
    if done.status != Status.SUCCEEDED:
        return JSONResponse(InvocationOut.of(done), status_code=502)
    return as_response(InvocationOut.of(done)["result"])


def as_response(result: Any) -> Response:
    if isinstance(result, dict) and "statusCode" in result:
        body = result.get("body", "")
        headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
        if not isinstance(body, str | bytes):
            body = json.dumps(body)
            headers.setdefault("content-type", "application/json")
        return Response(body, status_code=int(result["statusCode"]), headers=headers)
    return JSONResponse(result)
