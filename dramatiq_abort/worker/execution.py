"""One message being processed: its state, what the watcher and the
worker thread that owns it share, and the wrapper its actor runs in."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from ..errors import Abort
from ..outcome import Outcome
from .requests import AbortRequest, prevailing

if TYPE_CHECKING:
    from ..dramatiq_internals import AnyMessage
    from .interrupters import Interrupter

__all__ = [
    "FINISHED",
    "HANDOVER_POLL",
    "RUNNING",
    "STARTING",
    "AbortSignal",
    "Execution",
    "ExecutionState",
    "guarded",
]


R = TypeVar("R")


class ExecutionState(Enum):
    """Where a message is in its processing. It only moves forward."""

    #: Registered by its worker thread; the actor has not been called yet.
    #: An abort request that reaches it now cancels it when it starts.
    STARTING = "starting"
    #: The actor runs: an Abort may be raised in it.
    RUNNING = "running"
    #: Done with: nothing is raised in it any more.
    FINISHED = "finished"


#: How long a thread that finished its actor waits between two looks at
#: a watcher that is interrupting it, in seconds.
HANDOVER_POLL = 0.0001

#: Read on every message: a module name costs less than an Enum's attribute.
STARTING = ExecutionState.STARTING
RUNNING = ExecutionState.RUNNING
FINISHED = ExecutionState.FINISHED


class AbortSignal:
    """Raised once an abort is requested for a message, or set in it; its
    thread waits on it in ``dramatiq_abort.sleep``.

    Not a ``threading.Event``: that one's lock is taken and released by
    Python code, where the Abort set for the waiting thread can land and
    leave it taken, and then the watcher, raising the signal, would wait on
    it for ever. Here the signal is one raw lock, held while the signal is
    down: raising it is a single C call that never waits, whoever holds it.
    """

    __slots__ = ("_down",)

    def __init__(self) -> None:
        self._down = threading.Lock()
        self._down.acquire()

    def set(self) -> None:
        """Raise the signal; raising it again changes nothing."""
        # Not contextlib.suppress: no Python frame around the release.
        try:  # noqa: SIM105
            self._down.release()
        except RuntimeError:
            pass  # Raised already.

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the signal; whether it was raised."""
        if timeout <= 0:
            raised = self._down.acquire(blocking=False)
        else:
            raised = self._down.acquire(timeout=min(timeout, threading.TIMEOUT_MAX))
        if raised:
            # Left raised, for the next wait.
            self.set()
        return raised


class Execution:
    """One message processed by one worker thread.

    Two parties touch it: the worker thread that owns it, which moves its
    :attr:`state`, and the watcher, which sets :attr:`request` and
    interrupts it. They synchronise without a lock: see
    :class:`~dramatiq_abort.worker.executions.Executions`. Its fields are
    written only by its methods, each of which says what happened; the
    order in which a method writes one field and reads another is what
    the protocol relies on.
    """

    __slots__ = (
        "abort_event",
        "ancestors",
        "interrupted",
        "interrupter",
        "interrupting",
        "message",
        "message_id",
        "request",
        "started_at",
        "state",
        "thread_id",
        "told",
    )

    def __init__(
        self,
        message: AnyMessage,
        message_id: str,
        thread_id: int,
        interrupter: Interrupter,
        started_at: float,
    ) -> None:
        self.message = message
        self.message_id = message_id
        #: ``time.time()`` when its worker thread registered it: what a
        #: listing of the running messages says.
        self.started_at = started_at
        #: The worker thread that owns it (under gevent: its greenlet's id).
        self.thread_id = thread_id
        #: How an Abort reaches its actor: chosen for its runtime before it runs.
        self.interrupter = interrupter
        self.state = STARTING
        #: The messages whose abort reaches it as well as its own (see
        #: :mod:`dramatiq_abort.worker.lineage`), nearest first; set before it starts.
        self.ancestors: tuple[str, ...] = ()
        #: The abort request that reached it while it ran: it holds until
        #: the message ends, however short its TTL.
        self.request: AbortRequest | None = None
        #: Whether an Abort was set to be raised in it.
        self.interrupted = False
        #: True while the watcher decides whether to interrupt it and does:
        #: its thread waits for that to end before it leaves the actor's wrapper.
        self.interrupting = False
        #: Whether the actor was told of the request (by ``abort_requested()``
        #: or a cut-short ``sleep()``): it then ends as stopped, not finished.
        self.told = False
        #: Set once an abort is requested or raised, for the waits it cuts
        #: short (``dramatiq_abort.sleep``); made by the first such wait.
        self.abort_event: AbortSignal | None = None

    @property
    def reason(self) -> str | None:
        """Why the abort request that reached it was sent, if its sender said."""
        request = self.request
        return None if request is None else request.reason

    def record_ancestors(self, ancestors: tuple[str, ...]) -> None:
        """Note that the abort of each of ``ancestors`` reaches it; before it starts."""
        self.ancestors = ancestors

    def interrupt_with(self, interrupter: Interrupter) -> None:
        """Have ``interrupter`` raise its Aborts; before it starts."""
        self.interrupter = interrupter

    def finish(self) -> None:
        """Move to FINISHED without running: its message was skipped, or
        its actor's wrapper never called. Nothing can be interrupting it.
        (The wrapper, see :func:`guarded`, moves the state of a message
        that runs itself.)"""
        self.state = FINISHED

    def hand_over(self) -> None:
        """Wait until the watcher, which is interrupting it or did, is done,
        then let an Abort it set land here; called by its thread once it
        is FINISHED."""
        while self.interrupting:
            time.sleep(HANDOVER_POLL)
        self.interrupter.settle(self)

    def receive(self, request: AbortRequest) -> AbortRequest:
        """Let ``request`` reach it; the request then in force for it (see
        :func:`~dramatiq_abort.worker.requests.prevailing`). The request is
        written before the caller reads the state."""
        request = self.request = prevailing(self.request, request)
        return request

    def interrupt(self) -> bool | None:
        """Have its interrupter set an Abort in it, if it is RUNNING:
        whether one was set; ``None`` when it no longer runs (it finished
        as the request came due). Called by the watcher only."""
        self.interrupting = True
        try:
            if self.state is not RUNNING:
                return None
            # Flagged before the Abort is set: the thread may raise it at
            # once, and must then recognise it as the abort of its message.
            self.interrupted = True
            if not self.interrupter.interrupt(self):
                self.interrupted = False
        finally:
            self.interrupting = False
        return self.interrupted

    def withdraw_interrupt(self) -> None:
        """Note that the Abort set for it will not be raised after all."""
        self.interrupted = False

    def note_told(self) -> None:
        """Note that its actor was told of the abort request: the message
        then ends as stopped, not finished."""
        self.told = True

    def abort_signal(self) -> AbortSignal:
        """A signal raised once an abort is requested for it or raised in
        it; called by the thread that owns it."""
        signal = self.abort_event
        if signal is None:
            signal = self.abort_event = AbortSignal()
            # Written before the request is read; the watcher sets the
            # request, then reads the signal: one of the two raises it. A
            # request already due is left to the watcher, which raises the
            # signal once the Abort is set: a wait it cuts short must
            # raise, not return.
            request = self.request
            if (self.interrupted and not self.interrupting) or (
                request is not None and request.interrupts and request.abort_at > time.monotonic()
            ):
                signal.set()
        return signal

    def wake(self) -> None:
        """Raise its abort signal, if a wait made one."""
        signal = self.abort_event
        if signal is not None:
            signal.set()


def guarded(
    fn: Callable[..., R],
    registered: Callable[[int], Execution | None],
    ident: Callable[[], int],
    stopped: Callable[[Execution, Outcome], NoReturn],
    runner: Callable[[Execution], Callable[..., R]] | None = None,
) -> Callable[..., R]:
    """``fn`` run for the execution that ``registered`` gives for the
    calling thread's ``ident()``, as ``Executions.wrap`` describes.

    The wrapper moves the execution's state itself, where every other
    change goes through a method: a call would cost on every message.
    """

    # A plain function, and the one Python frame this package adds
    # around the actor: every message calls it.
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> R:
        """The actor's function, run so that an abort never escapes it."""
        # The worker calls it in the thread that began the message; an
        # asyncio task never does (the thread waits for the coroutine).
        execution = registered(ident())
        if execution is None or execution.state is not STARTING:
            return fn(*args, **kwargs)
        runs = fn if runner is None else runner(execution)
        result: Any = None
        stop: Outcome | None = None
        escaped: BaseException | None = None
        try:
            # Written before the request is read (see Executions).
            execution.state = RUNNING
            if execution.request is None:
                result = runs(*args, **kwargs)
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
        # else runs. An Abort delivered as fn ended may land while
        # finishing: it was meant for this message, so it stops it, and
        # finishing resumes.
        while True:
            try:
                # Written before interrupting is read (see Executions).
                execution.state = FINISHED
                if execution.interrupting or execution.interrupted:
                    execution.hand_over()
                break
            except Abort:
                stop = stop or Outcome.ABORTED
            except BaseException as e:
                escaped = escaped or e
        if execution.interrupted:
            # Its Abort landed, or never will now.
            execution.interrupter.landed(execution)
        if stop is not None:
            stopped(execution, stop)
        if escaped is not None:
            raise escaped
        return result  # type: ignore[no-any-return]

    return run
