"""Delivering an abort: raising :class:`Abort` in the thread that runs the
aborted message, and nowhere else."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import math
import threading
from contextvars import ContextVar
from enum import Enum
from typing import Any, Callable, TypeVar

from dramatiq.broker import MessageProxy
from dramatiq.middleware.threading import is_gevent_active

from .errors import Abort
from .requests import AbortRequest, AbortRequests

R = TypeVar("R")


class Outcome(Enum):
    """What became of a message that an abort request reached."""

    #: The request was in force before the actor started: it never ran.
    CANCELLED = "cancelled"
    #: :class:`Abort` was raised while the actor ran and ended it.
    ABORTED = "aborted"
    #: The actor ended by itself after it was told of the request
    #: (``abort_requested()`` answered it): it stopped cooperatively.
    STOPPED = "stopped"
    #: The actor ended by itself, never told of the request.
    FINISHED = "finished"


class Execution:
    """One message being processed by one worker thread."""

    __slots__ = (
        "greenlet",
        "interrupted",
        "loop",
        "message",
        "message_id",
        "noticed",
        "request",
        "state",
        "task",
        "thread_id",
        "waker",
    )

    STARTING = 0
    RUNNING = 1
    FINISHED = 2

    def __init__(self, message: MessageProxy, thread_id: int) -> None:
        self.message = message
        self.message_id: str = message.message_id
        self.thread_id = thread_id
        self.state = Execution.STARTING
        #: The abort request that reached it while it ran: it holds until
        #: the message ends, however short its TTL.
        self.request: AbortRequest | None = None
        #: Whether an Abort was set to be raised in the thread.
        self.interrupted = False
        #: Whether the actor was told of the request by ``abort_requested()``.
        self.noticed = False
        #: Set when an abort is requested or raised, for waits that it cuts
        #: short; made by the first such wait.
        self.waker: threading.Event | None = None
        #: For an async actor: the event loop running its coroutine, and the
        #: coroutine's task once it runs. An abort cancels the task there
        #: instead of raising in the thread.
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[Any] | None = None
        #: Under gevent: the greenlet processing the message.
        self.greenlet: Any = None


def _set_async_exc(thread_id: int, exception: type[BaseException]) -> int:
    return int(
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread_id), ctypes.py_object(exception)
        )
    )


def _raise_pending_async_exc() -> None:
    """Run a few bytecodes at which the interpreter raises an exception
    set for this thread by ``PyThreadState_SetAsyncExc``, if one is."""
    for _ in range(3):
        pass


def _throw_into_greenlet(execution: Execution) -> None:
    # Runs in gevent's hub, while every other greenlet waits: the state
    # read here is the state the greenlet resumes in.
    if execution.state == Execution.RUNNING and not execution.greenlet.dead:
        execution.greenlet.throw(Abort(f"message {execution.message_id!r} was aborted"))


class Executions:
    """The abortable messages this worker process is running.

    An Abort can only be set while the execution is RUNNING, and moving
    it out of RUNNING clears one that has not been raised yet. Both happen
    under one lock, so an Abort never reaches a thread once it is done
    with the message it was meant for.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._lock = threading.Lock()
        self._by_message: dict[str, Execution] = {}
        # Per thread, and per asyncio task or greenlet where the worker
        # runs the actor there.
        self._current: ContextVar[Execution | None] = ContextVar("dramatiq_abort_execution")
        self._gevent = is_gevent_active()
        #: The deadline keeper of dramatiq's TimeLimit middleware, and the
        #: notifier of its ShutdownNotifications, if any: an abort and a time
        #: limit or a shutdown must not both raise in one message.
        self.time_limits: Any = None
        self.shutdown_notices: Any = None
        #: Set once the worker shuts down.
        self.stopping = False

    def running_ids(self) -> list[str]:
        """The ids of the messages that are being processed."""
        return list(self._by_message)

    def current(self) -> Execution | None:
        """The execution of the calling thread (or task), if it is processing
        an abortable message."""
        return self._current.get(None)

    def begin(self, message: MessageProxy) -> Execution:
        """Register the calling thread as processing ``message``."""
        execution = Execution(message, threading.get_ident())
        if self._gevent:
            import gevent

            execution.greenlet = gevent.getcurrent()
        with self._lock:
            self._by_message[execution.message_id] = execution
        self._current.set(execution)
        return execution

    def end(self, execution: Execution) -> None:
        """Forget ``execution``; called once the message is done with."""
        with self._lock:
            execution.state = Execution.FINISHED
            if self._by_message.get(execution.message_id) is execution:
                del self._by_message[execution.message_id]
        if self.current() is execution:
            self._current.set(None)

    def run(
        self,
        execution: Execution,
        requests: AbortRequests,
        fn: Callable[..., R],
        args: Any,
        kwargs: Any,
    ) -> tuple[R | None, Outcome | None]:
        """Call ``fn`` for ``execution`` unless an abort request is in force.

        Returns the result and ``None``, or ``None`` and how it was stopped.
        Every Abort delivered for the execution is caught here: none can
        escape into the code that runs after the actor.
        """
        result: R | None = None
        stop: Outcome | None = None
        escaped: BaseException | None = None
        try:
            if self._start(execution, requests):
                result = fn(*args, **kwargs)
            else:
                stop = Outcome.CANCELLED
        except Abort as e:
            if execution.interrupted:
                stop = Outcome.ABORTED
            else:
                escaped = e
        except BaseException as e:
            escaped = e
        # Whatever ended fn, the execution leaves RUNNING before anything
        # else runs. An Abort delivered as fn ended may land while finishing:
        # it was meant for this message, so it stops it, and finishing resumes.
        while execution.state != Execution.FINISHED:
            try:
                self._finish(execution)
            except Abort:
                stop = Outcome.ABORTED
            except BaseException as e:
                escaped = escaped or e
        if escaped is not None and stop is None:
            raise escaped
        return result, stop

    def deliver(self, request: AbortRequest, now: float) -> bool:
        """Apply ``request`` to its message if it runs here, ``now`` being
        ``time.monotonic()``: raise :class:`Abort` in its thread once the
        grace is over.

        Returns whether the message still has to be interrupted later,
        when ``request.abort_at`` comes.
        """
        with self._lock:
            execution = self._by_message.get(request.message_id)
            if execution is None or execution.state == Execution.FINISHED:
                return False
            # A message still STARTING finds the request when it starts.
            execution.request = request
            if not request.interrupts:
                return False
            running = execution.state == Execution.RUNNING
            if running and request.abort_at <= now:
                # Its waker is set once the Abort is: a wait it cuts short
                # must raise, not return.
                self._interrupt(execution)
                return False
            if execution.waker is not None:
                execution.waker.set()
            # An endless grace never comes due: it must not be scheduled.
            return running and request.abort_at != math.inf

    def deliver_due(self, message_id: str, now: float) -> None:
        """Interrupt ``message_id`` if the grace of its request is over."""
        with self._lock:
            execution = self._by_message.get(message_id)
            request = execution.request if execution is not None else None
            if execution is not None and request is not None and request.abort_at <= now:
                self._interrupt(execution)

    def _interrupt(self, execution: Execution) -> bool:
        # Called with the lock held: the execution cannot finish meanwhile.
        if execution.state != Execution.RUNNING or execution.interrupted:
            return False
        # Flagged before it is set: the thread may raise it at once, and
        # must then recognise it as the abort of its message.
        execution.interrupted = True
        if execution.loop is not None:
            # The task is cancelled once it is attached, if it is not yet.
            if execution.task is not None:
                execution.loop.call_soon_threadsafe(execution.task.cancel)
        elif execution.greenlet is not None:
            import gevent

            gevent.get_hub().loop.run_callback(_throw_into_greenlet, execution)
        elif not (self._claim_from_shutdown(execution) and self._claim_from_time_limit(execution)):
            execution.interrupted = False
            self.logger.info(
                "Not aborting message %r: its time limit or the shutdown interrupted it first.",
                execution.message_id,
            )
            return False
        elif _set_async_exc(execution.thread_id, Abort) != 1:
            execution.interrupted = False
            self.logger.error(
                "Could not abort message %r: no thread %d to raise Abort in.",
                execution.message_id,
                execution.thread_id,
            )
            return False
        if execution.waker is not None:
            execution.waker.set()
        # DEBUG: the message's end is logged once, at INFO, by the middleware.
        self.logger.debug(
            "Aborting message %r in thread %d.", execution.message_id, execution.thread_id
        )
        return True

    def _claim_from_shutdown(self, execution: Execution) -> bool:
        """Take the thread of ``execution`` off the shutdown notifications,
        so that only the Abort is raised; ``False`` when the worker is
        shutting down and notified it already."""
        notices = getattr(self.shutdown_notices, "notifications", None)
        if not isinstance(notices, set):
            return True
        if self.stopping and execution.thread_id in notices:
            return False
        notices.discard(execution.thread_id)
        return True

    def _claim_from_time_limit(self, execution: Execution) -> bool:
        """Disarm the time limit of ``execution``'s thread, so that only the
        Abort is raised; ``False`` when the time limit has fired already."""
        manager = self.time_limits
        deadlines = getattr(manager, "deadlines", None)
        if not isinstance(deadlines, dict):
            return True
        with manager.mu:
            if execution.thread_id in deadlines:
                if deadlines[execution.thread_id] is None:
                    return False
                deadlines[execution.thread_id] = None
        return True

    def attach_task(self, execution: Execution, task: asyncio.Task[Any]) -> None:
        """Record the task running the coroutine of ``execution``; called
        from that task, on its loop."""
        with self._lock:
            execution.task = task
            if execution.interrupted:
                task.cancel()
        self._current.set(execution)

    def waker(self, execution: Execution) -> threading.Event:
        """An event set once an abort is requested for ``execution`` or raised in it."""
        with self._lock:
            if execution.waker is None:
                execution.waker = threading.Event()
                request = execution.request
                if execution.interrupted or (request is not None and request.interrupts):
                    execution.waker.set()
            return execution.waker

    def _start(self, execution: Execution, requests: AbortRequests) -> bool:
        with self._lock:
            if requests.get(execution.message_id) is not None:
                execution.state = Execution.FINISHED
                return False
            execution.state = Execution.RUNNING
            return True

    def _finish(self, execution: Execution) -> None:
        with self._lock:
            pending = (
                execution.interrupted
                and execution.loop is None
                and execution.greenlet is None
                and execution.state == Execution.RUNNING
            )
            execution.state = Execution.FINISHED
        if pending:
            # The Abort may not be raised yet. Clearing it with
            # PyThreadState_SetAsyncExc(id, NULL) would leave the
            # interpreter flagged as having one pending: every thread then
            # pays for that flag at each check, and on CPython 3.11 a traced
            # thread spins forever. Instead, let it be raised now, in this
            # thread, which is where run() expects it.
            _raise_pending_async_exc()
