"""The durable work queue behind one small interface."""

from pratai.broker.base import Broker, Delivery

__all__ = ["Broker", "Delivery", "open_broker"]


def open_broker(url: str, embedded_path: str) -> Broker:
    """`memory` (the default of `pratai serve`: its work is durable in the store), `embedded`
    (a SQLite file, for several processes on one machine)."""
    if url in ("", "memory"):
        from pratai.broker.memory import MemoryBroker

        return MemoryBroker()
    if url == "embedded":
        from pratai.broker.embedded import EmbeddedBroker

        return EmbeddedBroker(embedded_path)
    raise ValueError(f"unsupported PRATAI_BROKER_URL {url!r}: use memory or embedded")
