"""The abort requests in force, as one worker process knows them."""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

from .backend import TimedEvent
from .mode import AbortMode
from .wire import parse_event

__all__ = ["AbortRequest", "AbortRequests"]


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
    #: its descendant (see :mod:`dramatiq_abort.lineage`).
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


class AbortRequests:
    """The abort requests in force, as one worker process received them.

    Looking a request up is a dict access: no lock, no round trip.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._lock = threading.Lock()
        # Changed in place, never replaced: ``held`` is bound to it.
        self._by_message: dict[str, AbortRequest] = {}
        self._expiries: list[tuple[float, str]] = []
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
        expires_at = now + ttl_left / 1000
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
            self._by_message[message_id] = request
            heapq.heappush(self._expiries, (request.expires_at, message_id))
            self._forget_expired(now)
        return request

    def next_expiry(self) -> float | None:
        """``time.monotonic()`` at which the next request expires, if any."""
        with self._lock:
            return self._expiries[0][0] if self._expiries else None

    def forget_expired(self, now: float) -> None:
        """Drop the requests expired by ``now`` (``time.monotonic()``)."""
        with self._lock:
            self._forget_expired(now)

    def _forget_expired(self, now: float) -> None:
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            _expires_at, message_id = heapq.heappop(expiries)
            request = self._by_message.get(message_id)
            if request is not None and request.expires_at <= now:
                del self._by_message[message_id]
