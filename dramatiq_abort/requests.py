"""Abort requests: their modes, how they are keyed as events, and what a
worker process knows of the ones in force."""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
from enum import Enum
from typing import NamedTuple

from .backend import Event, TimedEvent


class AbortMode(Enum):
    """What an abort request stops.

    ``CANCEL`` stops a message that has not started; ``ABORT`` stops it too,
    and interrupts it while it runs.
    """

    ABORT = "abort"
    CANCEL = "cancel"


#: Longest message id accepted, in characters. dramatiq's ids are UUIDs (36
#: characters); 255 leaves room for ids of other schemes (prefixed, ULIDs,
#: Celery task ids) and fits a ``VARCHAR(255)`` column, while a hostile id
#: cannot make every abort write and push megabytes to each worker.
MAX_MESSAGE_ID_LENGTH = 255


def check_message_id(message_id: object) -> str:
    """Return ``message_id`` when it can name a message, else raise."""
    if not isinstance(message_id, str):
        raise TypeError(f"message_id must be a str, not {message_id!r:.100}")
    if not message_id:
        raise ValueError(f"message_id must not be empty: {message_id!r}")
    if len(message_id) > MAX_MESSAGE_ID_LENGTH:
        raise ValueError(
            f"message_id must be at most {MAX_MESSAGE_ID_LENGTH} characters, not"
            f" {len(message_id):,}: {message_id[:40]!r}..."
        )
    return message_id


def check_mode(mode: object) -> AbortMode:
    """Accept an :class:`AbortMode` or its value (``"abort"``, ``"cancel"``)."""
    if isinstance(mode, AbortMode):
        return mode
    try:
        return AbortMode(mode)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in AbortMode)
        raise ValueError(
            f"unknown abort mode {mode!r}: use AbortMode or one of {choices}"
        ) from None


def check_milliseconds(name: str, value: object, *, positive: bool = False) -> int:
    """Return ``value`` as a whole number of milliseconds, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of milliseconds, not {value!r:.100}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, not {value!r}")
    if value < 0 or (positive and value == 0):
        bound = "greater than 0" if positive else "0 or more"
        raise ValueError(f"{name} must be {bound}, not {value!r}")
    return int(value)


def check_seconds(name: str, value: object, *, forever: bool = False) -> float | None:
    """Return ``value`` as seconds, else raise naming ``name``; with
    ``forever``, ``None`` and ``math.inf`` mean no limit (``None``)."""
    if forever and (value is None or (isinstance(value, float) and value == math.inf)):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {value!r:.100}")
    if not math.isfinite(value) or value < 0:
        bound = "0 or more, or None for no limit" if forever else "finite and 0 or more"
        raise ValueError(f"{name} must be {bound}, not {value!r}")
    return float(value)


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` when it is a bool, else raise naming ``name``: a
    string such as ``"false"`` would otherwise count as true."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {value!r:.100}")
    return value


def check_abort_timeout(value: object) -> float:
    """Milliseconds of grace, or ``math.inf``: ask the message to stop, never force it."""
    if isinstance(value, float) and value == math.inf:
        return value
    return check_milliseconds("abort_timeout", value)


def event_key(message_id: str, mode: AbortMode) -> str:
    """The key of the event that carries ``mode`` for ``message_id``."""
    return f"{mode.value}:{message_id}"


def events_for(message_id: str, mode: AbortMode, abort_timeout: float) -> list[Event]:
    """The events that carry one abort request, keyed as dramatiq-abort 1.x keys them.

    A request that is never forced carries ``abort_timeout: null``.
    """
    events = [Event(event_key(message_id, AbortMode.CANCEL), {})]
    if mode is AbortMode.ABORT:
        grace = None if abort_timeout == math.inf else int(abort_timeout)
        events.append(Event(event_key(message_id, AbortMode.ABORT), {"abort_timeout": grace}))
    return events


class AbortRequest(NamedTuple):
    """An abort request in force, as one worker process knows it."""

    message_id: str
    #: False for a cancel: the message must not start, but is not interrupted.
    interrupts: bool
    #: ``time.monotonic()`` at which a running message is interrupted.
    abort_at: float
    #: ``time.monotonic()`` at which the request stops applying.
    expires_at: float


class AbortRequests:
    """The abort requests in force, as one worker process learnt them.

    Looking a request up is a dict access: no lock, no round trip.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._lock = threading.Lock()
        self._by_message: dict[str, AbortRequest] = {}
        self._expiries: list[tuple[float, str]] = []

    def __len__(self) -> int:
        """How many requests are held, expired ones not forgotten yet included."""
        return len(self._by_message)

    def get(self, message_id: str) -> AbortRequest | None:
        """The request in force for ``message_id``, if any."""
        request = self._by_message.get(message_id)
        if request is None or request.expires_at <= time.monotonic():
            return None
        return request

    def learn(self, timed: TimedEvent, now: float) -> AbortRequest | None:
        """Record what ``timed`` says, ``now`` being ``time.monotonic()``.

        Returns the request now in force for its message, or ``None`` when
        the event is not a valid abort event (it is logged and skipped).
        """
        event, ttl_left, ttl = timed
        mode_name, sep, message_id = event.key.partition(":")
        if not sep or not message_id or mode_name not in ("abort", "cancel"):
            self.logger.warning("Skipping an event with an unknown key: %r.", event.key)
            return None
        expires_at = now + ttl_left / 1000
        if mode_name == AbortMode.CANCEL.value:
            request = AbortRequest(message_id, False, float("inf"), expires_at)
        else:
            timeout = event.params.get("abort_timeout", 0)
            if timeout is None:
                timeout = math.inf
            elif isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
                self.logger.warning(
                    "Skipping abort event %r with a bad abort_timeout: %r.", event.key, timeout
                )
                return None
            # The grace runs from when the abort was sent: the backend
            # recorded it ``ttl - ttl_left`` milliseconds ago.
            sent_at = now - max(0, ttl - ttl_left) / 1000
            request = AbortRequest(message_id, True, sent_at + timeout / 1000, expires_at)
        with self._lock:
            previous = self._by_message.get(message_id)
            if previous is not None and previous.interrupts and not request.interrupts:
                # The cancel half of an abort must not weaken it.
                request = previous._replace(expires_at=max(previous.expires_at, expires_at))
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
