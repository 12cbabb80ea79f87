"""What is known of a task: its records in the abort backend and its
result in the Results backend, resolved into Celery's state, info and
value. The engine behind :class:`~dramatiq_abort.compat.AbortableResult`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import dramatiq
from dramatiq.results import ResultFailure, ResultMissing, Results
from dramatiq.results.backend import ResultBackend

from ..backend import MessageRecords
from ..dramatiq_internals import delete_result, middleware_of
from ..middleware import Abortable, abortable_of
from ..outcome import Outcome
from . import records
from .exceptions import TimeoutError
from .middleware import TaskStates
from .states import ABORTED, FAILURE, PENDING, RETRY, REVOKED, SUCCESS

__all__ = ["FIRST_PAUSE", "STORE_GRACE", "Status", "TaskReader"]

#: How long a task that ended may take to have its result stored, in
#: seconds; past it, it stored none.
STORE_GRACE = 2.0
#: The first pause between two looks at a task that is not over, in
#: seconds; it doubles up to ``get()``'s ``interval``.
FIRST_PAUSE = 0.005

#: Outcomes of a task stopped before it returned.
_STOPPED = (Outcome.ABORTED.value, Outcome.CANCELLED.value)
#: Outcomes of a task that ran to its end after an abort request.
_ENDED = (Outcome.STOPPED.value, Outcome.FINISHED.value)


class Status(NamedTuple):
    """What one read says of a task."""

    state: str
    #: Whether the task is over.
    ended: bool
    #: Whether an abort (not only a cancel) was requested or delivered.
    aborted: bool
    #: Whether the task ended by itself (it returned or raised).
    returned: bool
    #: Its last record, if any.
    record: records.TaskRecord | None


class TaskReader:
    """Reads what is known of one task, on each call anew.

    :param broker: The broker the task was sent on.
    :param backend: A dramatiq Results backend to read results from;
        ``None`` for the broker's ``Results`` middleware's.
    :param message: The task's message.
    :param located: Whether ``message`` names the task's actor and queue,
        where its result is stored; else they are found on the first read
        that needs them, and ``on_located`` gets the message that names them.
    """

    def __init__(
        self,
        broker: dramatiq.Broker,
        backend: ResultBackend | None,
        message: dramatiq.Message[Any],
        located: bool,
        on_located: Callable[[dramatiq.Message[Any]], None],
    ) -> None:
        self.broker = broker
        self.backend = backend
        self.message = message
        self.located = located
        self._on_located = on_located

    @property
    def task_id(self) -> str:
        return str(self.message.message_id)

    @property
    def abortable(self) -> Abortable:
        return abortable_of(self.broker)

    def now(self) -> Status:
        """Everything one read of the abort backend says of the task."""
        return self.resolve(self.abortable.backend.records(self.task_id))

    def forget(self) -> None:
        """Drop what is kept of the task: its result, state and outcome."""
        self.abortable.backend.forget(self.task_id)
        results = self.results()
        if results is not None and self.locate(results, None):
            delete_result(results, self.message)

    def resolve(self, found: MessageRecords) -> Status:
        """What ``found``, the task's records, say of it; the Results
        backend is read only when they cannot tell."""
        record = records.decode(found.state)
        requested = (
            REVOKED
            if records.is_revoke(found.abort)
            else ABORTED
            if found.abort is not None
            else REVOKED
            if found.cancel is not None
            else None
        )
        aborted = found.abort is not None or found.outcome == Outcome.ABORTED.value
        if record is not None and record.ended:
            # A task that reported itself aborted has no result to give.
            return Status(record.state, True, aborted, record.state != ABORTED, record)
        if found.outcome in _STOPPED:
            return Status(requested or ABORTED, True, aborted, False, record)
        if found.outcome in _ENDED:
            # It ended after the request reached it, with no record of ours.
            return Status(self._stored_state() or SUCCESS, True, aborted, True, record)
        if record is None and requested is None and middleware_of(self.broker, TaskStates) is None:
            # Without TaskStates no record tells that it ended: ask Results.
            stored = self._stored_state()
            if stored is not None:
                return Status(stored, True, aborted, True, record)
        if requested is not None:
            return Status(requested, False, aborted, False, record)
        if record is not None:
            return Status(record.state, False, aborted, False, record)
        return Status(PENDING, False, aborted, False, None)

    def _stored_state(self) -> str | None:
        """``SUCCESS`` or ``FAILURE`` from the Results backend alone."""
        results = self.results()
        if results is None or not self.locate(results, None):
            return None
        try:
            results.get_result(self.message)
        except ResultMissing:
            return None
        except ResultFailure as failure:
            if failure.orig_exc_type == "MessageAborted":
                return None
            return FAILURE
        return SUCCESS

    def info(self, status: Status) -> Any:
        """Celery's ``info`` of the task in ``status``: its return value, its
        exception, or the meta it last reported."""
        record = status.record
        if status.state in (FAILURE, RETRY) and record is not None and record.state == status.state:
            return records.rebuild_exception(record.meta)
        if status.state == FAILURE:
            return self._stored_failure()
        if status.state == SUCCESS:
            return self.value(status, None)
        return None if record is None else record.meta

    def _stored_failure(self) -> Exception:
        results = self.results()
        try:
            if results is not None and self.locate(results, None):
                results.get_result(self.message)
        except ResultFailure as failure:
            return records.rebuild_exception(
                {"exc_type": failure.orig_exc_type, "exc_message": failure.orig_exc_msg}
            )
        except ResultMissing:
            pass
        return Exception(f"task {self.task_id!r} failed")

    def value(self, status: Status, deadline: float | None) -> Any:
        """The stored return value of a task that returned."""
        record = status.record
        if record is not None and record.ended and not record.stored:
            return None
        results = self.results()
        if results is None or not self.locate(results, record):
            return None
        # An outcome may be recorded a moment before the result is stored.
        # Short reads only: a blocking one could outlast the client's socket
        # timeout.
        grace = time.monotonic() + STORE_GRACE
        pause = FIRST_PAUSE
        while True:
            try:
                return results.get_result(self.message)
            except ResultMissing:
                pass
            now = time.monotonic()
            if now >= grace:
                return None
            if deadline is not None and now >= deadline:
                raise TimeoutError(
                    f"task {self.task_id!r} ended, but its result was not stored in time"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def results(self) -> ResultBackend | None:
        """The Results backend to read, ``None`` when results are off."""
        if self.backend is not None:
            return self.backend
        results = middleware_of(self.broker, Results)
        return None if results is None else results.backend

    def locate(self, results: ResultBackend, record: records.TaskRecord | None) -> bool:
        """Find the actor and queue of a result rebuilt from an id alone:
        from the task's record, else the actor under which a result is stored."""
        if self.located:
            return True
        if record is None:
            record = records.decode(self.abortable.backend.records(self.task_id).state)
        if record is not None and record.actor and record.queue is not None:
            candidates = [(record.queue, record.actor)]
        else:
            candidates = [(a.queue_name, a.actor_name) for a in self.broker.actors.values()]
        for queue_name, actor_name in candidates:
            candidate = self.message.copy(queue_name=queue_name, actor_name=actor_name)
            if record is None:
                try:
                    results.get_result(candidate)
                except ResultMissing:
                    continue
                except ResultFailure:
                    pass
            self.message = candidate
            self.located = True
            self._on_located(candidate)
            return True
        return False

    def stopped(self, limit: float | None) -> bool:
        """Whether the task, asked to abort, stopped early (``True``) or ran
        to its end; waits up to ``limit`` seconds (``None``: for ever) for a
        worker to tell, then raises ``TimeoutError``."""
        status = self.now()
        if status.ended:
            return not status.returned
        eta = self.message.options.get("eta")
        if eta is not None and eta > time.time() * 1000:
            # Due later: the request recorded now is in force when it comes,
            # so it never starts.
            return True
        outcome = self.abortable.wait_outcome(self.task_id, limit)
        if outcome is None:
            raise TimeoutError(
                f"no worker said what became of task {self.task_id!r} within {limit}s"
            )
        return outcome is not Outcome.FINISHED
