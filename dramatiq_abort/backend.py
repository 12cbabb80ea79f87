"""The interface between the middleware and the store that carries abort events."""

from __future__ import annotations

import abc
from collections.abc import Iterable
from typing import Any, NamedTuple

from . import nogil

__all__ = ["Event", "EventBackend", "MessageRecords", "Subscription", "TimedEvent"]


class Event(NamedTuple):
    """Events are composed of an identifying key and associated parameters."""

    key: str
    params: dict[str, Any]


class TimedEvent(NamedTuple):
    """An event as a subscription hands it over: with how long it still applies."""

    event: Event
    #: Milliseconds the event stays valid from the moment it was read.
    ttl_left: int
    #: The TTL it was notified with, in milliseconds.
    ttl: int


class MessageRecords(NamedTuple):
    """What a backend holds for one message, read in one go by :meth:`EventBackend.records`."""

    #: The abort request in force for it, if any.
    abort: Event | None
    #: The cancel request in force for it, if any (an abort request carries one too).
    cancel: Event | None
    #: The last outcome a worker recorded for it (an :class:`~dramatiq_abort.Outcome` value).
    outcome: str | None
    #: The state text last recorded for it with :meth:`EventBackend.record_state`.
    state: str | None


class EventBackend(abc.ABC):
    """ABC for event backends.

    A backend needs only :meth:`notify`, :meth:`poll` and :meth:`wait_many`:
    workers then wait on the keys of the messages they run. What more it
    can do it states in its class attributes, which default to ``False``;
    the middleware uses what a backend states, and nothing else.
    """

    #: Whether :meth:`subscribe` opens a push channel: workers then learn of
    #: every abort the moment it is sent, with no round trip per message.
    pushes: bool = False
    #: Whether :meth:`record_outcome` records outcomes and
    #: :meth:`wait_outcome` reads them: what ``Abortable.outcome`` and
    #: ``Abortable.wait_outcome`` need.
    records_outcomes: bool = False
    #: Whether :meth:`record_outcome` takes the reason of the request and
    #: :meth:`outcome_reason` reads it back: what ``Abortable.outcome_reason``
    #: needs. Only with :attr:`records_outcomes`.
    records_reasons: bool = False
    #: Whether :meth:`record_state` keeps a state per message, read back by
    #: :meth:`records`: what ``compat``'s task states need.
    stores_states: bool = False
    #: Whether :meth:`answer` carries a worker's answer to an inquiry back
    #: to the process that asked, which reads them with
    #: :meth:`collect_answers`: what ``Abortable.running_messages`` needs,
    #: with :attr:`pushes` to carry the inquiry.
    carries_answers: bool = False

    @abc.abstractmethod
    def notify(self, events: Iterable[Event], ttl: int) -> None:
        """Signal ``events``; each stays signaled for ``ttl`` milliseconds.

        Once this returns, :meth:`poll` and :meth:`wait_many` on these keys
        report the events until the TTL runs out, and every open
        :class:`Subscription` receives them.
        """

    @abc.abstractmethod
    def poll(self, key: str) -> Event | None:
        """Return the event signaled under ``key``, or ``None``, without blocking.

        A backend may consume the event, so that a later call returns ``None``.
        """

    @abc.abstractmethod
    def wait_many(self, keys: Iterable[str], timeout: int) -> Event | None:
        """Wait up to ``timeout`` milliseconds for one of ``keys`` to be signaled.

        Returns the event that was signaled, or ``None`` on timeout.
        """

    def record_outcome(
        self, message_id: str, outcome: str, ttl: int, *, reason: str | None = None
    ) -> None:
        """Record for ``ttl`` milliseconds what became of a message (an
        :class:`~dramatiq_abort.Outcome` value), replacing what was recorded
        before, and wake those waiting for it. Only called when
        :attr:`records_outcomes` is true; ``reason`` (the one of the request
        that reached the message, replacing the one recorded before) only
        when :attr:`records_reasons` is true too."""
        raise NotImplementedError(f"{type(self).__name__} does not record outcomes")

    def outcome_reason(self, message_id: str) -> str | None:
        """The reason recorded with the outcome of ``message_id``, if any.
        Only called when :attr:`records_reasons` is true."""
        raise NotImplementedError(f"{type(self).__name__} does not record reasons")

    def wait_outcome(self, message_id: str, timeout: float | None) -> str | None:
        """The outcome recorded for ``message_id``, waiting up to ``timeout``
        seconds (``None``: for ever, ``0``: not at all); ``None`` if none
        came. Only called when
        :attr:`records_outcomes` is true."""
        raise NotImplementedError(f"{type(self).__name__} does not record outcomes")

    def record_state(self, message_id: str, state: str, ttl: int) -> None:
        """Keep ``state``, a text that a layer on top of the middleware
        chose, for ``message_id`` during ``ttl`` milliseconds, replacing the
        one kept before. Abort requests and outcomes are left as they are.
        Only called when :attr:`stores_states` is true."""
        raise NotImplementedError(f"{type(self).__name__} does not store message states")

    def records(self, message_id: str) -> MessageRecords:
        """Everything kept for ``message_id``, read in one round trip where
        the store allows it. The default asks :meth:`poll` for each request."""
        from .mode import AbortMode
        from .wire import event_key

        outcome = self.wait_outcome(message_id, 0) if self.records_outcomes else None
        return MessageRecords(
            self.poll(event_key(message_id, AbortMode.ABORT)),
            self.poll(event_key(message_id, AbortMode.CANCEL)),
            outcome,
            None,
        )

    def forget(self, message_id: str) -> None:
        """Drop the outcome and the state kept for ``message_id``; its abort
        requests stay in force until their TTL. The default keeps neither."""
        return None

    def answer(self, reply_to: str, payload: str, ttl: int) -> None:
        """Hand ``payload``, one worker process's answer, to whoever collects
        answers at ``reply_to``; kept at most ``ttl`` milliseconds if nobody
        does. Called on the watcher thread: one short write, no wait. Only
        called when :attr:`carries_answers` is true."""
        raise NotImplementedError(f"{type(self).__name__} does not carry answers")

    def collect_answers(self, reply_to: str, expected: int | None, timeout: float) -> list[str]:
        """The answers handed to ``reply_to``, in the order they came,
        waiting up to ``timeout`` seconds, or less once ``expected`` (when
        not ``None``) came. What was handed to ``reply_to`` is then
        dropped, or left to expire. Only called when :attr:`carries_answers` is true."""
        raise NotImplementedError(f"{type(self).__name__} does not carry answers")

    def subscribers(self) -> int | None:
        """How many push channels (one per worker process) are open now,
        or ``None`` when the backend cannot tell."""
        return None

    def subscribe(self) -> Subscription:
        """Open a push channel for this worker process; only called when
        :attr:`pushes` is true."""
        raise NotImplementedError(f"{type(self).__name__} does not push events")


class Subscription(abc.ABC):
    """A push channel of events, owned by the one thread that reads it.

    Its owner waits for :meth:`fileno` to become readable, then calls
    :meth:`receive`. Other threads may only call its :meth:`probe`: a
    readable descriptor tells them events are on their way.
    """

    @abc.abstractmethod
    def fileno(self) -> int:
        """A file descriptor that is readable while events wait to be received."""

    def probe(self) -> nogil.ReadinessProbe:
        """What other threads call to test :meth:`fileno` for readability."""
        return nogil.ReadinessProbe(self.fileno())

    @abc.abstractmethod
    def recorded(self) -> list[TimedEvent]:
        """Every event still valid in the backend, to catch up after (re)connecting.

        Called after the subscription is live, so no event falls between the two.
        """

    @abc.abstractmethod
    def receive(self) -> list[TimedEvent]:
        """Every event pushed so far and not yet received; never blocks.

        Raises :class:`ConnectionError` (or the client's own error) when
        the channel is lost; the owner then opens a new subscription.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release the channel. Safe to call more than once."""
