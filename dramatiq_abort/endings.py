"""The endings of the messages an abort request or rule reached: cancelled
before they start (for their own request, an ancestor's or a rule) or
stopped while they run, logged once at INFO, their result a
:class:`~dramatiq_abort.MessageAborted` failure, their outcome recorded."""

from __future__ import annotations

import functools
import inspect
import logging
import math
import threading
from typing import Any, NoReturn

import dramatiq

from .dramatiq_internals import AnyMessage, result_options, store_no_result
from .errors import MessageAborted, aborted
from .metrics import AbortMetrics
from .outcome import Outcome
from .sending import Sender
from .worker import coroutines, lineage
from .worker.execution import Execution
from .worker.executions import Executions
from .worker.requests import AbortRequest, AbortRequests, prevailing
from .worker.rules import AbortRules
from .worker.watcher import Watcher

__all__ = ["Endings", "own_skips"]

#: Set on the function that stands for an actor's own once it is wrapped,
#: so that it is wrapped once.
WRAPPED_MARK = "_dramatiq_abort_wrapped"


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
    :param rules: The rules in force, which this process's watcher recorded.
    :param logger: Where each ending is logged.
    """

    def __init__(
        self,
        sender: Sender,
        executions: Executions,
        requests: AbortRequests,
        rules: AbortRules,
        logger: logging.Logger,
    ) -> None:
        self.sender = sender
        self.executions = executions
        self.requests = requests
        self.rules = rules
        self.logger = logger
        #: The metrics workers of this process count in, once one booted with them.
        self.metrics: AbortMetrics | None = None

    def wrap(self, broker: dramatiq.Broker, actor: dramatiq.Actor[Any, Any]) -> None:
        """Wrap the function of ``actor`` (once) so that an abort delivered
        while its message runs ends it as :meth:`stopped` says."""
        fn = actor.fn
        if getattr(fn, WRAPPED_MARK, False):
            return
        # dramatiq runs an ``async def`` actor through a function that wraps it.
        wrapped = getattr(fn, "__wrapped__", None)
        async_fn = wrapped if inspect.iscoroutinefunction(wrapped) else None
        executions = self.executions
        runner = (
            None
            if async_fn is None
            else functools.partial(coroutines.runner, executions, async_fn=async_fn)
        )

        def stopped(execution: Execution, outcome: Outcome) -> NoReturn:
            self.stopped(broker, execution.message, outcome, execution.request)

        abortable_fn = executions.wrap(fn, stopped, runner)
        setattr(abortable_fn, WRAPPED_MARK, True)
        actor.fn = abortable_fn

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

    def cancel_descendant(
        self,
        broker: dramatiq.Broker,
        message: AnyMessage,
        execution: Execution,
        ancestry: object,
        watcher: Watcher | None,
    ) -> None:
        """Index ``execution`` under its ``ancestry`` (the option its message
        carries), then cancel it if an abort of one of them is in force.

        :param watcher: This process's watcher, if a worker booted one, which
            is asked for the ancestors' requests first.
        """
        try:
            ancestors = lineage.check_ancestry(ancestry)
        except ValueError as e:
            # Sent by a process without this middleware, which would have refused it.
            self.logger.warning(
                "Message %r has a bad ancestry, ignored: no abort of another message reaches it"
                " (%s).",
                message.message_id,
                e,
            )
            return
        # Indexed before the table is read, as begin() registers it.
        self.executions.descend(execution, ancestors)
        if watcher is not None:
            watcher.synchronise_ancestors(ancestors)
        found: AbortRequest | None = None
        for ancestor in ancestors:
            request = self.requests.get(ancestor)
            if request is not None:
                found = prevailing(found, request)
        if found is not None:
            self.cancel(broker, message, found.for_descendant(execution.message_id))

    def cancel_by_rule(
        self, broker: dramatiq.Broker, message: AnyMessage, inner: dramatiq.Message[Any]
    ) -> None:
        """Cancel ``message`` (whose plain message is ``inner``) if a rule in
        force stops it. A method of its own: the lines it holds would cost
        every message even unrun."""
        rule = self.rules.match(inner)
        if rule is not None:
            self.cancel(broker, message, rule.request_for(inner.message_id))

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
