"""AbortableActor: a dramatiq actor with the API of Celery's ``AbortableTask``
and of the ``Task`` around it; ``BoundTask``, the ``self`` of its bound
tasks; ``send_task``, which sends by name through it when it can."""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable
from typing import Any

import dramatiq
import wrapt
from dramatiq.broker import MessageProxy

from ..checks import check_message_id
from ..middleware import Abortable, abortable_of
from . import retries
from .exceptions import Ignore, Retry
from .messages import build_message, enqueue
from .middleware import TaskStates, task_states_of
from .request import ExceptionInfo, Request
from .result import AbortableResult
from .states import FAILURE, RETRY, SUCCESS

__all__ = ["HOOKS", "AbortableActor", "BoundTask", "send_task"]

#: Celery's hooks, run in the worker after the task.
HOOKS = ("on_success", "on_failure", "on_retry", "after_return")


class AbortableActor(dramatiq.Actor[..., Any]):
    """An actor whose tasks Celery code can run, abort and poll.

    Declare it with ``@dramatiq.actor(actor_class=AbortableTask)``; with
    ``bind=True`` the function gets the task as its first argument, as with
    Celery's ``@app.task(bind=True)``. Every way of sending returns an
    :class:`~dramatiq_abort.compat.AbortableResult`. The broker needs the
    :class:`~dramatiq_abort.compat.TaskStates` middleware.

    Subclass it for Celery's hooks: ``on_success``, ``on_failure``,
    ``on_retry`` and ``after_return`` run in the worker after the task, with
    Celery's arguments; set ``max_retries`` and ``default_retry_delay`` on
    the subclass for ``self.retry()``.
    """

    #: Tells TaskStates that ``bind=True`` is honoured.
    binds_self = True
    #: ``self.retry()``'s limit when neither the call nor the actor's
    #: ``max_retries`` option sets one.
    max_retries: int | None = retries.DEFAULT_MAX_RETRIES
    #: Seconds ``self.retry()`` waits without a countdown or eta.
    default_retry_delay: float = retries.DEFAULT_RETRY_DELAY

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
        task_states_of(broker)
        self.bind = bool(options.get("bind", False))
        #: Whether a subclass has any of Celery's hooks.
        self.hooked = any(
            getattr(type(self), name) is not getattr(AbortableActor, name) for name in HOOKS
        )
        super().__init__(
            fn,
            broker=broker,
            actor_name=actor_name,
            queue_name=queue_name,
            priority=priority,
            options=options,
        )

    @property
    def name(self) -> str:
        """Celery's name for the task: the actor's name."""
        return self.actor_name

    @functools.cached_property
    def abortable(self) -> Abortable:
        """The Abortable middleware of this actor's broker, looked up once:
        ``is_aborted()`` is called in tight loops."""
        return abortable_of(self.broker)

    @functools.cached_property
    def states(self) -> TaskStates:
        """The TaskStates middleware of this actor's broker."""
        return task_states_of(self.broker)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        message = self.states.current.get()
        if message is not None and message.actor_name != self.actor_name:
            # Called by another actor's task: not this task's message.
            message = None
        if self.bind:
            args = (BoundTask(self, message, args, kwargs), *args)
        try:
            retval = super().__call__(*args, **kwargs)
        except Ignore:
            if message is not None:
                self.states.ignore(message)
            return None
        except Retry as retry:
            self._after(RETRY, retry, args, kwargs, retry)
            raise
        except Exception as e:
            self._after(FAILURE, e, args, kwargs, e)
            raise
        self._after(SUCCESS, retval, args, kwargs)
        return retval

    def _after(
        self,
        status: str,
        retval: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        exception: BaseException | None = None,
    ) -> None:
        """Run Celery's hooks, where a subclass has them."""
        if not self.hooked:
            return
        if self.bind:
            args = args[1:]
        task_id = self.request.id
        einfo = None if exception is None else ExceptionInfo(exception)
        if status == SUCCESS:
            self.on_success(retval, task_id, args, kwargs)
        elif isinstance(exception, Retry):
            self.on_retry(exception.exc or exception, task_id, args, kwargs, einfo)
        else:
            self.on_failure(retval, task_id, args, kwargs, einfo)
        self.after_return(status, retval, task_id, args, kwargs, einfo)

    # Celery's hooks: they do nothing unless a subclass overrides them.

    def on_success(self, retval: Any, task_id: str | None, args: Any, kwargs: Any) -> None:
        """Called in the worker after the task returned ``retval``."""

    def on_failure(
        self, exc: BaseException, task_id: str | None, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        """Called in the worker after the task raised ``exc``."""

    def on_retry(
        self, exc: BaseException, task_id: str | None, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        """Called in the worker after the task asked to be retried."""

    def after_return(
        self,
        status: str,
        retval: Any,
        task_id: str | None,
        args: Any,
        kwargs: Any,
        einfo: Any,
    ) -> None:
        """Called in the worker after any of the above."""

    # The task's view of itself

    @property
    def request(self) -> Request:
        """The message this thread (or coroutine) runs for this actor."""
        message = self.states.current.get()
        if message is None or message.actor_name != self.actor_name:
            return Request(None)
        return Request(message)

    def is_aborted(self, task_id: str | None = None, **_: Any) -> bool:
        """Whether the current task (or ``task_id``) was asked to abort.

        For a task running in this process this is a lookup in memory, with
        no round trip; it turns true within milliseconds of ``abort()``.
        """
        if task_id is None:
            return self.abortable.get_abort_request() is not None
        task_id = check_message_id(task_id)
        current = self.states.current.get()
        if current is not None and current.message_id == task_id:
            return self.abortable.get_abort_request() is not None
        if self.abortable.get_abort_request(task_id) is not None:
            return True
        return self.AsyncResult(task_id).is_aborted()

    def update_state(
        self, task_id: str | None = None, state: str | None = None, meta: Any = None, **_: Any
    ) -> None:
        """Record the state of the current task (or ``task_id``): Celery's
        progress reports, ``state="PROGRESS", meta={"current": 3}``.

        One write to the abort backend. An abort request is not a state, so
        this never hides one: ``is_aborted()`` stays true.
        """
        current = self.states.current.get()
        if task_id is None:
            if current is None:
                raise ValueError("update_state() outside a task needs task_id=: task_id is None")
            task_id = current.message_id
        task_id = check_message_id(task_id)
        if not isinstance(state, str) or not state:
            raise TypeError(f"state must be a non-empty str such as 'PROGRESS', not {state!r}")
        running = current if current is not None and current.message_id == task_id else None
        self.states.report(self.broker, task_id, state, meta, message=running)

    def AsyncResult(self, task_id: str) -> AbortableResult:
        """The result of one of this actor's tasks, from its id."""
        return AbortableResult(task_id, actor=self)

    def retry(self, *args: Any, **kwargs: Any) -> Retry:
        """Run the current task again later, as Celery's ``self.retry(args=None,
        kwargs=None, exc=None, throw=True, eta=None, countdown=None,
        max_retries=None)``: raises
        :class:`~dramatiq_abort.compat.exceptions.Retry` (let it go).

        The task runs again with the same id after ``countdown`` seconds, at
        ``eta``, or after ``default_retry_delay``. Once it was retried
        ``max_retries`` times (the actor's ``max_retries`` option, else 3),
        ``exc`` is raised instead, or ``MaxRetriesExceededError``. New
        ``args`` or ``kwargs`` are refused: dramatiq retries the same message.
        """
        return self._retry(self.states.current.get(), *args, **kwargs)

    def _retry(self, message: MessageProxy | None, *args: Any, **kwargs: Any) -> Retry:
        return retries.retry(
            self, message, self.max_retries, self.default_retry_delay, *args, **kwargs
        )

    # Sending

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
        task_id: str | None = None,
        countdown: float | None = None,
        eta: datetime.datetime | None = None,
        expires: float | datetime.datetime | None = None,
        queue: str | None = None,
        priority: int | None = None,
        **options: Any,
    ) -> AbortableResult:
        """Celery's ``apply_async``; see :func:`send_task` for the options."""
        message = build_message(
            self.broker,
            self.actor_name,
            self.queue_name,
            args,
            kwargs,
            task_id=task_id,
            expires=expires,
            queue=queue,
            priority=priority,
            options=options,
            make=self.message_with_options,
        )
        message = enqueue(self.broker, message, countdown, eta)
        return AbortableResult(message, actor=self)

    def s(self, *args: Any, **kwargs: Any) -> dramatiq.Message[Any]:
        """Celery's signature: the message, for ``dramatiq.group`` or ``pipeline``."""
        return self.message(*args, **kwargs)

    def si(self, *args: Any, **kwargs: Any) -> dramatiq.Message[Any]:
        """Celery's immutable signature: the message, which in a
        ``dramatiq.pipeline`` does not receive the result of the one before."""
        return self.message_with_options(args=args, kwargs=kwargs, pipe_ignore=True)


class BoundTask(wrapt.ObjectProxy):  # type: ignore[type-arg]
    """``self`` in a task declared with ``bind=True``: the actor, tied to the
    message being run.

    Everything the actor has works on it; ``request``, ``is_aborted()``,
    ``update_state()`` and ``retry()`` speak of that message, also when
    called from another thread (``compute(self.is_aborted)``).
    """

    def __init__(
        self,
        actor: AbortableActor,
        message: MessageProxy | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        super().__init__(actor)
        self._self_message = message
        self._self_call = (args, kwargs)

    @property
    def request(self) -> Request:
        message = self._self_message
        if message is None:
            args, kwargs = self._self_call
            return Request(None, args=args, kwargs=kwargs)
        return Request(message)

    def is_aborted(self, task_id: str | None = None, **_: Any) -> bool:
        actor: AbortableActor = self.__wrapped__
        return actor.is_aborted(self._task_id(task_id))

    def update_state(
        self, task_id: str | None = None, state: str | None = None, meta: Any = None, **_: Any
    ) -> None:
        actor: AbortableActor = self.__wrapped__
        actor.update_state(self._task_id(task_id), state, meta)

    def retry(self, *args: Any, **kwargs: Any) -> Retry:
        actor: AbortableActor = self.__wrapped__
        return actor._retry(self._self_message, *args, **kwargs)

    def _task_id(self, task_id: str | None) -> str | None:
        """``task_id``, else the id of the message this task runs."""
        message = self._self_message
        if task_id is None and message is not None:
            return str(message.message_id)
        return task_id


def send_task(
    name: str,
    args: tuple[Any, ...] | list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    *,
    countdown: float | None = None,
    eta: datetime.datetime | None = None,
    task_id: str | None = None,
    expires: float | datetime.datetime | None = None,
    queue: str | None = None,
    priority: int | None = None,
    broker: dramatiq.Broker | None = None,
    **options: Any,
) -> AbortableResult:
    """Send a task by its name, as Celery's ``app.send_task``.

    The actor need not be declared in this process: then ``queue`` (default
    ``"default"``) says where it goes. ``task_id`` becomes the message id;
    ``countdown`` (seconds) or ``eta`` (a datetime, naive ones UTC) delay it;
    ``expires`` (seconds or a datetime, with dramatiq's ``AgeLimit``) drops it
    if it has not started by then; ``time_limit`` and ``soft_time_limit``
    (seconds) bound its run, and ``ignore_result=True`` keeps no result.
    ``priority``, ``link`` and the routing options of Celery are refused:
    dramatiq has no place for them.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be an actor's name, not {name!r}")
    broker = broker or dramatiq.get_broker()
    actor = broker.actors.get(name)
    if isinstance(actor, AbortableActor):
        return actor.apply_async(
            args,
            kwargs,
            countdown=countdown,
            eta=eta,
            task_id=task_id,
            expires=expires,
            queue=queue,
            priority=priority,
            **options,
        )
    queue_name = actor.queue_name if actor is not None else (queue or "default")
    message = build_message(
        broker,
        name,
        queue_name,
        args,
        kwargs,
        task_id=task_id,
        expires=expires,
        queue=queue if actor is not None else None,
        priority=priority,
        options=options,
    )
    message = enqueue(broker, message, countdown, eta)
    return AbortableResult(message, broker=broker)
