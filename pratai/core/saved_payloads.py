"""Saved test payloads: named JSON inputs of a function, kept for its whole project so a team
tests with the same inputs (the console's Test panel)."""

from __future__ import annotations

import json

from pratai.core.functions import Functions
from pratai.core.models import Project, SavedPayload, check_name, new_id
from pratai.core.ports import SavedPayloadStore
from pratai.errors import InvalidInput, NotFound, PayloadTooLarge

MAX_PAYLOAD_CHARS = 64 * 1024


def check_json(text: str) -> str:
    """`text` when it is one JSON value; else InvalidInput saying where it breaks."""
    try:
        json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"the payload is not valid JSON: {exc}") from None
    return text


class SavedPayloads:
    def __init__(self, store: SavedPayloadStore, functions: Functions) -> None:
        self.store = store
        self.functions = functions

    async def all(self, project: Project, function_name: str) -> list[SavedPayload]:
        function = await self.functions.get(project, function_name)
        return await self.store.list_saved_payloads(function.id)

    async def save(
        self, project: Project, function_name: str, name: str, payload: str
    ) -> SavedPayload:
        """Saves `payload` as the function's `name`, replacing one saved under that name."""
        check_name(name, "saved payload")
        if len(payload) > MAX_PAYLOAD_CHARS:
            raise PayloadTooLarge(
                f"a saved payload is at most {MAX_PAYLOAD_CHARS} characters",
                limit=MAX_PAYLOAD_CHARS,
            )
        function = await self.functions.get(project, function_name)
        saved = SavedPayload(
            id=new_id(),
            project_id=project.id,
            function_id=function.id,
            name=name,
            payload=check_json(payload),
        )
        await self.store.put_saved_payload(saved)
        return saved

    async def delete(self, project: Project, function_name: str, name: str) -> None:
        function = await self.functions.get(project, function_name)
        if not await self.store.delete_saved_payload(function.id, name):
            raise NotFound(f"no saved payload {name!r} for {function_name!r}", payload=name)
