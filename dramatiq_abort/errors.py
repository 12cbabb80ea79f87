"""The exceptions an abort raises."""

from __future__ import annotations

import asyncio
import threading

from dramatiq.middleware import MiddlewareError, SkipMessage
from dramatiq.middleware.threading import Interrupt

__all__ = [
    "Abort",
    "ActorOptionError",
    "AsyncAbort",
    "MessageAborted",
    "MessageOptionError",
    "aborted",
]


class Abort(Interrupt):
    """Raised in the thread running a message when that message is aborted.

    Like dramatiq's ``TimeLimitExceeded`` it derives from ``BaseException``,
    so ``except Exception`` in an actor does not swallow it. An actor may
    catch it to clean up; if it lets it escape, the message ends as aborted:
    it is acknowledged, never retried, and its result (with the ``Results``
    middleware) is a :class:`MessageAborted` failure.

    Its :attr:`reason` is the one given to ``abort(..., reason=...)``.
    """

    #: Why the message was aborted, as its sender said; ``None`` if it did not.
    reason: str | None

    def __init__(self, *args: object, reason: str | None = None) -> None:
        if not args:
            # Raised in a thread by PyThreadState_SetAsyncExc, which takes a
            # class and creates the exception there, with no argument: the
            # words that go with it were left for that thread.
            args, reason = _pending.pop(threading.get_ident(), ((), reason))
        super().__init__(*args)
        self.reason = reason

    @classmethod
    def of(cls, message_id: str, reason: str | None) -> Abort:
        """The exception that aborts the message ``message_id``."""
        return cls(aborted(message_id, "aborted", reason), reason=reason)

    @staticmethod
    def leave_for(thread_id: int, message_id: str, reason: str | None) -> None:
        """Leave the words of the Abort about to be raised asynchronously
        in ``thread_id``, which creates it with no argument."""
        _pending[thread_id] = ((aborted(message_id, "aborted", reason),), reason)

    @staticmethod
    def withdraw(thread_id: int) -> None:
        """Drop what :meth:`leave_for` left, when no Abort is raised after all."""
        _pending.pop(thread_id, None)


#: What :meth:`Abort.leave_for` left, by thread id: the arguments and the reason.
_pending: dict[int, tuple[tuple[object, ...], str | None]] = {}


def aborted(message_id: str, ending: str, reason: str | None) -> str:
    """The text of an exception that ends the message ``message_id`` as
    ``ending`` (an :class:`~dramatiq_abort.Outcome` value), for ``reason``."""
    text = f"message {message_id!r} was {ending}"
    return text if reason is None else f"{text}: {reason}"


class AsyncAbort(Abort, asyncio.CancelledError):
    """The :class:`Abort` raised inside the coroutine of an async actor.

    It is also a ``CancelledError``, so that asyncio's own code (locks,
    queues, timeouts) cleans up as it does for any cancellation.
    """


class MessageAborted(SkipMessage):
    """How an aborted or cancelled message ends: skipped, so that it is
    neither retried nor dead-lettered.

    With the ``Results`` middleware, ``message.get_result()`` raises
    ``ResultFailure`` whose ``orig_exc_type`` is ``"MessageAborted"``, and
    whose text ends with the reason given to ``abort(..., reason=...)``.
    """

    #: Why the message was stopped, as its sender said; ``None`` if it did not.
    reason: str | None

    def __init__(self, *args: object, reason: str | None = None) -> None:
        super().__init__(*args)
        self.reason = reason


class ActorOptionError(MiddlewareError, ValueError):
    """An actor was declared with an option its class cannot honour."""


class MessageOptionError(MiddlewareError, TypeError):
    """A message was sent with an option of the wrong type: it is not enqueued."""
