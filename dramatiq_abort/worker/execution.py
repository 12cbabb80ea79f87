"""One message being processed: its state, and what the watcher and the
worker thread that owns it share."""

from __future__ import annotations

import threading
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..dramatiq_internals import AnyMessage
    from .interrupters import Interrupter
    from .requests import AbortRequest


class ExecutionState(Enum):
    """Where a message is in its processing. It only moves forward."""

    #: Registered by its worker thread; the actor has not been called yet.
    #: An abort request that reaches it now cancels it when it starts.
    STARTING = "starting"
    #: The actor runs: an Abort may be raised in it.
    RUNNING = "running"
    #: Done with: nothing is raised in it any more.
    FINISHED = "finished"


#: Read on every message: a module name costs less than an Enum's attribute.
STARTING = ExecutionState.STARTING


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
    :class:`~dramatiq_abort.worker.executions.Executions`.
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
