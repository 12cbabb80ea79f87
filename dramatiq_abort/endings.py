"""The endings of the messages an abort request reached: cancelled before
they start or stopped while they run, logged once at INFO, their result a
:class:`~dramatiq_abort.MessageAborted` failure, and their outcome recorded."""

from __future__ import annotations

import logging
import math
import threading
from typing import NoReturn

import dramatiq

from .dramatiq_internals import AnyMessage, result_options, store_no_result
from .errors import MessageAborted, aborted
from .metrics import AbortMetrics
from .outcome import Outcome
from .sending import Sender
from .worker.executions import Executions
from .worker.requests import AbortRequest, AbortRequests

__all__ = ["Endings", "own_skips"]


class _OwnSkips(logging.Filter):
    """Drops dramatiq's ``Message ... was skipped.`` warning for the
    messages this package stops: an intended abort is not a warning, and
    :class:`Endings` logs it once, at INFO.

    dramatiq logs that warning for every ``SkipMessage``, and skipping is
    the only ending that neither retries, dead-letters nor triggers the
    next message of a pipeline. The message being stopped is noted in its
    worker thread just before the skip, so other skips still warn.
    """

    def __init__(self) -> None:
        super().__init__()
        self.skipping = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        skipping = getattr(self.skipping, "message_id", None)
        if skipping is None or record.msg != "Message %s was skipped.":
            return True
        message = record.args[0] if isinstance(record.args, tuple) and record.args else None
        if getattr(message, "message_id", None) != skipping:
            return True
        self.skipping.message_id = None
        return False


#: The one filter, which each booting worker puts on dramatiq's worker threads' logger.
own_skips = _OwnSkips()


class Endings:
    """Ends the messages an abort request reached, and records how.

    :param sender: Whose backend the outcomes are recorded in, kept for
        the sender's ``abort_ttl``.
    :param executions: The messages this process runs, which a cancelled
        one leaves.
    :param requests: The requests this process's watcher recorded.
    :param logger: Where each ending is logged.
    """

    def __init__(
        self,
        sender: Sender,
        executions: Executions,
        requests: AbortRequests,
        logger: logging.Logger,
    ) -> None:
        self.sender = sender
        self.executions = executions
        self.requests = requests
        self.logger = logger
        #: The metrics workers of this process count in, once one booted with them.
        self.metrics: AbortMetrics | None = None

    def cancel(
        self, broker: dramatiq.Broker, message: AnyMessage, request: AbortRequest
    ) -> NoReturn:
        """Stop ``message``, which has begun but not started: it leaves its
        slot at once, whoever calls the hooks, and ends as cancelled."""
        self.executions.end(message)
        if request.expires_at == math.inf:
            # Kept past its TTL while the process held the message, which leaves.
            self.requests.forget_left(message)
        self.stopped(broker, message, Outcome.CANCELLED, request)

    def stopped(
        self,
        broker: dramatiq.Broker,
        message: AnyMessage,
        outcome: Outcome,
        request: AbortRequest | None,
    ) -> NoReturn:
        """End ``message`` as ``outcome`` says, because of ``request``:
        skipped, with its result (if stored) a :class:`MessageAborted`
        failure that carries the request's reason."""
        reason = None if request is None else request.reason
        ancestor = None if request is None else request.ancestor
        because = "" if ancestor is None else f" with its ancestor {ancestor!r}"
        if reason is None:
            self.logger.info("Message %r was %s%s.", message.message_id, outcome.value, because)
        else:
            # repr: a reason cannot break the one line into several.
            self.logger.info(
                "Message %r was %s%s (reason: %r).",
                message.message_id,
                outcome.value,
                because,
                reason,
            )
        own_skips.skipping.message_id = message.message_id
        error = MessageAborted(aborted(message.message_id, outcome.value, reason), reason=reason)
        results, store, ttl = result_options(broker, message)
        if store:
            try:
                results.backend.store_exception(message, error, ttl)
            except Exception as e:
                self.logger.error(
                    "Failed to store the result of aborted message %r (%s: %.200s).",
                    message.message_id,
                    type(e).__name__,
                    e,
                )
                self.logger.debug("Storing the result failed with:", exc_info=e)
            # Results stores None for skipped messages, which would hide the failure.
            store_no_result(message)
        self.record_outcome(message, outcome, request)
        raise error

    def record_outcome(
        self, message: AnyMessage, outcome: Outcome, request: AbortRequest | None
    ) -> None:
        """Count ``outcome`` of ``message`` and record it in the backend, if
        it records outcomes, for the sender's ``abort_ttl``; a failing
        backend is logged, never raised."""
        # Only messages an abort request reached get here: no cost per message.
        if self.metrics is not None:
            self.metrics.ended(message.actor_name, outcome, request)
        reason = None if request is None else request.reason
        backend = self.sender.backend
        if not backend.records_outcomes:
            return
        try:
            if backend.records_reasons:
                backend.record_outcome(
                    message.message_id, outcome.value, self.sender.abort_ttl, reason=reason
                )
            else:
                backend.record_outcome(message.message_id, outcome.value, self.sender.abort_ttl)
        except Exception as e:
            self.logger.warning(
                "Failed to record that message %r was %s (%s: %.200s).",
                message.message_id,
                outcome.value,
                type(e).__name__,
                e,
            )
            self.logger.debug("Recording the outcome failed with:", exc_info=e)
