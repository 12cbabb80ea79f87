"""The exceptions an abort raises."""

from __future__ import annotations

import asyncio

from dramatiq.middleware import MiddlewareError, SkipMessage
from dramatiq.middleware.threading import Interrupt


class Abort(Interrupt):
    """Raised in the thread running a message when that message is aborted.

    Like dramatiq's ``TimeLimitExceeded`` it derives from ``BaseException``,
    so ``except Exception`` in an actor does not swallow it. An actor may
    catch it to clean up; if it lets it escape, the message ends as aborted:
    it is acknowledged, never retried, and its result (with the ``Results``
    middleware) is a :class:`MessageAborted` failure.
    """


class AsyncAbort(Abort, asyncio.CancelledError):
    """The :class:`Abort` raised inside the coroutine of an async actor.

    It is also a ``CancelledError``, so that asyncio's own code (locks,
    queues, timeouts) cleans up as it does for any cancellation.
    """


class MessageAborted(SkipMessage):
    """How an aborted or cancelled message ends: skipped, so that it is
    neither retried nor dead-lettered.

    With the ``Results`` middleware, ``message.get_result()`` raises
    ``ResultFailure`` whose ``orig_exc_type`` is ``"MessageAborted"``.
    """


class ActorOptionError(MiddlewareError, ValueError):
    """An actor was declared with an option its class cannot honour."""


class MessageOptionError(MiddlewareError, TypeError):
    """A message was sent with an option of the wrong type: it is not enqueued."""
