"""The abort rules in force, as one worker process knows them: each stops
the messages of an actor or a queue that were sent before a moment."""

from __future__ import annotations

import logging
import math
import operator
import threading
import time
from typing import Any, NamedTuple

from dramatiq.common import q_name

from ..backend import TimedEvent
from ..expiring import ExpiringTable
from ..mode import AbortMode
from ..wire import parse_rule
from .requests import EXPIRY_GRACE, AbortRequest, Looks

__all__ = ["AbortRule", "AbortRules"]


def message_matches(
    message: Any, actor: str | None, queue: str | None, sent_before: int | None
) -> bool:
    """Whether ``message`` (a dramatiq message or its proxy) is of ``actor``
    and of the canonical ``queue`` (those not ``None``; a delay queue counts
    as its queue), sent before ``sent_before`` (milliseconds since the epoch,
    as ``message_timestamp``; ``None``: whenever). What a rule stops and what
    a listing shows are chosen by it.
    """
    return (
        (sent_before is None or message.message_timestamp < sent_before)
        and (actor is None or message.actor_name == actor)
        and (queue is None or q_name(message.queue_name) == queue)
    )


class AbortRule(NamedTuple):
    """A rule in force, as one worker process knows it."""

    rule_id: str
    #: The actor whose messages it stops; ``None`` for any actor of :attr:`queue`.
    actor: str | None
    #: The canonical queue whose messages it stops; ``None`` for any queue.
    queue: str | None
    #: Milliseconds since the epoch: it stops messages sent before.
    sent_before: int
    #: False for a cancel: a running message is left alone.
    interrupts: bool
    #: ``time.monotonic()`` at which a running message is interrupted.
    abort_at: float
    #: ``time.monotonic()`` at which the rule stops applying.
    expires_at: float
    #: ``time.monotonic()`` at which the backend recorded the rule, as this
    #: process reckons it.
    sent_at: float
    #: Why the sender stopped these messages, if it said.
    reason: str | None

    def matches(self, message: Any) -> bool:
        """Whether ``message`` (a dramatiq message or its proxy) is one this
        rule stops, expiry aside."""
        return message_matches(message, self.actor, self.queue, self.sent_before)

    def request_for(self, message_id: str) -> AbortRequest:
        """The abort request this rule makes for the message ``message_id``."""
        return AbortRequest(
            message_id, self.interrupts, self.abort_at, self.expires_at, self.sent_at, self.reason
        )


class AbortRules:
    """The rules in force, as one worker process received them, indexed by
    actor (rules that name one) and by queue (rules that name only a queue).

    Only the watcher changes the table, and it replaces the indexes rather
    than changing them: a worker thread reads them with no lock.

    A rule lives until its TTL ends, plus :data:`EXPIRY_GRACE`; the watcher
    turns it into a request kept for each message this process holds that
    it stops (see :meth:`ending`).
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._lock = threading.Lock()
        self._table: ExpiringTable[AbortRule] = ExpiringTable(operator.attrgetter("expires_at"))
        self._rules = self._table.entries
        self._looks = Looks()
        self._by_actor: dict[str, tuple[AbortRule, ...]] = {}
        self._by_queue: dict[str, tuple[AbortRule, ...]] = {}
        #: Whether any rule is held: the one test that the path every
        #: message takes pays while there is none.
        self.in_force = False

    def __len__(self) -> int:
        """How many rules are held, expired ones not forgotten yet included."""
        return len(self._rules)

    def match(self, message: Any) -> AbortRule | None:
        """The rule in force that stops ``message`` (a dramatiq message or
        its proxy), if any: two dict lookups, then rules of its actor or
        queue only, latest ``sent_before`` first, up to the first one that
        it was sent after."""
        queue = q_name(message.queue_name)
        of_actor = self._by_actor.get(message.actor_name)
        of_queue = self._by_queue.get(queue)
        if of_actor is None and of_queue is None:
            return None
        timestamp = message.message_timestamp
        now = 0.0
        for rules in (of_actor, of_queue):
            for rule in rules or ():
                if timestamp >= rule.sent_before:
                    break  # The rules after this one are older still.
                now = now or time.monotonic()
                # The index matched its actor, or the queue it names alone:
                # only a queue beside an actor is left to compare.
                if rule.expires_at > now and (rule.queue is None or rule.queue == queue):
                    return rule
        return None

    def record(self, events: list[TimedEvent], now: float) -> list[AbortRule]:
        """Record the rules ``events`` carry, ``now`` being ``time.monotonic()``,
        and index them once for all.

        Returns them; an event that is not a valid rule is logged and skipped.
        """
        recorded = []
        for event, ttl_left, ttl in events:
            try:
                wire = parse_rule(event)
            except ValueError as e:
                self.logger.warning("Skipping an abort rule: %s.", e)
                continue
            # As for a request, the grace runs from when the rule was recorded.
            sent_at = now - max(0, ttl - ttl_left) / 1000
            interrupts = wire.mode is AbortMode.ABORT
            recorded.append(
                AbortRule(
                    wire.rule_id,
                    wire.actor,
                    None if wire.queue is None else q_name(wire.queue),
                    wire.sent_before,
                    interrupts,
                    sent_at + wire.grace / 1000 if interrupts else math.inf,
                    now + ttl_left / 1000 + EXPIRY_GRACE,
                    sent_at,
                    wire.reason,
                )
            )
        if not recorded:
            return recorded
        with self._lock:
            for rule in recorded:
                self._table.put(rule.rule_id, rule)
                self._looks.add(rule.rule_id, rule.expires_at)
            self._table.forget_expired(now)
            self._index()
        return recorded

    def next_look(self) -> float | None:
        """``time.monotonic()`` at which the TTL of a rule ends next, if any."""
        with self._lock:
            return self._looks.next()

    def ending(self, now: float) -> list[AbortRule]:
        """The rules whose TTL ended by ``now`` (``time.monotonic()``), each
        returned once: the watcher keeps the requests they make for the
        messages this process holds."""
        with self._lock:
            rules = self._rules
            ids = self._looks.due(
                now, lambda rule_id: getattr(rules.get(rule_id), "expires_at", None)
            )
            return [rules[rule_id] for rule_id in ids]

    def next_expiry(self) -> float | None:
        """``time.monotonic()`` at which the next rule expires, if any."""
        with self._lock:
            return self._table.next_expiry()

    def forget_expired(self, now: float) -> None:
        """Drop the rules expired by ``now`` (``time.monotonic()``)."""
        with self._lock:
            if self._table.forget_expired(now):
                self._index()

    def _index(self) -> None:
        by_actor: dict[str, list[AbortRule]] = {}
        by_queue: dict[str, list[AbortRule]] = {}
        for rule in self._rules.values():
            if rule.actor is not None:
                by_actor.setdefault(rule.actor, []).append(rule)
            elif rule.queue is not None:
                by_queue.setdefault(rule.queue, []).append(rule)
        # Latest sent_before first: see match().
        self._by_actor, self._by_queue = (
            {
                key: tuple(sorted(rules, key=lambda rule: -rule.sent_before))
                for key, rules in index.items()
            }
            for index in (by_actor, by_queue)
        )
        self.in_force = bool(self._rules)
