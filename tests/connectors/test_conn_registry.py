"""make_connector's validation, redact_url, and the shared reconnect loop's bookkeeping."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from pratai.connectors._common import Backoff, ReconnectingConnector, decode_payload, scrub
from pratai.connectors.amqp import AmqpConnector
from pratai.connectors.base import Emit
from pratai.connectors.mqtt import MqttConnector
from pratai.connectors.nats import NatsConnector
from pratai.connectors.postgres import PostgresConnector
from pratai.connectors.redis import RedisStreamConnector
from pratai.connectors.registry import make_connector, redact_url
from pratai.errors import InvalidInput
from tests.connectors.support import Collector, free_port, running
from tests.helpers import wait_for_async


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://guest:guest@h/", "amqp://guest:***@h/"),
        (
            "amqps://user:p%40ss@rabbit.example:5671/vhost",
            "amqps://user:***@rabbit.example:5671/vhost",
        ),
        ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("redis://default:s3cret@h:6379/1", "redis://default:***@h:6379/1"),
        ("postgresql://bob:hunter2@db/test", "postgresql://bob:***@db/test"),
        (
            "postgresql://db/test?user=bob&password=hunter2",
            "postgresql://db/test?user=bob&password=***",
        ),
        ("nats://tok3n@127.0.0.1:4222", "nats://***@127.0.0.1:4222"),
        ("nats://u:p@127.0.0.1:4222", "nats://u:***@127.0.0.1:4222"),
        ("mqtt://127.0.0.1:1883", "mqtt://127.0.0.1:1883"),
        ("redis://bob@h/0", "redis://bob@h/0"),
        ("amqp://guest:guest@[::1:5672/", "amqp://guest:***@[::1:5672/"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_scrub_masks_urls_keywords_and_known_secrets() -> None:
    text = "failed amqp://guest:guest@h:5672/ and password=hunter2 and x7secret"
    out = scrub(text, ["x7secret"])
    assert out == "failed amqp://guest:***@h:5672/ and password=*** and ***"


@pytest.mark.parametrize(
    ("kind", "url", "options", "cls"),
    [
        ("nats", "nats://127.0.0.1:4222", {"subject": "orders.*"}, NatsConnector),
        ("mqtt", "mqtt://127.0.0.1:1883", {"source-topic": "sensors/#"}, MqttConnector),
        ("amqp", "amqp://guest:guest@127.0.0.1:5672/", {"queue": "jobs"}, AmqpConnector),
        ("redis", "redis://127.0.0.1:6379/0", {"stream": "clicks"}, RedisStreamConnector),
        ("postgres", "postgresql://127.0.0.1/test", {"table": "orders"}, PostgresConnector),
        ("postgres", "postgresql:///test", {"table": "orders"}, PostgresConnector),
    ],
)
def test_make_connector(kind: str, url: str, options: dict[str, str], cls: type) -> None:
    connector = make_connector(kind, url, options)
    assert isinstance(connector, cls)
    assert connector.kind == kind
    assert connector.status.connected is False
    assert connector.status.forwarded == 0


def test_make_connector_options() -> None:
    mqtt = make_connector(
        "mqtt", "mqtt://h", {"source_topic": "a/+", "client_id": "me", "qos": "0"}
    )
    assert isinstance(mqtt, MqttConnector)
    assert (mqtt.client_id, mqtt.qos) == ("me", 0)
    other = make_connector("mqtt", "mqtt://h", {"source_topic": "b/#"})
    assert isinstance(other, MqttConnector)
    assert other.client_id.startswith("pratai-")
    assert other.client_id == MqttConnector("mqtt://h", "b/#").client_id  # stable
    assert other.client_id != MqttConnector("mqtt://h", "c/#").client_id
    redis = make_connector("redis", "redis://h/0", {"stream": "s", "group": "g", "consumer": "c"})
    assert isinstance(redis, RedisStreamConnector)
    assert (redis.group, redis.consumer) == ("g", "c")


@pytest.mark.parametrize(
    ("kind", "url", "options", "message"),
    [
        ("kafka", "kafka://h", {"topic": "x"}, "unknown connector kind 'kafka'"),
        ("nats", "http://h:4222", {"subject": "a"}, "a nats URL starts with nats://"),
        ("nats", "nats://", {"subject": "a"}, "no host"),
        ("amqp", "amqp://guest:guest@h:99999/", {"queue": "q"}, "malformed amqp URL"),
        ("amqp", "amqp://guest:guest@h:abc/", {"queue": "q"}, "malformed amqp URL"),
        ("amqp", "amqp://guest:guest@h/", {}, "needs the option 'queue' (--queue)"),
        ("mqtt", "mqtt://h", {"topic": "x"}, "unknown option(s) for a mqtt connector: topic"),
        ("mqtt", "mqtt://h", {}, "needs the option 'source_topic' (--source-topic)"),
        ("mqtt", "mqtt://h", {"source_topic": "a/#/b"}, "invalid MQTT topic filter"),
        ("mqtt", "mqtt://h", {"source_topic": "a#"}, "invalid MQTT topic filter"),
        ("mqtt", "mqtt://h", {"source_topic": "a", "qos": "2"}, "'qos' must be an integer"),
        ("redis", "redis://:pw@h/0", {"stream": " "}, "needs the option 'stream'"),
        ("postgres", "mysql://h/db", {"table": "t"}, "postgresql://"),
        ("nats", "nats://h", {"subject": "a b"}, "invalid NATS subject"),
        ("amqp", "amqp://h/", {"queue": "q", "prefetch": "0"}, "'prefetch' must be"),
    ],
)
def test_make_connector_errors(kind: str, url: str, options: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        make_connector(kind, url, options)
    assert message in info.value.message
    assert "guest:guest" not in info.value.message
    assert ":pw@" not in info.value.message


def test_decode_payload() -> None:
    assert decode_payload(b'{"a": 1}') == {"a": 1}
    assert decode_payload(b"42") == 42
    assert decode_payload(b"hello") == "hello"
    assert decode_payload(b"\xff\x00") == b"\xff\x00"


def test_backoff_grows_to_the_cap_with_jitter() -> None:
    backoff = Backoff()
    delays = [backoff.next_delay() for _ in range(10)]
    assert 0.1 <= delays[0] <= 0.2
    assert all(d <= 5.0 for d in delays)
    assert delays[-1] >= 2.5
    backoff.reset()
    assert backoff.next_delay() <= 0.2


@pytest.mark.parametrize(
    ("kind", "url", "options"),
    [
        ("nats", "nats://u:sekrit@127.0.0.1:{port}", {"subject": "a"}),
        ("mqtt", "mqtt://u:sekrit@127.0.0.1:{port}", {"source_topic": "a"}),
        ("amqp", "amqp://guest:sekrit@127.0.0.1:{port}/", {"queue": "q"}),
        ("redis", "redis://:sekrit@127.0.0.1:{port}/0", {"stream": "s"}),
        ("postgres", "postgresql://u:sekrit@127.0.0.1:{port}/db", {"table": "t"}),
    ],
)
async def test_unreachable_server_sets_a_redacted_error_and_keeps_trying(
    kind: str, url: str, options: dict[str, str]
) -> None:
    port = free_port()  # nothing listens there
    connector = make_connector(kind, url.format(port=port), options)
    got = Collector()
    async with running(connector, got):
        await wait_for_async(
            lambda: connector.status.last_error is not None, what="an error", timeout=5
        )
        first = connector.status.last_error_at
        assert first is not None
        await wait_for_async(
            lambda: connector.status.last_error_at != first, what="a second attempt", timeout=5
        )
        assert connector.status.connected is False
        assert "sekrit" not in (connector.status.last_error or "")
        assert got.calls == 0


class Swallowing(ReconnectingConnector):
    """A session whose client library swallows a cancellation, as nats-py's connect can."""

    kind = "swallowing"

    def __init__(self) -> None:
        super().__init__("swallowing://nowhere")
        self.sessions = 0

    async def _session(self, emit: Emit) -> None:
        self.sessions += 1
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)
        raise ConnectionError("gave up")


async def test_a_cancelled_connector_stops_even_if_its_library_swallowed_the_cancel() -> None:
    connector = Swallowing()
    task = asyncio.create_task(connector.run(Collector()))
    await wait_for_async(lambda: connector.sessions == 1, what="a session")
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert done, "the connector kept going after its cancel (another session after a backoff)"
    assert task.cancelled()
    assert connector.sessions == 1 and connector.status.last_error == "ConnectionError: gave up"
