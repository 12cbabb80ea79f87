"""TaskStates: the middleware behind Celery's task options (``bind``,
``track_started``) and task states (``update_state()``, ``result.state``)."""

from __future__ import annotations

import functools
import inspect
import os
import socket
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import AgeLimit, Middleware

from ..dramatiq_internals import middleware_of, result_options, store_no_result
from ..errors import ActorOptionError
from ..middleware import abortable_of
from . import records, states
from .states import ABORTED, FAILURE, RETRY, STARTED, SUCCESS

__all__ = ["ENDING_STATES", "HOSTNAME", "TaskStates", "task_states_of"]

#: This host's name, for the ``STARTED`` record and ``self.request``.
HOSTNAME = socket.gethostname()

#: States that, reported by a task, say that it is over.
ENDING_STATES = states.READY_STATES | {ABORTED}


class _Running:
    """What a task running in this process reported of itself."""

    __slots__ = ("ignored", "meta", "state")

    def __init__(self) -> None:
        self.state: str | None = None
        self.meta: Any = None
        self.ignored = False


class TaskStates(Middleware):
    """Keeps each task's Celery state in the abort backend, beside its abort
    requests, so that ``result.state`` is one read of one store.

    Add it after ``Results`` and ``Abortable``, in the module that producers
    and workers both import::

        broker.add_middleware(Results(backend=...))
        broker.add_middleware(Abortable(backend=...))
        broker.add_middleware(TaskStates())

    It adds the actor options ``bind`` (for
    :class:`~dramatiq_abort.compat.AbortableActor`) and ``track_started``.

    What it writes, and when:

    - ``update_state()``: one write per call;
    - ``track_started=True``: one write when the task starts;
    - when the task ends: one write, for tasks that wrote one of the above
      or whose result is stored (``store_results=True``). Other tasks cost
      nothing.

    Records expire with the result (``result_ttl``), and never sooner than
    abort requests (``abort_ttl``).
    """

    def __init__(self) -> None:
        #: The message this thread (or task) runs, for ``self.request``.
        self.current: ContextVar[MessageProxy | None] = ContextVar(
            "dramatiq_abort_compat_message", default=None
        )
        self._running: dict[str, _Running] = {}
        #: Actors with ``track_started`` whose ``STARTED`` is recorded as
        #: their message starts, not once it runs (``async def`` actors).
        self._started_early: set[str] = set()
        #: The final records of messages processed, until they are acknowledged.
        self._ending: dict[str, records.TaskRecord] = {}

    @property
    def actor_options(self) -> set[str]:
        return {"bind", "track_started"}

    def before_declare_actor(
        self, broker: dramatiq.Broker, actor: dramatiq.Actor[Any, Any]
    ) -> None:
        for option in ("bind", "track_started"):
            value = actor.options.get(option, False)
            if not isinstance(value, bool):
                raise ActorOptionError(
                    f"actor {actor.actor_name!r}: {option} must be True or False, not {value!r}"
                )
        if actor.options.get("bind") and not getattr(actor, "binds_self", False):
            raise ActorOptionError(
                f"actor {actor.actor_name!r} sets bind=True, but {type(actor).__name__} does not"
                " pass itself to its function: declare it with actor_class=AbortableTask"
            )
        if actor.options.get("track_started"):
            if inspect.iscoroutinefunction(getattr(actor.fn, "__wrapped__", None)):
                # Abortable runs the coroutine itself: a wrapper here would hide it.
                self._started_early.add(actor.actor_name)
            else:
                # Wrapped before Abortable wraps the actor (after it is
                # declared), so STARTED is recorded once the message runs.
                # An abort sent on seeing STARTED then reaches the running
                # task, whose is_aborted() turns true, as in Celery, instead
                # of cancelling a message that has not started.
                actor.fn = self._recording_started(broker, actor.actor_name, actor.fn)

    def _recording_started(
        self, broker: dramatiq.Broker, actor_name: str, fn: Callable[..., Any]
    ) -> Callable[..., Any]:
        current = self.current

        @functools.wraps(fn)
        def started_fn(*args: Any, **kwargs: Any) -> Any:
            message = current.get()
            if message is not None and message.actor_name == actor_name:
                self._report_started(broker, message)
            return fn(*args, **kwargs)

        return started_fn

    def _report_started(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        meta = {"pid": os.getpid(), "hostname": HOSTNAME}
        self.report(broker, message.message_id, STARTED, meta, message=message)

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.current.set(message)
        if message.actor_name in self._started_early:
            self._report_started(broker, message)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any | None = None,
        exception: BaseException | None = None,
    ) -> None:
        self.current.set(None)
        running = self._running.pop(message.message_id, None)
        _, stored, _ = result_options(broker, message)
        if running is not None and running.ignored:
            if running.state in ENDING_STATES:
                # Celery's idiom: report the end yourself, then raise Ignore.
                final = records.TaskRecord(running.state, running.meta, ended=True)
                self._write(broker, message, final)
            return
        if running is None and not stored:
            return
        if exception is None:
            if running is not None and running.state == ABORTED:
                # The task marked itself aborted and returned: it stays so.
                final = records.TaskRecord(ABORTED, running.meta, ended=True)
            else:
                final = records.TaskRecord(SUCCESS, ended=True, stored=stored)
        else:
            # A failure, or a retry: the ack or nack that follows tells.
            final = records.TaskRecord(
                FAILURE,
                records.failure_meta(exception),
                ended=True,
                traceback=records.format_traceback(exception),
            )
        # Written once the message is acknowledged: after-hooks run in
        # reverse order, so Retries and Results have not run yet.
        self._ending[message.message_id] = final

    def after_ack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        final = self._ending.pop(message.message_id, None)
        if final is not None:
            if final.state == FAILURE:
                # Acknowledged after a failure: Retries queued it again.
                final = final._replace(state=RETRY, ended=False)
            self._write(broker, message, final)

    def after_nack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        final = self._ending.pop(message.message_id, None)
        if final is not None:
            self._write(broker, message, final)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.current.set(None)
        self._running.pop(message.message_id, None)
        age_limit = middleware_of(broker, AgeLimit)
        if message.failed and age_limit is not None and "max_age" in message.options:
            # AgeLimit skipped it: Celery calls an expired task revoked.
            self._write(
                broker,
                message,
                records.TaskRecord(states.REVOKED, ended=True),
            )

    def report(
        self,
        broker: dramatiq.Broker,
        task_id: str,
        state: str,
        meta: Any,
        *,
        message: MessageProxy | None = None,
    ) -> None:
        """Record that ``task_id`` is in ``state`` with ``meta``: what
        ``update_state()`` does. ``message`` is the task's message when it
        runs in this thread."""
        text = records.encode(records.TaskRecord(state, meta))
        backend = self._backend(broker)
        running = self._running.get(task_id)
        if running is None and message is not None:
            running = self._running[task_id] = _Running()
        backend.record_state(task_id, text, self._ttl(broker, message))
        if running is not None:
            running.state, running.meta = state, meta

    def ignore(self, message: MessageProxy) -> None:
        """End ``message`` without a result or a new state (Celery's ``Ignore``)."""
        self._running.setdefault(message.message_id, _Running()).ignored = True
        store_no_result(message)

    def _write(
        self, broker: dramatiq.Broker, message: MessageProxy, record: records.TaskRecord
    ) -> None:
        # A record that ends the task is stamped when it is written.
        record = record._replace(
            actor=message.actor_name,
            queue=message.queue_name,
            date_done=time.time() if record.ended else None,
        )
        self._backend(broker).record_state(
            message.message_id, records.encode(record), self._ttl(broker, message)
        )

    def _backend(self, broker: dramatiq.Broker) -> Any:
        backend = abortable_of(broker).backend
        if not backend.stores_states:
            raise RuntimeError(
                f"{type(backend).__name__} does not store task states: use a backend"
                " with stores_states (RedisBackend, StubBackend)"
            )
        return backend

    def _ttl(self, broker: dramatiq.Broker, message: MessageProxy | None) -> int:
        _, _, result_ttl = result_options(broker, message)
        return max(result_ttl, abortable_of(broker).abort_ttl)


def task_states_of(broker: dramatiq.Broker) -> TaskStates:
    """The :class:`TaskStates` of ``broker``; ``RuntimeError`` if it has none."""
    middleware = middleware_of(broker, TaskStates)
    if middleware is None:
        raise RuntimeError(
            f"The broker {broker!r} has no TaskStates middleware: add it after Abortable,"
            " broker.add_middleware(TaskStates()) (from compat)"
        )
    return middleware
