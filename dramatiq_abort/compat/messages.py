"""The messages Celery's ``apply_async`` and ``send_task`` describe: built
with every argument checked, then enqueued after their countdown or at
their eta."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.middleware import AgeLimit

from ..checks import check_message_id, check_seconds
from ..dramatiq_internals import middleware_of
from .options import UNSUPPORTED_SEND_OPTIONS, send_options

__all__ = ["build_message", "delay_seconds", "enqueue", "seconds_until"]


def build_message(
    broker: dramatiq.Broker,
    actor_name: str,
    queue_name: str,
    args: Any,
    kwargs: Any,
    *,
    task_id: str | None,
    expires: float | datetime.datetime | None,
    queue: str | None,
    priority: int | None,
    options: dict[str, Any],
    make: Callable[..., dramatiq.Message[Any]] | None = None,
) -> dramatiq.Message[Any]:
    """The message Celery's ``apply_async``/``send_task`` arguments describe,
    every argument checked before anything is sent."""
    if args is not None and not isinstance(args, (tuple, list)):
        raise TypeError(f"args must be a tuple or list, not {args!r}")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError(f"kwargs must be a dict, not {kwargs!r}")
    for name, instead in UNSUPPORTED_SEND_OPTIONS.items():
        if options.get(name) is not None:
            raise TypeError(f"{name}={options[name]!r} is not supported here: {instead}")
    if priority is not None:
        raise TypeError(
            f"priority={priority!r} is not supported: dramatiq orders messages by the"
            " priority of their actor; declare the actor with priority=..."
        )
    if task_id is not None:
        task_id = check_message_id(task_id)
    options = send_options(options)
    if queue is not None and queue != queue_name:
        if not isinstance(queue, str) or queue not in broker.get_declared_queues():
            raise ValueError(
                f"queue {queue!r} is not declared on this broker: workers consume only the"
                " queues declared in their process; declare an actor with"
                f" queue_name={queue!r} or call broker.declare_queue({queue!r}) in the module"
                " that producers and workers import"
            )
        queue_name = queue
    if expires is not None:
        if isinstance(expires, datetime.datetime):
            seconds = seconds_until("expires", expires)
        else:
            seconds = check_seconds("expires", expires)
        if middleware_of(broker, AgeLimit) is None:
            raise ValueError(
                f"expires={expires!r} needs dramatiq's AgeLimit middleware on the broker"
            )
        options = {**options, "max_age": max(1, int(seconds * 1000))}
    args = tuple(args or ())
    if make is not None:
        message = make(args=args, kwargs=kwargs or {}, **options)
    else:
        message = dramatiq.Message(
            queue_name=queue_name,
            actor_name=actor_name,
            args=args,
            kwargs=kwargs or {},
            options=options,
        )
    changes: dict[str, Any] = {"queue_name": queue_name}
    if task_id is not None:
        changes["message_id"] = task_id
    return message.copy(**changes)


def delay_seconds(countdown: float | None, eta: datetime.datetime | None) -> float | None:
    """Seconds from now given as Celery's ``countdown`` or ``eta`` (naive
    ``eta``s are UTC); ``None`` when neither is."""
    if countdown is not None and eta is not None:
        raise TypeError("give countdown or eta, not both")
    if countdown is not None:
        return check_seconds("countdown", countdown)
    if eta is None:
        return None
    return max(0.0, seconds_until("eta", eta))


def seconds_until(name: str, when: datetime.datetime) -> float:
    """Seconds from now until ``when`` (naive datetimes are UTC), negative
    once it is past; ``TypeError`` naming ``name`` for anything else."""
    if not isinstance(when, datetime.datetime):
        raise TypeError(f"{name} must be a datetime, not {when!r}")
    when = when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)
    return (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds()


def enqueue(
    broker: dramatiq.Broker,
    message: dramatiq.Message[Any],
    countdown: float | None,
    eta: datetime.datetime | None,
) -> dramatiq.Message[Any]:
    """Enqueue ``message`` on ``broker`` after ``countdown`` seconds or at
    ``eta`` (see :func:`delay_seconds`), at once without either; the message
    as the broker queued it, with its ETA."""
    delay = delay_seconds(countdown, eta)
    return broker.enqueue(message, delay=None if delay is None else int(delay * 1000))
