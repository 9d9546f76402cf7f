"""What Pratai's JetStream users share (the work queue, the artifact store)."""

from __future__ import annotations

from nats.js import JetStreamContext, api
from nats.js.errors import APIError

NAME_IN_USE = 10058  # JetStream's error code: the stream exists with another configuration


async def ensure_stream(js: JetStreamContext, config: api.StreamConfig) -> None:
    """Creates the stream, or brings an existing one to this configuration (its replica
    count, say)."""
    try:
        await js.add_stream(config)
    except APIError as exc:
        if exc.err_code != NAME_IN_USE:
            raise
        await js.update_stream(config)
