"""A worker's connection listening on the PostgreSQL backend's events
channel, which puts fragmented batches together again."""

from __future__ import annotations

import logging
import os
import select
import threading
import time
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING

import psycopg

from ...backend import Subscription, TimedEvent
from ..pushed import decode_batch

if TYPE_CHECKING:
    from .backend import PostgresBackend

__all__ = [
    "DELIVERY_WAIT",
    "MAX_FRAGMENTS",
    "MAX_INCOMPLETE",
    "SEEN_BATCHES",
    "Deliveries",
    "PostgresSubscription",
]

#: The backend's logger, under the name it has had since 2.0.
logger = logging.getLogger("dramatiq_abort.backends.postgres")
#: Most fragments of one batch that a subscription assembles: 16 MB of
#: JSON, more than a batch of the backend's ``CHUNK_SIZE`` events takes
#: (about 70 bytes each, 8 kB at most with the longest reason and names).
MAX_FRAGMENTS = 2000
#: Batches a subscription holds incomplete at most; one of a hostile
#: sender's is then dropped rather than memory exhausted.
MAX_INCOMPLETE = 100
#: Names of the batches received lately that a subscription remembers.
SEEN_BATCHES = 1000
#: Longest wait, in seconds, of a sender for the subscriptions of its own
#: process to see its batch (see :meth:`Deliveries.wait`).
DELIVERY_WAIT = 1.0


class Deliveries:
    """The subscriptions open in one process, which a sender of that
    process waits for: PostgreSQL hands a notification to the listening
    connections a moment after the commit, and the messages running in the
    sender's process must see the events once the sender returns (as they
    would with Redis)."""

    def __init__(self) -> None:
        self._open: weakref.WeakSet[PostgresSubscription] = weakref.WeakSet()
        #: Notified each time a subscription received batches.
        self._received = threading.Condition()

    def add(self, subscription: PostgresSubscription) -> None:
        self._open.add(subscription)

    def discard(self, subscription: PostgresSubscription) -> None:
        self._open.discard(subscription)

    def received(self, seen: OrderedDict[str, None], names: list[str]) -> None:
        """Add ``names`` to ``seen``, a subscription's batches received
        lately, and wake the senders waiting for them."""
        with self._received:
            for name in names:
                seen[name] = None
            while len(seen) > SEEN_BATCHES:
                seen.popitem(last=False)
            self._received.notify_all()

    def wait(self, name: str) -> None:
        """Wait until every subscription of this process has received the
        batch ``name`` or has it on its socket, or ``DELIVERY_WAIT`` passed."""
        # Not those inherited from a parent process: they are its own.
        waiting = [s for s in self._open if s.pid == os.getpid()]
        deadline = time.monotonic() + DELIVERY_WAIT
        while waiting:
            waiting = [subscription for subscription in waiting if not subscription.has(name)]
            left = deadline - time.monotonic()
            if not waiting or left <= 0:
                return
            with self._received:
                # Woken by a receive(); the sockets are looked at anew
                # every millisecond.
                self._received.wait(min(left, 0.001))


class PostgresSubscription(Subscription):
    """A worker's connection listening on the backend's events channel."""

    def __init__(self, backend: PostgresBackend) -> None:
        self.backend = backend
        # A worker's subscription creates the tables, which its outcomes need.
        self._listener = backend._listener(backend.channel, backend.application_name, create=True)
        #: The process that opened it.
        self.pid = os.getpid()
        #: The names of the batches received lately, oldest first.
        self._seen: OrderedDict[str, None] = OrderedDict()
        backend.deliveries.add(self)
        #: Batch name -> its fragments received so far (``None`` for those
        #: still to come) and how many those are.
        self._incomplete: dict[str, tuple[list[str | None], int]] = {}

    @property
    def backend_pid(self) -> int:
        """The process id of the server's end of the subscription."""
        return self._listener.connection.info.backend_pid

    def fileno(self) -> int:
        return self._listener.fileno()

    def recorded(self) -> list[TimedEvent]:
        return self.backend.recorded()

    def has(self, name: str) -> bool:
        """Whether the batch ``name`` was received, or something waits on
        the socket (it, or what came before it)."""
        if name in self._seen:
            return True
        try:
            return bool(select.select([self.fileno()], [], [], 0)[0])
        except (OSError, ValueError, psycopg.Error):
            # Closed meanwhile: nothing more will reach it.
            return True

    def receive(self) -> list[TimedEvent]:
        events: list[TimedEvent] = []
        names = []
        for _, payload in self._listener.ready():
            name, batch = self._assemble(payload)
            if batch is not None:
                events.extend(decode_batch(batch))
                names.append(name)
        if names:
            self.backend.deliveries.received(self._seen, names)
        return events

    def _assemble(self, payload: str) -> tuple[str, str | None]:
        """The batch's name, and the whole batch once ``payload`` was its
        last fragment missing."""
        try:
            name, index_text, count_text, piece = payload.split(" ", 3)
            index, count = int(index_text), int(count_text)
            if not 0 <= index < count <= MAX_FRAGMENTS:
                raise ValueError(f"fragment {index} of {count}")
        except ValueError as e:
            logger.warning("Skipping a malformed abort notification (%s): %.200r", e, payload)
            return "", None
        if count == 1:
            return name, piece
        if name not in self._incomplete and len(self._incomplete) >= MAX_INCOMPLETE:
            dropped = next(iter(self._incomplete))
            del self._incomplete[dropped]
            logger.warning("Dropping the incomplete abort notification %r.", dropped)
        pieces, missing = self._incomplete.get(name, ([None] * count, count))
        if len(pieces) != count or pieces[index] is not None:
            logger.warning("Skipping a malformed abort notification: %.200r", payload)
            return name, None
        pieces[index] = piece
        missing -= 1
        if missing:
            self._incomplete[name] = (pieces, missing)
            return name, None
        self._incomplete.pop(name, None)
        return name, "".join(piece or "" for piece in pieces)

    def close(self) -> None:
        self.backend.deliveries.discard(self)
        self._listener.close()
