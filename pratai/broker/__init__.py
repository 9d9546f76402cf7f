"""The durable work queue behind one small interface."""

from pratai.broker.base import Broker, Delivery

__all__ = ["Broker", "Delivery", "open_broker"]


def open_broker(url: str, embedded_path: str) -> Broker:
    if url in ("", "embedded"):
        from pratai.broker.embedded import EmbeddedBroker

        return EmbeddedBroker(embedded_path)
    raise ValueError(f"unsupported PRATAI_BROKER_URL {url!r} (this build knows 'embedded')")
