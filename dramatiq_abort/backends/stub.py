"""An in-memory event backend for tests and single-process use."""

from __future__ import annotations

import contextlib
import operator
import os
import threading
import time
from collections import deque
from collections.abc import Iterable

from .. import nogil
from ..backend import Event, EventBackend, MessageRecords, Subscription, TimedEvent
from ..checks import check_milliseconds
from ..expiring import ExpiringTable
from ..mode import AbortMode
from ..wire import event_key

__all__ = ["StubBackend", "StubSubscription"]


class StubBackend(EventBackend):
    """Keeps events in this process's memory, with their TTL, and pushes
    them to the subscriptions of this process.

    Producers and workers must share the instance, as they share a
    ``StubBroker``.
    """

    pushes = True
    records_outcomes = True
    records_reasons = True
    stores_states = True
    carries_answers = True

    def __init__(self) -> None:
        self._changed = threading.Condition()
        #: key -> (params, ttl, expires_at as time.monotonic())
        self._records: ExpiringTable[tuple[dict[str, object], int, float]] = ExpiringTable(
            operator.itemgetter(2)
        )
        self._subscriptions: set[StubSubscription] = set()
        #: message id -> (outcome, expires_at as time.monotonic())
        self._outcomes: ExpiringTable[tuple[str, float]] = ExpiringTable(operator.itemgetter(1))
        #: message id -> the reason recorded with its outcome
        self._reasons: dict[str, str] = {}
        #: message id -> (state, expires_at as time.monotonic())
        self._states: ExpiringTable[tuple[str, float]] = ExpiringTable(operator.itemgetter(1))
        #: reply address -> (answers handed to it and not collected yet,
        #: expires_at as time.monotonic())
        self._answers: ExpiringTable[tuple[list[str], float]] = ExpiringTable(
            operator.itemgetter(1)
        )

    def notify(self, events: Iterable[Event], ttl: int) -> None:
        ttl = check_milliseconds("ttl", ttl, positive=True)
        events = [Event(key, dict(params)) for key, params in events]
        with self._changed:
            expires_at = time.monotonic() + ttl / 1000
            self._forget_expired()
            for key, params in events:
                self._records.put(key, (params, ttl, expires_at))
            pushed = [TimedEvent(event, ttl, ttl) for event in events]
            for subscription in self._subscriptions:
                subscription.push(pushed)
            self._changed.notify_all()

    def poll(self, key: str) -> Event | None:
        with self._changed:
            return self._valid(key)

    def wait_many(self, keys: Iterable[str], timeout: int) -> Event | None:
        keys = list(keys)
        deadline = time.monotonic() + timeout / 1000
        with self._changed:
            while True:
                for key in keys:
                    event = self._valid(key)
                    if event is not None:
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)

    def record_outcome(
        self, message_id: str, outcome: str, ttl: int, *, reason: str | None = None
    ) -> None:
        ttl = check_milliseconds("ttl", ttl, positive=True)
        with self._changed:
            self._outcomes.put(message_id, (outcome, time.monotonic() + ttl / 1000))
            if reason is None:
                self._reasons.pop(message_id, None)
            else:
                self._reasons[message_id] = reason
            self._changed.notify_all()

    def outcome_reason(self, message_id: str) -> str | None:
        with self._changed:
            recorded = self._outcomes.get(message_id, time.monotonic())
            return None if recorded is None else self._reasons.get(message_id)

    def wait_outcome(self, message_id: str, timeout: float | None) -> str | None:
        def recorded() -> str | None:
            recorded = self._outcomes.get(message_id, time.monotonic())
            return None if recorded is None else recorded[0]

        with self._changed:
            return self._changed.wait_for(recorded, timeout)

    def record_state(self, message_id: str, state: str, ttl: int) -> None:
        ttl = check_milliseconds("ttl", ttl, positive=True)
        with self._changed:
            self._states.put(message_id, (state, time.monotonic() + ttl / 1000))

    def records(self, message_id: str) -> MessageRecords:
        with self._changed:
            now = time.monotonic()
            outcome = self._outcomes.get(message_id, now)
            state = self._states.get(message_id, now)
            return MessageRecords(
                self._valid(event_key(message_id, AbortMode.ABORT)),
                self._valid(event_key(message_id, AbortMode.CANCEL)),
                None if outcome is None else outcome[0],
                None if state is None else state[0],
            )

    def forget(self, message_id: str) -> None:
        with self._changed:
            self._outcomes.pop(message_id)
            self._reasons.pop(message_id, None)
            self._states.pop(message_id)

    def answer(self, reply_to: str, payload: str, ttl: int) -> None:
        ttl = check_milliseconds("ttl", ttl, positive=True)
        with self._changed:
            self._forget_expired()
            answers, _ = self._answers.entries.get(reply_to, ([], 0.0))
            answers.append(payload)
            self._answers.put(reply_to, (answers, time.monotonic() + ttl / 1000))
            self._changed.notify_all()

    def collect_answers(self, reply_to: str, expected: int | None, timeout: float) -> list[str]:
        def enough() -> bool:
            answers, _ = self._answers.entries.get(reply_to, ([], 0.0))
            return expected is not None and len(answers) >= expected

        with self._changed:
            self._changed.wait_for(enough, timeout)
            collected = self._answers.pop(reply_to)
            return [] if collected is None else collected[0]

    def subscribers(self) -> int:
        with self._changed:
            return len(self._subscriptions)

    def subscribe(self) -> StubSubscription:
        subscription = StubSubscription(self)
        with self._changed:
            self._subscriptions.add(subscription)
        return subscription

    def recorded(self) -> list[TimedEvent]:
        """Every event still valid, with the milliseconds it has left."""
        with self._changed:
            self._forget_expired()
            now = time.monotonic()
            return [
                TimedEvent(Event(key, dict(params)), max(1, int((expires_at - now) * 1000)), ttl)
                for key, (params, ttl, expires_at) in self._records.entries.items()
            ]

    def unsubscribe(self, subscription: StubSubscription) -> None:
        with self._changed:
            self._subscriptions.discard(subscription)

    def _valid(self, key: str) -> Event | None:
        record = self._records.get(key, time.monotonic())
        return None if record is None else Event(key, dict(record[0]))

    def _forget_expired(self) -> None:
        now = time.monotonic()
        for table in (self._records, self._outcomes, self._states, self._answers):
            table.forget_expired(now)
        outcomes = self._outcomes.entries
        for message_id in [key for key in self._reasons if key not in outcomes]:
            del self._reasons[message_id]


class StubSubscription(Subscription):
    """A subscription to a :class:`StubBackend`: a queue and a pipe that
    is readable while the queue has events."""

    def __init__(self, backend: StubBackend) -> None:
        self.backend = backend
        self._queue: deque[TimedEvent] = deque()
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._closed = False

    def push(self, events: list[TimedEvent]) -> None:
        self._queue.extend(events)
        # A full pipe is readable already.
        with contextlib.suppress(BlockingIOError):
            os.write(self._write_fd, b"x")

    def fileno(self) -> int:
        return self._read_fd

    def recorded(self) -> list[TimedEvent]:
        return self.backend.recorded()

    def receive(self) -> list[TimedEvent]:
        # Drain the pipe before the queue: an event pushed in between
        # leaves the pipe readable, so it is not stranded.
        while nogil.read_ready(self._read_fd):
            pass
        events = []
        while self._queue:
            events.append(self._queue.popleft())
        return events

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.backend.unsubscribe(self)
        os.close(self._read_fd)
        os.close(self._write_fd)
