"""The wire format of abort requests, as dramatiq-abort 1.x writes it: an
event keyed ``cancel:<message id>`` stops a message that has not started,
and one keyed ``abort:<message id>`` (parameter ``abort_timeout``: the
milliseconds of grace, ``null`` for never) interrupts it while it runs.

Keys are built and read here only."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, NamedTuple

from .backend import Event
from .mode import AbortMode

#: Between the mode and the message id in a key.
SEPARATOR = ":"


class WireRequest(NamedTuple):
    """What one event says."""

    message_id: str
    mode: AbortMode
    #: Milliseconds a running message is given before it is interrupted;
    #: ``math.inf`` for never. 0 for a cancel, which never interrupts.
    grace: float


def event_key(message_id: str, mode: AbortMode) -> str:
    """The key of the event that carries ``mode`` for ``message_id``."""
    return f"{mode.value}{SEPARATOR}{message_id}"


def events_for(message_ids: Iterable[str], mode: AbortMode, abort_timeout: float) -> list[Event]:
    """The events that carry one abort request for each of ``message_ids``.

    Events of the same kind share one parameters dict (do not change it),
    so that a backend can encode it once.
    """
    cancel: dict[str, Any] = {}
    abort = {"abort_timeout": None if abort_timeout == math.inf else int(abort_timeout)}
    events = []
    for message_id in message_ids:
        events.append(Event(event_key(message_id, AbortMode.CANCEL), cancel))
        if mode is AbortMode.ABORT:
            events.append(Event(event_key(message_id, AbortMode.ABORT), abort))
    return events


def parse_event(event: Event) -> WireRequest:
    """What ``event`` requests; ``ValueError`` saying why when it is not
    an abort event."""
    mode_name, separator, message_id = event.key.partition(SEPARATOR)
    if not separator or not message_id:
        raise ValueError(f"unknown key {event.key!r}")
    try:
        mode = AbortMode(mode_name)
    except ValueError:
        raise ValueError(f"unknown key {event.key!r}") from None
    if mode is AbortMode.CANCEL:
        return WireRequest(message_id, mode, 0)
    grace = event.params.get("abort_timeout", 0)
    if grace is None:
        return WireRequest(message_id, mode, math.inf)
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or grace < 0:
        raise ValueError(f"abort event {event.key!r} has a bad abort_timeout: {grace!r}")
    return WireRequest(message_id, mode, grace)
