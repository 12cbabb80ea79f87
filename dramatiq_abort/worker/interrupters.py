"""How an Abort reaches a running actor: one interrupter per runtime
(a thread, an asyncio task, a gevent greenlet), chosen for each message
before its actor runs."""

from __future__ import annotations

import abc
import asyncio
import ctypes
from typing import Any

from ..dramatiq_internals import DramatiqInternals
from ..errors import Abort
from .execution import Execution, ExecutionState
from .switching import FastSwitching

__all__ = ["AsyncioInterrupter", "GeventInterrupter", "Interrupter", "ThreadInterrupter"]


class Interrupter(abc.ABC):
    """Raises :class:`Abort` in the actor of an execution."""

    def __init__(self, internals: DramatiqInternals) -> None:
        self.internals = internals

    @abc.abstractmethod
    def interrupt(self, execution: Execution) -> bool:
        """Have :class:`Abort` raised in ``execution``'s actor, unless a time
        limit or a shutdown notification was raised there first.

        Called by the watcher while the execution is RUNNING and not
        interrupted yet; its thread does not leave the actor's wrapper
        before this returns. Returns whether the Abort is on its way.
        """

    def settle(self, execution: Execution) -> None:  # noqa: B027 - optional hook
        """Called by the owning thread once an interrupted execution left
        RUNNING, inside the code that catches its Abort: let an Abort that
        is on its way land there. Nothing to do where it cannot be late."""

    def landed(self, execution: Execution) -> None:  # noqa: B027 - optional hook
        """Called by the owning thread once the Abort of an interrupted
        execution landed, or its message ended without it."""


class ThreadInterrupter(Interrupter):
    """Sets :class:`Abort` as the asynchronous exception of the thread; it
    is raised the next time the thread runs Python code, which a shorter
    switch interval hastens (see :mod:`dramatiq_abort.worker.switching`)."""

    def __init__(self, internals: DramatiqInternals, switching: FastSwitching) -> None:
        super().__init__(internals)
        self.switching = switching

    def interrupt(self, execution: Execution) -> bool:
        if not self.internals.claim_thread(execution.thread_id):
            return False
        self.switching.hold(id(execution))
        Abort.leave_for(execution.thread_id, execution.message_id, execution.reason)
        set_in = ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(execution.thread_id), ctypes.py_object(Abort)
        )
        if set_in != 1:
            Abort.withdraw(execution.thread_id)
            self.switching.release(id(execution))
        return bool(set_in == 1)

    def landed(self, execution: Execution) -> None:
        self.switching.release(id(execution))

    def settle(self, execution: Execution) -> None:
        # The Abort may not be raised yet. Clearing it with
        # PyThreadState_SetAsyncExc(id, NULL) would leave the interpreter
        # flagged as having one pending: every thread then pays for that
        # flag at each check, and on CPython 3.11 a traced thread spins
        # forever. Instead, run a few bytecodes, at which it is raised.
        for _ in range(3):
            pass


class AsyncioInterrupter(Interrupter):
    """Cancels the task running the actor's coroutine on its event loop;
    the coroutine sees the cancellation as :class:`AsyncAbort`.

    The worker thread waits for the coroutine, and it is there that
    dramatiq raises a time limit or a shutdown notification: those are
    claimed as for a thread.
    """

    def __init__(self, internals: DramatiqInternals, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(internals)
        self.loop = loop
        # Both read and written on the loop only, so never at once.
        self._task: asyncio.Task[Any] | None = None
        self._cancelled = False

    def interrupt(self, execution: Execution) -> bool:
        if not self.internals.claim_thread(execution.thread_id):
            return False
        self.loop.call_soon_threadsafe(self._cancel)
        return True

    def attach(self, execution: Execution, task: asyncio.Task[Any]) -> None:
        """Record the task running ``execution``'s coroutine; called from
        that task, on its loop."""
        self._task = task
        if execution.interrupted:
            # Interrupted before its coroutine ran.
            self._cancel()

    def _cancel(self) -> None:
        # Once, whichever of interrupt() and attach() comes first; a task
        # not attached yet is cancelled as it is.
        if self._task is not None and not self._cancelled:
            self._cancelled = True
            self._task.cancel()


class GeventInterrupter(Interrupter):
    """Throws :class:`Abort` into the greenlet processing the message, from
    gevent's hub."""

    def __init__(self, internals: DramatiqInternals, greenlet: Any) -> None:
        super().__init__(internals)
        self.greenlet = greenlet

    def interrupt(self, execution: Execution) -> bool:
        import gevent

        gevent.get_hub().loop.run_callback(self._throw, execution)
        return True

    def _throw(self, execution: Execution) -> None:
        # Runs in the hub, while every other greenlet waits: the state read
        # here is the state the greenlet resumes in.
        if execution.state is not ExecutionState.RUNNING or self.greenlet.dead:
            return
        if not self.internals.claim_greenlet(execution.thread_id, self.greenlet):
            execution.withdraw_interrupt()
            return
        self.greenlet.throw(Abort.of(execution.message_id, execution.reason))
