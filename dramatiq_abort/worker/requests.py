"""The abort requests in force, as one worker process knows them."""

from __future__ import annotations

import heapq
import logging
import math
import operator
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

from ..backend import TimedEvent
from ..expiring import ExpiringTable
from ..mode import AbortMode
from ..wire import parse_event

__all__ = ["EXPIRY_GRACE", "AbortRequest", "AbortRequests", "Looks"]

#: Seconds a request or a rule stays in force in a worker process after its
#: TTL ended. When the TTL ends, the watcher looks which messages this
#: process holds (fetched, not started) and keeps the request of each in
#: force until it starts or leaves; the grace lets a message that a thread
#: took just before that look find the request as it starts, and covers a
#: watcher that looks a little late.
EXPIRY_GRACE = 1.0


class AbortRequest(NamedTuple):
    """An abort request in force, as one worker process knows it."""

    message_id: str
    #: False for a cancel: the message must not start, but is not interrupted.
    interrupts: bool
    #: ``time.monotonic()`` at which a running message is interrupted.
    abort_at: float
    #: ``time.monotonic()`` at which the request stops applying.
    expires_at: float
    #: ``time.monotonic()`` at which the backend recorded the request, as
    #: this process reckons it: how long an abort took is counted from it.
    sent_at: float
    #: Why the sender stopped the message, if it said.
    reason: str | None = None
    #: The message the request was sent for, when it reached this one as
    #: its descendant (see :mod:`dramatiq_abort.worker.lineage`).
    ancestor: str | None = None

    def for_descendant(self, message_id: str) -> AbortRequest:
        """This request, as it reaches ``message_id``, a descendant of its message."""
        return self._replace(message_id=message_id, ancestor=self.ancestor or self.message_id)


def prevailing(held: AbortRequest | None, received: AbortRequest) -> AbortRequest:
    """The request in force for a message that holds ``held`` once
    ``received`` reaches it: ``received``, except that a cancel (the cancel
    half of an abort, or a cancel rule) never weakens an abort, only makes
    it last longer."""
    if held is not None and held.interrupts and not received.interrupts:
        return held._replace(expires_at=max(held.expires_at, received.expires_at))
    return received


class Looks:
    """When the TTLs of requests or rules end: the watcher then looks
    whether this process holds the messages they stop. A heap of
    ``(ttl_end, expires_at, key)``; an entry whose key has been recorded
    again with another expiry since is passed over."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, float, str]] = []

    def add(self, key: str, expires_at: float) -> None:
        """Look at ``key``, which expires at ``expires_at``, when its TTL ends."""
        heapq.heappush(self._heap, (expires_at - EXPIRY_GRACE, expires_at, key))

    def next(self) -> float | None:
        """``time.monotonic()`` of the next look, if any."""
        return self._heap[0][0] if self._heap else None

    def due(self, now: float, expiry: Callable[[str], float | None]) -> list[str]:
        """The keys whose TTL ended by ``now``, each once; ``expiry`` gives
        the expiry a key is held with now (``None``: it is gone)."""
        heap = self._heap
        keys = []
        while heap and heap[0][0] <= now:
            _ttl_end, expires_at, key = heapq.heappop(heap)
            if expiry(key) == expires_at:
                keys.append(key)
        return keys


class AbortRequests:
    """The abort requests in force, as one worker process received them.

    Looking a request up is a dict access: no lock, no round trip.

    A request lives until its TTL ends, plus :data:`EXPIRY_GRACE`, unless
    :meth:`keep` keeps it for messages this process holds: it then lives
    until they are gone from the process (see :meth:`forget_left`).
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._lock = threading.Lock()
        self._table: ExpiringTable[AbortRequest] = ExpiringTable(operator.attrgetter("expires_at"))
        # Changed in place, never replaced: ``held`` is bound to it.
        self._by_message = self._table.entries
        self._looks = Looks()
        #: The messages that keep a request in force past its TTL, by id:
        #: weak references to the proxies this process fetched, so that the
        #: table holds no message, and lets a request go once its messages
        #: are gone (started and done with, requeued, or dropped).
        self._holders: dict[str, list[weakref.ref[Any]]] = {}
        #: The request held for a message id, expired or not, or ``None``.
        #: A C call with no Python frame, for the path every message takes,
        #: where it is nearly always ``None``; :meth:`get` says whether a
        #: request held is in force.
        self.held: Callable[[str], AbortRequest | None] = self._by_message.get

    def __len__(self) -> int:
        """How many requests are held, expired ones not forgotten yet included."""
        return len(self._by_message)

    def get(self, message_id: str) -> AbortRequest | None:
        """The request in force for ``message_id``, if any."""
        request = self._by_message.get(message_id)
        if request is None or request.expires_at <= time.monotonic():
            return None
        return request

    def record(
        self,
        timed: TimedEvent,
        now: float,
        before: dict[str, AbortRequest | None] | None = None,
    ) -> AbortRequest | None:
        """Record what ``timed`` says, ``now`` being ``time.monotonic()``.

        Returns the request now in force for its message, or ``None`` when
        the event is not a valid abort event (it is logged and skipped).

        :param before: Where to note, for each message a request is
            recorded for, the request in force for it before (``None`` for
            none), unless a note is there already: events recorded one by
            one with the same dict then tell what they added from what
            they repeated.
        """
        event, ttl_left, ttl = timed
        try:
            wire = parse_event(event)
        except ValueError as e:
            self.logger.warning("Skipping an abort event: %s.", e)
            return None
        expires_at = now + ttl_left / 1000 + EXPIRY_GRACE
        # The backend recorded the request ``ttl - ttl_left`` milliseconds ago.
        sent_at = now - max(0, ttl - ttl_left) / 1000
        if wire.mode is AbortMode.CANCEL:
            request = AbortRequest(
                wire.message_id, False, math.inf, expires_at, sent_at, wire.reason
            )
        else:
            # The grace runs from when the abort was sent.
            abort_at = sent_at + wire.grace / 1000
            request = AbortRequest(
                wire.message_id, True, abort_at, expires_at, sent_at, wire.reason
            )
        message_id = wire.message_id
        with self._lock:
            previous = self._by_message.get(message_id)
            if before is not None and message_id not in before:
                in_force = previous is not None and previous.expires_at > now
                before[message_id] = previous if in_force else None
            request = prevailing(previous, request)
            self._table.put(message_id, request)
            if request.expires_at != math.inf:
                self._looks.add(message_id, request.expires_at)
            self._table.forget_expired(now)
        return request

    def next_look(self) -> float | None:
        """``time.monotonic()`` at which the TTL of a request ends next, if any."""
        with self._lock:
            return self._looks.next()

    def ending(self, now: float) -> list[AbortRequest]:
        """The requests whose TTL ended by ``now`` (``time.monotonic()``),
        each returned once: :meth:`keep` those whose message this process holds."""
        with self._lock:
            by_message = self._by_message
            ids = self._looks.due(
                now, lambda message_id: getattr(by_message.get(message_id), "expires_at", None)
            )
            return [by_message[message_id] for message_id in ids]

    def keep(self, request: AbortRequest, holder: Any) -> None:
        """Keep ``request`` in force, past its TTL, for as long as the
        process holds ``holder``: a message it targets, which this process
        fetched and has not started. A request in force for the message
        prevails as :func:`prevailing` says."""
        message_id = request.message_id
        with self._lock:
            kept = request._replace(expires_at=math.inf)
            self._table.put(message_id, prevailing(self._by_message.get(message_id), kept))
            holders = self._holders.setdefault(message_id, [])
            if not any(ref() is holder for ref in holders):
                holders.append(weakref.ref(holder))

    @property
    def kept(self) -> int:
        """How many messages hold requests past their TTL."""
        return len(self._holders)

    def forget_left(self, leaving: Any = None) -> None:
        """Let go of the requests kept for messages no longer in the process.

        :param leaving: A message this process is done with (it started, and
            was cancelled): only its requests are looked at, and it counts
            as gone already.
        """
        with self._lock:
            ids = list(self._holders) if leaving is None else [leaving.message_id]
            for message_id in ids:
                holders = self._holders.get(message_id)
                if holders is None:
                    continue
                holders[:] = [
                    ref for ref in holders if (held := ref()) is not None and held is not leaving
                ]
                if not holders:
                    self._let_go(message_id)

    def forget_kept(self) -> None:
        """Let go of every request kept past its TTL: the process holds no
        message any more, its last worker having shut down."""
        with self._lock:
            for message_id in list(self._holders):
                self._let_go(message_id)

    def _let_go(self, message_id: str) -> None:
        del self._holders[message_id]
        request = self._by_message.get(message_id)
        # A request recorded since has a TTL of its own.
        if request is not None and request.expires_at == math.inf:
            del self._by_message[message_id]

    def next_expiry(self) -> float | None:
        """``time.monotonic()`` at which the next request expires, if any."""
        with self._lock:
            return self._table.next_expiry()

    def forget_expired(self, now: float) -> None:
        """Drop the requests expired by ``now`` (``time.monotonic()``)."""
        with self._lock:
            self._table.forget_expired(now)
