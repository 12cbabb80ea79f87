"""Delivering an abort: the messages this process runs, and the protocol
by which an Abort reaches the one it was meant for, and nothing else."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any, NoReturn, TypeVar

from dramatiq.middleware.threading import is_gevent_active

from ..dramatiq_internals import AnyMessage, DramatiqInternals
from ..outcome import Outcome
from .execution import FINISHED, RUNNING, Execution, guarded
from .families import Families
from .interrupters import GeventInterrupter, Interrupter, ThreadInterrupter
from .requests import AbortRequest
from .switching import FastSwitching

__all__ = ["Executions"]

R = TypeVar("R")


class Executions:
    """The abortable messages this worker process runs, and how an abort
    reaches them.

    Each worker thread registers the message it processes in a slot of
    its own, so that threads share nothing on their way through a message.
    The watcher finds messages by scanning the slots, and the descendants
    of a message in :attr:`families`, which only the messages that carry
    an ancestry join.

    No lock is taken on the way through a message. The watcher and the
    thread that owns an execution each write their own field, then read
    the other's; under the GIL one of the two reads sees the other's write
    (a CPython without a GIL would need a lock here):

    - A request is never lost. The watcher records it in the table of
      requests, then scans the slots, then sets ``execution.request`` and
      reads ``execution.state``. The thread fills its slot, then reads the
      table (before any later middleware runs), then sets RUNNING and
      reads ``execution.request``. Either the thread finds the request in
      the table, or the watcher's scan finds the slot; then either the
      thread finds ``execution.request`` (and cancels the message), or
      the watcher finds the execution RUNNING (and interrupts it). A
      descendant joins the index by ancestor, then reads the table for its
      ancestors, and the watcher looks the index up after it recorded a
      request: the same argument holds for the requests of its ancestors.
    - An Abort never outlives its message. The watcher sets
      ``execution.interrupting``, then reads the state, interrupts only
      while it is RUNNING, then clears ``interrupting``. The thread sets
      FINISHED, then waits while ``interrupting`` is set, then lets an
      Abort that was set land where the wrapper (see :meth:`wrap`) catches it.
    - A wait on ``execution.abort_event`` is woken: see
      :meth:`Execution.abort_signal`.
    """

    def __init__(self, logger: logging.Logger, internals: DramatiqInternals) -> None:
        self.logger = logger
        self.internals = internals
        #: Slots by thread (under gevent: greenlet) id: only the thread that
        #: owns a slot writes it.
        self._slots: dict[int, Execution | None] = {}
        #: The id of the calling thread, which keys its slot; under gevent,
        #: of its greenlet (gevent patches it before a worker makes its
        #: middleware, as it does for ``is_gevent_active``).
        self.ident: Callable[[], int] = threading.get_ident
        #: The execution in the slot of a thread id, if any: a C call with
        #: no Python frame, for the actor's wrapper that every message goes
        #: through. :meth:`current` also finds an asyncio task's.
        self.registered: Callable[[int], Execution | None] = self._slots.get
        # The execution an asyncio task runs (see adopt): the event loop's
        # thread has no slot.
        self._adopted: ContextVar[Execution | None] = ContextVar("dramatiq_abort_execution")
        #: Under gevent, the function giving the greenlet that runs a message.
        self._greenlet: Callable[[], Any] | None = None
        if is_gevent_active():
            import gevent

            self._greenlet = gevent.getcurrent
        #: Shortens the switch interval while Aborts are on their way to threads.
        self.switching = FastSwitching()
        #: Threads share one interrupter: it keeps nothing per message.
        self._thread_interrupter = ThreadInterrupter(internals, self.switching)
        #: The executions registered with ancestors, by ancestor.
        self.families = Families(self.registered)

    def running(self) -> list[Execution]:
        """The executions registered now, in a snapshot."""
        # list() of a dict's values runs in C, under the GIL: no slot
        # changes while it is copied.
        return [execution for execution in list(self._slots.values()) if execution is not None]

    def running_ids(self) -> list[str]:
        """The ids of the messages that are being processed."""
        return [execution.message_id for execution in self.running()]

    def find(self, message_ids: Iterable[str]) -> dict[str, list[Execution]]:
        """The executions of ``message_ids`` running now (a message
        delivered twice may run twice)."""
        wanted = set(message_ids)
        found: dict[str, list[Execution]] = {}
        for execution in self.running():
            if execution.message_id in wanted:
                found.setdefault(execution.message_id, []).append(execution)
        return found

    def descend(self, execution: Execution, ancestors: tuple[str, ...]) -> None:
        """Index ``execution``, which the calling thread began, under each
        of ``ancestors``. As with :meth:`begin`, the caller then reads the
        table of requests for them (see the class's docstring)."""
        execution.record_ancestors(ancestors)
        self.families.join(execution)

    def current(self) -> Execution | None:
        """The execution of the calling thread (or asyncio task), if it is
        processing an abortable message."""
        return self.registered(self.ident()) or self.adopted()

    def adopted(self) -> Execution | None:
        """The execution the calling asyncio task runs, if any (see :meth:`adopt`)."""
        return self._adopted.get(None)

    def adopt(self, execution: Execution) -> None:
        """Make ``execution`` the current one of the calling asyncio task,
        which runs its actor's coroutine."""
        self._adopted.set(execution)

    def begin(self, message: AnyMessage, message_id: str) -> Execution:
        """Register the calling thread as processing ``message``. The caller
        then reads the table of requests, and cancels ``message`` if one is
        in force, before any later middleware runs (see the class's docstring)."""
        thread_id = self.ident()
        interrupter: Interrupter = self._thread_interrupter
        if self._greenlet is not None:
            interrupter = GeventInterrupter(self.internals, self._greenlet())
        execution = self._slots[thread_id] = Execution(
            message, message_id, thread_id, interrupter, time.time()
        )
        return execution

    def end(self, message: AnyMessage) -> Execution | None:
        """Forget the calling thread's execution of ``message``, once the
        message is done with (run or skipped), and return it; ``None`` if
        the thread did not register ``message``."""
        thread_id = self.ident()
        execution = self._slots.get(thread_id)
        if execution is None or (
            execution.message is not message and execution.message_id != message.message_id
        ):
            return None
        if execution.state is not FINISHED:
            # Skipped: it never ran, nothing can be interrupting it.
            execution.finish()
        self._slots[thread_id] = None
        if execution.ancestors:
            self.families.leave(execution)
        return execution

    def wrap(
        self,
        fn: Callable[..., R],
        stopped: Callable[[Execution, Outcome], NoReturn],
        runner: Callable[[Execution], Callable[..., R]] | None = None,
    ) -> Callable[..., R]:
        """``fn`` as the actor of the messages this process begins.

        Called for the calling thread's execution, the wrapper calls ``fn``
        (or, for an async actor, what ``runner`` makes for the execution)
        unless an abort request reached the execution since it began (one
        in force then was found by :meth:`begin`'s caller); when the
        message is stopped, it calls ``stopped``, which raises. Every Abort
        delivered for the execution is caught in it: none can escape into
        the code that runs after the actor. Called outside a worker, or by
        an actor running another one, it is ``fn``.
        """
        return guarded(fn, self.registered, self.ident, stopped, runner)

    def deliver(self, execution: Execution, request: AbortRequest, now: float) -> bool:
        """Apply ``request`` to ``execution``, ``now`` being
        ``time.monotonic()``: interrupt it once the grace is over.

        Called by the watcher, which recorded ``request`` in the table of
        requests before it found ``execution``. Returns whether it still
        has to be interrupted later, when ``request.abort_at`` comes.
        """
        request = execution.receive(request)
        state = execution.state
        if state is FINISHED or not request.interrupts:
            return False
        running = state is RUNNING
        if running and request.abort_at <= now:
            self._interrupt(execution)
            return False
        # A message still STARTING finds the request when it starts.
        execution.wake()
        # An endless grace never comes due: it must not be scheduled.
        return running and request.abort_at != math.inf

    def deliver_due(self, message_id: str, now: float) -> None:
        """Interrupt ``message_id`` if the grace of its request is over."""
        for execution in self.find([message_id]).get(message_id, []):
            request = execution.request
            if request is not None and request.abort_at <= now:
                self._interrupt(execution)

    def _interrupt(self, execution: Execution) -> None:
        # Only the watcher interrupts: no two calls overlap.
        if execution.interrupted:
            return
        interrupted = execution.interrupt()
        if interrupted is None:
            return  # It finished as the request came due: nothing to say.
        if not interrupted:
            self.logger.info(
                "Not aborting message %r: its time limit or the shutdown interrupted it"
                " first, or its thread is gone.",
                execution.message_id,
            )
            return
        execution.wake()
        # DEBUG: the message's end is logged once, at INFO, by the middleware.
        self.logger.debug(
            "Aborting message %r in thread %d.", execution.message_id, execution.thread_id
        )
