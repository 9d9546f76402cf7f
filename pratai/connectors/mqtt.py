"""MQTT connector: every message on a topic filter (`sensors/#`, `+/temp`) is an event.

It subscribes at QoS 1 in a persistent session (MQTT 3.1.1 `clean_session=False`, with a stable
client id): the broker keeps the subscription and queues QoS 1 messages while the connector is
briefly away (a restart, a network break), and delivers them when it is back. With a broker that
persists sessions to disk (mosquitto `persistence true`) that holds across a broker restart too.

The PUBACK of a QoS 1 message is sent only after `emit` returned (paho's manual acks), so a
message the connector received but did not forward is redelivered by the broker after a
reconnect: at-least-once, as long as the broker keeps the session.

The client id defaults to "pratai-" + a hash of the URL (without credentials) and topic filter;
pass `client_id` to choose it (two connectors must never share one: the broker would keep kicking
one of them out). Event data: the payload JSON-decoded when it is JSON, else text, else bytes;
`Incoming.subject` is the message's topic, type "mqtt.message".
"""

from __future__ import annotations

import hashlib
import ssl
from urllib.parse import unquote, urlsplit

import aiomqtt

from pratai.connectors._common import ReconnectingConnector, decode_payload, redact_url
from pratai.connectors.base import Emit, Incoming

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


def default_client_id(url: str, topic_filter: str) -> str:
    digest = hashlib.sha256(f"{redact_url(url)}|{topic_filter}".encode()).hexdigest()
    return f"pratai-{digest[:16]}"


class MqttConnector(ReconnectingConnector):
    kind = "mqtt"

    def __init__(
        self, url: str, source_topic: str, client_id: str | None = None, qos: int = 1
    ) -> None:
        super().__init__(url)
        self.source_topic = source_topic
        self.client_id = client_id or default_client_id(url, source_topic)
        self.qos = qos
        parts = urlsplit(url)
        self._scheme = parts.scheme.lower()
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or DEFAULT_PORTS.get(self._scheme, 1883)
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None

    async def _session(self, emit: Emit) -> None:
        client = aiomqtt.Client(
            self._host,
            self._port,
            username=self._username,
            password=self._password,
            identifier=self.client_id,
            clean_session=False,
            protocol=aiomqtt.ProtocolVersion.V311,
            timeout=5,
            keepalive=10,
            tls_context=ssl.create_default_context() if self._scheme == "mqtts" else None,
        )
        # Acknowledge (PUBACK) only after emit returned. aiomqtt does not expose this switch;
        # the paho client it wraps does.
        paho = getattr(client, "_client", None)
        manual_ack = paho is not None and hasattr(paho, "manual_ack_set")
        if manual_ack:
            paho.manual_ack_set(True)  # type: ignore[union-attr]
        async with client:
            await client.subscribe(self.source_topic, qos=self.qos)
            self._connected()
            async for message in client.messages:
                payload = message.payload
                body = payload if isinstance(payload, bytes) else str(payload).encode()
                incoming = Incoming(
                    data=decode_payload(body),
                    subject=message.topic.value,
                    type="mqtt.message",
                )
                await self._forward(emit, incoming)
                if manual_ack and message.qos > 0:
                    paho.ack(message.mid, message.qos)  # type: ignore[union-attr]
