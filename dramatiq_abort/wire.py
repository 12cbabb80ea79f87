"""The wire format of abort requests, as dramatiq-abort 1.x writes it: an
event keyed ``cancel:<message id>`` stops a message that has not started,
and one keyed ``abort:<message id>`` (parameter ``abort_timeout``: the
milliseconds of grace, ``null`` for never) interrupts it while it runs.
An event keyed ``inquiry:<reply address>`` asks every worker process which
messages it runs (see :mod:`dramatiq_abort.listing`).

Keys are built and read here only."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, NamedTuple

from .backend import Event
from .mode import AbortMode

#: Between the mode and the message id in a key.
SEPARATOR = ":"
#: What the key of an inquiry starts with, before the separator.
INQUIRY = "inquiry"


class WireRequest(NamedTuple):
    """What one event says."""

    message_id: str
    mode: AbortMode
    #: Milliseconds a running message is given before it is interrupted;
    #: ``math.inf`` for never. 0 for a cancel, which never interrupts.
    grace: float


class Inquiry(NamedTuple):
    """What an inquiry asks: which messages run that match its filters."""

    #: Where workers send their answers (see ``EventBackend.answer``).
    reply_to: str
    #: Only messages of this actor, if given.
    actor: str | None
    #: Only messages of this queue, if given.
    queue: str | None
    #: Only messages sent before this moment, in milliseconds since the
    #: epoch (as ``message_timestamp``), if given.
    sent_before: int | None
    #: Whether answers carry the messages' arguments.
    args: bool


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


def inquiry_event(inquiry: Inquiry) -> Event:
    """The event that carries ``inquiry`` to every worker process."""
    params = inquiry._asdict()
    del params["reply_to"]
    return Event(f"{INQUIRY}{SEPARATOR}{inquiry.reply_to}", params)


def is_inquiry(event: Event) -> bool:
    """Whether ``event`` is an inquiry rather than an abort request."""
    return event.key.startswith(INQUIRY + SEPARATOR)


def parse_inquiry(event: Event) -> Inquiry:
    """What inquiry ``event`` asks; ``ValueError`` saying why when it is malformed."""
    _, _, reply_to = event.key.partition(SEPARATOR)
    params = event.params
    actor, queue = params.get("actor"), params.get("queue")
    sent_before, args = params.get("sent_before"), params.get("args", False)
    if (
        not reply_to
        or not all(value is None or isinstance(value, str) for value in (actor, queue))
        or not (sent_before is None or type(sent_before) is int)
        or not isinstance(args, bool)
    ):
        raise ValueError(f"malformed inquiry {event.key!r}: {params!r:.200}")
    return Inquiry(reply_to, actor, queue, sent_before, args)
