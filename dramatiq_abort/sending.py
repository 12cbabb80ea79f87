"""The sender: what :class:`~dramatiq_abort.middleware.Abortable` writes to
its backend for callers (abort requests and rules) and reads back for them
(outcomes, reasons, the listing), each argument checked before anything is sent."""

from __future__ import annotations

import datetime
import logging
import time
import uuid
from collections.abc import Iterable
from typing import TypeAlias

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.common import q_name

from . import listing
from .backend import Event, EventBackend
from .checks import (
    check_abort_timeout,
    check_marks,
    check_message_id,
    check_milliseconds,
    check_mode,
    check_name,
    check_reason,
    check_seconds,
    check_sent_before,
)
from .dramatiq_internals import AnyMessage
from .listing import Listing
from .mode import AbortMode
from .outcome import Outcome
from .wire import events_for, rule_event
from .worker.requests import AbortRequest

__all__ = ["LISTING_WAIT", "MessageRef", "Sender", "message_id_of", "time_left"]

#: What names a message: its id, the message, or the proxy a worker runs it as.
MessageRef: TypeAlias = "str | AnyMessage"

#: Default seconds :func:`~dramatiq_abort.running_messages` waits for worker
#: processes to answer. It returns as soon as every listening process
#: answered, so this is only waited out when one does not: a watcher waits
#: its turn for the GIL behind the busy threads of its process, over a second
#: beside 20 threads that compute in Python (see benchmarks/listing.py).
LISTING_WAIT = 5.0


def message_id_of(message: object) -> str:
    """The checked id of ``message``: an id, a dramatiq message, or the
    proxy of one that a worker runs (``CurrentMessage.get_current_message()``)."""
    if isinstance(message, (dramatiq.Message, MessageProxy)):
        message = message.message_id
    return check_message_id(message)


def time_left(request: AbortRequest | None) -> float | None:
    """Milliseconds until ``request`` interrupts its message; ``None`` when
    there is no request or it does not interrupt (``AbortMode.CANCEL``)."""
    if request is None or not request.interrupts:
        return None
    return max(0.0, (request.abort_at - time.monotonic()) * 1000)


class Sender:
    """Sends abort requests and rules through ``backend`` and reads what
    workers report back: the part of :class:`~dramatiq_abort.Abortable`
    that callers use, in any process, each argument checked before anything
    is sent. The module functions of :mod:`dramatiq_abort.middleware` call
    these methods, and their docstrings say what each parameter means.

    :param backend: Where requests and rules are recorded.
    :param abort_ttl: Milliseconds a request or rule stays in force when
        the caller gives no ``abort_ttl``.
    :param logger: Where a rule that names no declared actor is warned of.
    """

    def __init__(self, backend: EventBackend, abort_ttl: int, logger: logging.Logger) -> None:
        self.backend = backend
        self.abort_ttl = abort_ttl
        self.logger = logger
        #: The names of the actors declared in this process, to warn of a
        #: rule that names none of them.
        self.declared_actors: set[str] = set()

    def abort(
        self,
        message_id: MessageRef,
        abort_ttl: int | None = None,
        mode: AbortMode = AbortMode.ABORT,
        abort_timeout: float = 0,
        *,
        reason: str | None = None,
    ) -> None:
        """See :func:`~dramatiq_abort.abort`."""
        self.abort_many([message_id], abort_ttl, mode, abort_timeout, reason=reason)

    def abort_many(
        self,
        message_ids: Iterable[MessageRef],
        abort_ttl: int | None = None,
        mode: AbortMode = AbortMode.ABORT,
        abort_timeout: float = 0,
        *,
        reason: str | None = None,
        marks: dict[str, bool | int | str] | None = None,
    ) -> None:
        """See :func:`~dramatiq_abort.abort_many`.

        ``marks`` are kept with the request for a layer on top of the
        middleware (compat marks Celery's revoke with them), and read back
        in the request's parameters by ``EventBackend.records()``; workers
        ignore them.
        """
        if isinstance(message_ids, str):
            raise TypeError(f"message_ids must be an iterable of ids, not the str {message_ids!r}")
        try:
            given = list(message_ids)
        except TypeError:
            raise TypeError(
                f"message_ids must be an iterable of ids or messages, not {message_ids!r:.100}"
            ) from None
        ids = [message_id_of(m) for m in given]
        mode = check_mode(mode)
        ttl = self._ttl(abort_ttl)
        messages = [m for m in given if isinstance(m, (dramatiq.Message, MessageProxy))]
        etas = [m.options.get("eta", 0) for m in messages]
        if etas:
            ttl += max(0, int(max(etas) - time.time() * 1000))
        timeout = check_abort_timeout(abort_timeout)
        reason = check_reason(reason)
        checked_marks = check_marks(marks)
        if not ids:
            return
        self.send(events_for(ids, mode, timeout, reason, checked_marks), ttl)

    def abort_where(
        self,
        *,
        actor: str | None = None,
        queue: str | None = None,
        sent_before: datetime.datetime | float | None = None,
        mode: AbortMode = AbortMode.ABORT,
        abort_timeout: float = 0,
        abort_ttl: int | None = None,
        reason: str | None = None,
    ) -> str:
        """See :func:`~dramatiq_abort.abort_where`."""
        actor = check_name("actor", actor)
        queue = check_name("queue", queue)
        if actor is None and queue is None:
            raise ValueError(
                "abort_where needs actor or queue (or both): it would stop every message"
            )
        now = time.time()
        before = check_sent_before(sent_before, now)
        mode = check_mode(mode)
        timeout = check_abort_timeout(abort_timeout)
        ttl = self._ttl(abort_ttl)
        reason = check_reason(reason)
        if not self.backend.pushes:
            raise NotImplementedError(
                f"{type(self.backend).__name__} does not push events: workers would never learn"
                " of a rule; use a backend that pushes, such as RedisBackend"
            )
        if actor is not None and self.declared_actors and actor not in self.declared_actors:
            self.logger.warning(
                "The abort rule names actor %r, which matches no actor declared in this"
                " process: it is recorded anyway, for workers that may declare it.",
                actor,
            )
        rule_id = uuid.uuid4().hex
        event = rule_event(
            rule_id,
            actor=actor,
            queue=None if queue is None else q_name(queue),
            sent_before=int(before * 1000),
            mode=mode,
            abort_timeout=timeout,
            reason=reason,
        )
        self.send([event], ttl)
        return rule_id

    def wait_outcome(self, message_id: MessageRef, timeout: float | None = None) -> Outcome | None:
        """See :func:`~dramatiq_abort.wait_outcome`."""
        message_id = message_id_of(message_id)
        seconds = check_seconds("timeout", timeout, forever=True)
        if not self.backend.records_outcomes:
            raise NotImplementedError(
                f"{type(self.backend).__name__} does not record outcomes: nothing to wait for"
            )
        outcome = self.backend.wait_outcome(message_id, seconds)
        return None if outcome is None else Outcome(outcome)

    def outcome(self, message_id: MessageRef) -> Outcome | None:
        """What workers last reported of ``message_id`` (an id or the
        message), without waiting; always ``None`` with a backend that does
        not record outcomes."""
        message_id = message_id_of(message_id)
        return self.wait_outcome(message_id, 0) if self.backend.records_outcomes else None

    def outcome_reason(self, message_id: MessageRef) -> str | None:
        """The reason of the abort request or rule that stopped ``message_id``
        (an id or the message), recorded with its outcome; ``None`` when it
        had none, no outcome is recorded, or the backend does not record
        reasons (see ``EventBackend.records_reasons``)."""
        message_id = message_id_of(message_id)
        if not (self.backend.records_outcomes and self.backend.records_reasons):
            return None
        return self.backend.outcome_reason(message_id)

    def running_messages(
        self,
        *,
        actor: str | None = None,
        queue: str | None = None,
        sent_before: float | datetime.datetime | None = None,
        args: bool = False,
        timeout: float = LISTING_WAIT,
    ) -> Listing:
        """See :func:`~dramatiq_abort.running_messages`."""
        inquiry = listing.check_inquiry(actor, queue, sent_before, args)
        seconds = check_seconds("timeout", timeout)
        if not seconds:
            raise ValueError(f"timeout must be greater than 0 seconds, not {timeout!r}")
        backend = self.backend
        if not (backend.pushes and backend.carries_answers):
            raise NotImplementedError(
                f"{type(backend).__name__} cannot ask workers what they run: that needs a"
                " backend that pushes events and carries answers, such as RedisBackend"
            )
        return listing.ask(backend, inquiry, seconds)

    def send(self, events: list[Event], ttl: int) -> None:
        """Record ``events`` in the backend for ``ttl`` milliseconds."""
        self.backend.notify(events, ttl=ttl)
        self.sent()

    def sent(self) -> None:
        """Called once events are written: the middleware overrides it so
        that the messages running in this process see them when a send
        returns (read-your-writes)."""

    def _ttl(self, abort_ttl: object) -> int:
        """The checked ``abort_ttl`` of a request or rule; the default when ``None``."""
        if abort_ttl is None:
            return self.abort_ttl
        return check_milliseconds("abort_ttl", abort_ttl, positive=True)
