"""A worker's subscription to the Redis backend's events."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ... import nogil
from ...backend import Subscription, TimedEvent

if TYPE_CHECKING:
    from .backend import RedisBackend

__all__ = ["RedisSubscription"]


class RedisSubscription(Subscription):
    """A worker's subscription to the backend's events."""

    def __init__(self, backend: RedisBackend) -> None:
        self.backend = backend
        self._channel = backend.listen(backend.channel)

    def fileno(self) -> int:
        return self._channel.fileno()

    def probe(self) -> nogil.ReadinessProbe:
        return self._channel.probe()

    def recorded(self) -> list[TimedEvent]:
        return self.backend.recorded()

    def receive(self) -> list[TimedEvent]:
        events: list[TimedEvent] = []
        for payload in self._channel.ready_payloads():
            events.extend(self.backend.decode_pushed(payload))
        return events

    def close(self) -> None:
        self._channel.close()
