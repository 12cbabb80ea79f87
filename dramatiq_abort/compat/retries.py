"""Celery's retries on dramatiq's ``Retries`` middleware: ``self.retry()``
in a task, and the failures a task's options retry by themselves."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Retries

from ..checks import check_seconds
from ..dramatiq_internals import middleware_of
from .exceptions import MaxRetriesExceededError, Retry
from .messages import delay_seconds
from .options import RETRY_KWARGS

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_RETRY_DELAY",
    "check_retry_kwargs",
    "only_asked_retries",
    "retry",
]

#: Celery's defaults for ``self.retry()``: how many times, and how many
#: seconds apart, unless the task or the call says otherwise.
DEFAULT_MAX_RETRIES = 3
DEFAULT_RETRY_DELAY = 180.0


def retry(
    actor: dramatiq.Actor[..., Any],
    message: MessageProxy | None,
    default_limit: int | None,
    default_delay: float,
    args: Any = None,
    kwargs: Any = None,
    exc: BaseException | None = None,
    throw: bool = True,
    eta: datetime.datetime | None = None,
    countdown: float | None = None,
    max_retries: int | None = None,
    **options: Any,
) -> Retry:
    """Celery's ``self.retry()`` of ``message``, a message of ``actor``: the
    :class:`~dramatiq_abort.compat.exceptions.Retry` to raise, raised.
    ``default_limit`` and ``default_delay`` (seconds) apply when neither
    the call nor the actor's options say; the other arguments are Celery's.
    """
    if message is None or message.actor_name != actor.actor_name:
        raise RuntimeError(f"retry() of {actor.actor_name!r} called outside of its task")
    if args is not None or kwargs is not None:
        raise TypeError(
            "retry(args=..., kwargs=...) is not supported: dramatiq retries the same"
            " message; send a new one with apply_async() instead"
        )
    if max_retries is None:
        max_retries = actor.options.get("max_retries", default_limit)
    if max_retries is not None and (isinstance(max_retries, bool) or max_retries < 0):
        raise ValueError(f"max_retries must be a whole number, 0 or more, not {max_retries!r}")
    delay = delay_seconds(countdown, eta)
    when = default_delay if delay is None else delay
    retries = int(message.options.get("retries", 0))
    if max_retries is not None and retries >= max_retries:
        if exc is not None:
            raise exc
        raise MaxRetriesExceededError(
            f"Can't retry {actor.actor_name}[{message.message_id}]"
            f" args:{tuple(message.args)!r} kwargs:{dict(message.kwargs)!r}"
            f" after {retries} retries"
        )
    # dramatiq's Retries middleware re-enqueues the message; it must
    # not refuse this retry for its own limit.
    retries_middleware = middleware_of(actor.broker, Retries)
    limit = message.options.get(
        "max_retries",
        actor.options.get(
            "max_retries", retries_middleware.max_retries if retries_middleware else None
        ),
    )
    if limit is not None and limit <= retries:
        message.options["max_retries"] = retries + 1
    reason = f"Retry in {when}s" + (f": {exc!r}" if exc is not None else "")
    raise Retry(reason, exc=exc, when=when)


def only_asked_retries(
    autoretry_for: tuple[type[BaseException], ...],
    dont_autoretry_for: tuple[type[BaseException], ...],
    limit: int | None,
) -> Callable[[int, BaseException], bool]:
    """dramatiq's ``retry_when`` for Celery's rule: a task runs again only
    when it called ``self.retry()`` (which checked its own limit) or raised
    one of ``autoretry_for`` and none of ``dont_autoretry_for``, within
    ``limit`` retries."""

    def retry_when(retries: int, exception: BaseException) -> bool:
        if isinstance(exception, dramatiq.Retry):
            return True
        if isinstance(exception, dont_autoretry_for):
            return False
        return isinstance(exception, autoretry_for) and (limit is None or retries < limit)

    return retry_when


def check_retry_kwargs(retry_kwargs: Any) -> dict[str, Any]:
    """``retry_kwargs``, checked: a dict of :data:`~.options.RETRY_KWARGS` only."""
    if not isinstance(retry_kwargs, dict):
        raise TypeError(
            f"retry_kwargs must be a dict such as {{'max_retries': 5}}, not {retry_kwargs!r}"
        )
    unknown = sorted(set(retry_kwargs) - RETRY_KWARGS)
    if unknown:
        raise TypeError(
            f"retry_kwargs {unknown!r} are not supported here: an automatic retry honours"
            f" only {sorted(RETRY_KWARGS)!r}; call self.retry() in the task for the others"
        )
    limit = retry_kwargs.get("max_retries")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(
            f"retry_kwargs max_retries must be a whole number, 0 or more, not {limit!r}"
        )
    if "countdown" in retry_kwargs:
        check_seconds("retry_kwargs countdown", retry_kwargs["countdown"])
    return retry_kwargs
