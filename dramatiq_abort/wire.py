"""The wire format of abort events. As dramatiq-abort 1.x writes it, an
event keyed ``cancel:<message id>`` stops a message that has not started,
and one keyed ``abort:<message id>`` (parameter ``abort_timeout``: the
milliseconds of grace, ``null`` for never) interrupts it while it runs.
Version 2 adds an optional ``reason`` parameter to both, which 1.x ignores,
and rules: an event keyed ``rule:<rule id>`` stops the messages of an actor
or queue sent before a moment.
An event keyed ``inquiry:<reply address>`` asks every worker process which
messages it runs (see :mod:`dramatiq_abort.listing`).

Keys are built and read here only."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from .backend import Event
from .checks import MAX_REASON_LENGTH
from .mode import AbortMode

__all__ = [
    "INQUIRY",
    "RULE",
    "SEPARATOR",
    "Inquiry",
    "WireRequest",
    "WireRule",
    "event_key",
    "events_for",
    "inquiry_event",
    "is_inquiry",
    "is_rule",
    "key_message_id",
    "parse_event",
    "parse_inquiry",
    "parse_rule",
    "rule_event",
    "rule_key",
]

#: Between the mode and the message id in a key.
SEPARATOR = ":"
#: What the key of an inquiry starts with, before the separator.
INQUIRY = "inquiry"
#: What the key of a rule event starts with, before :data:`SEPARATOR`.
RULE = "rule"


class WireRequest(NamedTuple):
    """What one request event says."""

    message_id: str
    mode: AbortMode
    #: Milliseconds a running message is given before it is interrupted;
    #: ``math.inf`` for never. 0 for a cancel, which never interrupts.
    grace: float
    #: Why the sender stopped the message, if it said.
    reason: str | None = None


class WireRule(NamedTuple):
    """What one rule event says: stop the messages of ``actor`` and of
    ``queue`` (those given) sent before ``sent_before``."""

    rule_id: str
    actor: str | None
    #: A canonical queue name: never a delay queue's.
    queue: str | None
    #: Milliseconds since the epoch, as ``Message.message_timestamp``.
    sent_before: int
    mode: AbortMode
    #: As :attr:`WireRequest.grace`.
    grace: float
    reason: str | None


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
    #: Whether answers name the actors each process declares.
    actors: bool = False


def event_key(message_id: str, mode: AbortMode) -> str:
    """The key of the event that carries ``mode`` for ``message_id``."""
    return f"{mode.value}{SEPARATOR}{message_id}"


def key_message_id(key: str) -> str:
    """The message id in ``key``, the key of a request event (see
    :func:`event_key`); read as dramatiq-abort 1.x reads it."""
    return key.split(SEPARATOR, 1)[-1]


def rule_key(rule_id: str) -> str:
    """The key of the event that carries the rule ``rule_id``."""
    return f"{RULE}{SEPARATOR}{rule_id}"


def is_rule(event: Event) -> bool:
    """Whether ``event`` carries a rule rather than a request."""
    return event.key.startswith(RULE + SEPARATOR)


def _timeout_param(abort_timeout: float) -> int | None:
    return None if abort_timeout == math.inf else int(abort_timeout)


def events_for(
    message_ids: Iterable[str],
    mode: AbortMode,
    abort_timeout: float,
    reason: str | None = None,
    marks: Mapping[str, Any] | None = None,
) -> list[Event]:
    """The events that carry one abort request for each of ``message_ids``,
    each with ``marks`` among its parameters (see ``Abortable.abort_many``).

    Events of the same kind share one parameters dict (do not change it),
    so that a backend can encode it once.
    """
    cancel: dict[str, Any] = {**(marks or {})}
    abort: dict[str, Any] = {**cancel, "abort_timeout": _timeout_param(abort_timeout)}
    if reason is not None:
        cancel["reason"] = abort["reason"] = reason
    events = []
    for message_id in message_ids:
        events.append(Event(event_key(message_id, AbortMode.CANCEL), cancel))
        if mode is AbortMode.ABORT:
            events.append(Event(event_key(message_id, AbortMode.ABORT), abort))
    return events


def rule_event(
    rule_id: str,
    *,
    actor: str | None,
    queue: str | None,
    sent_before: int,
    mode: AbortMode,
    abort_timeout: float,
    reason: str | None,
) -> Event:
    """The event that carries a rule; see :class:`WireRule` for the fields."""
    params: dict[str, Any] = {
        "actor": actor,
        "queue": queue,
        "sent_before": sent_before,
        "mode": mode.value,
        "abort_timeout": _timeout_param(abort_timeout),
    }
    if reason is not None:
        params["reason"] = reason
    return Event(rule_key(rule_id), params)


def parse_event(event: Event) -> WireRequest:
    """What ``event`` requests; ``ValueError`` saying why when it is not
    a request event."""
    mode_name, separator, message_id = event.key.partition(SEPARATOR)
    if not separator or not message_id:
        raise ValueError(f"unknown key {event.key!r}")
    try:
        mode = AbortMode(mode_name)
    except ValueError:
        raise ValueError(f"unknown key {event.key!r}") from None
    reason = _reason(event.params)
    if mode is AbortMode.CANCEL:
        return WireRequest(message_id, mode, 0, reason)
    return WireRequest(message_id, mode, _grace(event), reason)


def parse_rule(event: Event) -> WireRule:
    """The rule ``event`` carries; ``ValueError`` saying why when it is
    not a valid rule event."""
    _, _, rule_id = event.key.partition(SEPARATOR)
    params = event.params
    actor, queue = params.get("actor"), params.get("queue")
    if not rule_id or not is_rule(event):
        raise ValueError(f"{event.key!r} is not the key of a rule")
    for name, value in (("actor", actor), ("queue", queue)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(f"rule {event.key!r} has a bad {name}: {value!r:.100}")
    if actor is None and queue is None:
        raise ValueError(f"rule {event.key!r} names neither an actor nor a queue")
    sent_before = params.get("sent_before")
    if isinstance(sent_before, bool) or not isinstance(sent_before, int):
        raise ValueError(f"rule {event.key!r} has a bad sent_before: {sent_before!r:.100}")
    try:
        mode = AbortMode(params.get("mode"))
    except ValueError:
        raise ValueError(
            f"rule {event.key!r} has a bad mode: {params.get('mode')!r:.100}"
        ) from None
    grace = 0.0 if mode is AbortMode.CANCEL else _grace(event)
    return WireRule(rule_id, actor, queue, sent_before, mode, grace, _reason(params))


def _grace(event: Event) -> float:
    grace = event.params.get("abort_timeout", 0)
    if grace is None:
        return math.inf
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or grace < 0:
        raise ValueError(f"abort event {event.key!r} has a bad abort_timeout: {grace!r}")
    return float(grace)


def _reason(params: dict[str, Any]) -> str | None:
    # A malformed reason must not cost the abort it comes with: dropped.
    reason = params.get("reason")
    return reason[:MAX_REASON_LENGTH] if isinstance(reason, str) and reason else None


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
    actors = params.get("actors", False)
    if (
        not reply_to
        or not all(value is None or isinstance(value, str) for value in (actor, queue))
        or not (sent_before is None or type(sent_before) is int)
        or not all(isinstance(value, bool) for value in (args, actors))
    ):
        raise ValueError(f"malformed inquiry {event.key!r}: {params!r:.200}")
    return Inquiry(reply_to, actor, queue, sent_before, args, actors)
