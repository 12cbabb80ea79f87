"""AbortableActor: a dramatiq actor with Celery's ``AbortableTask`` API."""

from __future__ import annotations

import datetime
from typing import Any, Callable, NamedTuple

import dramatiq

from dramatiq_abort.middleware import Abortable, abortable_of
from dramatiq_abort.requests import check_message_id

from .result import AbortableResult, check_seconds


class Request(NamedTuple):
    """What Celery's ``self.request`` says of the message being processed."""

    #: The message id, ``None`` outside a message.
    id: str | None
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    #: How many times the message was retried before.
    retries: int
    message: dramatiq.MessageProxy | None


_NO_REQUEST = Request(None, (), {}, 0, None)


class AbortableActor(dramatiq.Actor[..., Any]):
    """An actor whose tasks Celery code can abort and poll.

    Declare it with ``@dramatiq.actor(actor_class=AbortableActor)``; add
    ``bind=True`` to receive the actor as the function's first argument, as
    with Celery's ``@app.task(bind=True)``. Every way of sending returns an
    :class:`~compat.AbortableResult`.
    """

    #: Tells the Abortable middleware that ``bind=True`` is honoured.
    binds_self = True

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        broker: dramatiq.Broker,
        actor_name: str,
        queue_name: str,
        priority: int,
        options: dict[str, Any],
    ) -> None:
        self.bind = bool(options.get("bind", False))
        super().__init__(
            fn,
            broker=broker,
            actor_name=actor_name,
            queue_name=queue_name,
            priority=priority,
            options=options,
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.bind:
            return super().__call__(self, *args, **kwargs)
        return super().__call__(*args, **kwargs)

    @property
    def abortable(self) -> Abortable:
        """The Abortable middleware of this actor's broker."""
        return abortable_of(self.broker)

    @property
    def request(self) -> Request:
        """The message this thread is processing for an abortable actor."""
        execution = self.abortable.executions.current()
        if execution is None:
            return _NO_REQUEST
        message = execution.message
        return Request(
            message.message_id,
            tuple(message.args),
            dict(message.kwargs),
            int(message.options.get("retries", 0)),
            message,
        )

    def is_aborted(self, task_id: str | None = None, **_: Any) -> bool:
        """Whether the current task (or ``task_id``) was asked to abort.

        For the current task this is a lookup in the worker's memory, with
        no round trip; it turns true within milliseconds of ``abort()``.
        """
        if task_id is None:
            return self.abortable.get_abort_request() is not None
        task_id = check_message_id(task_id)
        if self.abortable.get_abort_request(task_id) is not None:
            return True
        return self.AsyncResult(task_id).is_aborted()

    def AsyncResult(self, task_id: str) -> AbortableResult:
        """The result of one of this actor's tasks, from its id."""
        return AbortableResult(task_id, actor=self)

    def send_with_options(  # type: ignore[override]
        self,
        *,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        delay: int | None = None,
        **options: Any,
    ) -> AbortableResult:
        message = super().send_with_options(args=args, kwargs=kwargs, delay=delay, **options)
        return AbortableResult(message, actor=self)

    def send(self, *args: Any, **kwargs: Any) -> AbortableResult:  # type: ignore[override]
        return self.send_with_options(args=args, kwargs=kwargs)

    delay = send

    def apply_async(
        self,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime.datetime | None = None,
        **options: Any,
    ) -> AbortableResult:
        """Celery's ``apply_async``: ``countdown`` seconds or an ``eta``
        datetime (naive ones are taken as UTC) delay the task."""
        if countdown is not None and eta is not None:
            raise TypeError("give countdown or eta, not both")
        delay = None
        if countdown is not None:
            delay = int(check_seconds("countdown", countdown) * 1000)
        elif eta is not None:
            if not isinstance(eta, datetime.datetime):
                raise TypeError(f"eta must be a datetime, not {eta!r}")
            when = eta if eta.tzinfo else eta.replace(tzinfo=datetime.timezone.utc)
            left = when - datetime.datetime.now(datetime.timezone.utc)
            delay = max(0, int(left.total_seconds() * 1000))
        return self.send_with_options(args=tuple(args or ()), kwargs=kwargs, delay=delay, **options)
