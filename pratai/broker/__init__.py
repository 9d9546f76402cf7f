"""The durable work queue behind one small interface."""

from pratai.broker.base import Broker, Delivery

__all__ = ["Broker", "Delivery", "open_broker"]


def open_broker(url: str, embedded_path: str, *, replicas: int = 1) -> Broker:
    """`memory` (the default of `pratai serve`: its work is durable in the store), `embedded`
    (a SQLite file, for several processes on one machine), `nats://host:port[,...]` (NATS
    JetStream, for many machines; its stream keeps `replicas` copies of each message)."""
    if url in ("", "memory"):
        from pratai.broker.memory import MemoryBroker

        return MemoryBroker()
    if url == "embedded":
        from pratai.broker.embedded import EmbeddedBroker

        return EmbeddedBroker(embedded_path)
    servers = [server.strip() for server in url.split(",")]
    if all(server.startswith("nats://") and len(server) > len("nats://") for server in servers):
        from pratai.broker.nats import JetStreamBroker

        return JetStreamBroker(servers, replicas=replicas)
    raise ValueError(
        f"unsupported PRATAI_BROKER_URL {url!r}: use memory, embedded, or nats://host:port "
        "(comma-separated for the servers of a NATS cluster)"
    )
