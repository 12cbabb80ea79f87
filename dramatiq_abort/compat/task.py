"""AbortableActor: a dramatiq actor with the API of Celery's ``AbortableTask``
and of the ``Task`` around it."""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable
from typing import Any

import dramatiq
import wrapt
from dramatiq.broker import MessageProxy
from dramatiq.middleware import AgeLimit, Retries

from ..checks import check_message_id, check_seconds
from ..dramatiq_internals import middleware_of
from ..middleware import Abortable, abortable_of
from .exceptions import Ignore, MaxRetriesExceededError, Retry
from .middleware import HOSTNAME, TaskStates, task_states_of
from .options import UNSUPPORTED_SEND_OPTIONS, send_options
from .records import format_traceback
from .result import AbortableResult
from .states import FAILURE, RETRY, SUCCESS

#: Celery's defaults for ``self.retry()``: how many times, and how many
#: seconds apart, unless the task or the call says otherwise.
DEFAULT_MAX_RETRIES = 3
DEFAULT_RETRY_DELAY = 180.0

#: Celery's hooks, run in the worker after the task.
HOOKS = ("on_success", "on_failure", "on_retry", "after_return")


class Request:
    """What Celery's ``self.request`` says of the task being run."""

    def __init__(self, message: MessageProxy | dramatiq.Message[Any] | None, **call: Any) -> None:
        #: The message itself, ``None`` when the task is called directly.
        self.message = message
        #: Whether the function was called directly, not by a worker.
        self.called_directly = message is None
        self.is_eager = False
        self.hostname = HOSTNAME
        if message is None:
            self.id: str | None = None
            self.task: str | None = None
            self.args: tuple[Any, ...] = tuple(call.get("args", ()))
            self.kwargs: dict[str, Any] = dict(call.get("kwargs", {}))
            self.retries = 0
            self.eta: datetime.datetime | None = None
            self.expires: datetime.datetime | None = None
            self.delivery_info: dict[str, Any] = {}
            return
        options = message.options
        self.id = message.message_id
        self.task = message.actor_name
        self.args = tuple(message.args)
        self.kwargs = dict(message.kwargs)
        #: How many times the task was retried before this run.
        self.retries = int(options.get("retries", 0))
        self.eta = _datetime(options.get("eta"))
        max_age = options.get("max_age")
        self.expires = _datetime(message.message_timestamp + max_age if max_age else None)
        self.delivery_info = {
            "routing_key": message.queue_name,
            "exchange": "",
            "priority": None,
            "redelivered": bool(options.get("redelivered", False)),
        }

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name, default)

    def __repr__(self) -> str:
        return f"<Request {self.task}[{self.id}] args={self.args!r} kwargs={self.kwargs!r}>"


def _datetime(milliseconds: int | float | None) -> datetime.datetime | None:
    if milliseconds is None:
        return None
    return datetime.datetime.fromtimestamp(milliseconds / 1000, datetime.timezone.utc)


class ExceptionInfo:
    """What Celery's ``einfo`` gives the failure hooks."""

    def __init__(self, exception: BaseException) -> None:
        self.exception = exception
        self.type = type(exception)
        self.tb = exception.__traceback__
        self.traceback = format_traceback(exception)

    def __str__(self) -> str:
        return self.traceback


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
    max_retries: int | None = DEFAULT_MAX_RETRIES
    #: Seconds ``self.retry()`` waits without a countdown or eta.
    default_retry_delay: float = DEFAULT_RETRY_DELAY

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

    def _retry(
        self,
        message: MessageProxy | None,
        args: Any = None,
        kwargs: Any = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: datetime.datetime | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Retry:
        if message is None or message.actor_name != self.actor_name:
            raise RuntimeError(f"retry() of {self.actor_name!r} called outside of its task")
        if args is not None or kwargs is not None:
            raise TypeError(
                "retry(args=..., kwargs=...) is not supported: dramatiq retries the same"
                " message; send a new one with apply_async() instead"
            )
        if max_retries is None:
            max_retries = self.options.get("max_retries", self.max_retries)
        if max_retries is not None and (isinstance(max_retries, bool) or max_retries < 0):
            raise ValueError(f"max_retries must be a whole number, 0 or more, not {max_retries!r}")
        delay = _delay(countdown, eta)
        when = self.default_retry_delay if delay is None else delay
        retries = int(message.options.get("retries", 0))
        if max_retries is not None and retries >= max_retries:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(
                f"Can't retry {self.actor_name}[{message.message_id}]"
                f" args:{tuple(message.args)!r} kwargs:{dict(message.kwargs)!r}"
                f" after {retries} retries"
            )
        # dramatiq's Retries middleware re-enqueues the message; it must
        # not refuse this retry for its own limit.
        retries_middleware = middleware_of(self.broker, Retries)
        limit = message.options.get(
            "max_retries",
            self.options.get(
                "max_retries", retries_middleware.max_retries if retries_middleware else None
            ),
        )
        if limit is not None and limit <= retries:
            message.options["max_retries"] = retries + 1
        reason = f"Retry in {when}s" + (f": {exc!r}" if exc is not None else "")
        raise Retry(reason, exc=exc, when=when)

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
        delay = _delay(countdown, eta)
        # The broker gives back the message as it was queued, with its ETA.
        message = self.broker.enqueue(message, delay=None if delay is None else int(delay * 1000))
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
        message = self._self_message
        if task_id is None and message is not None:
            task_id = message.message_id
        return actor.is_aborted(task_id)

    def update_state(
        self, task_id: str | None = None, state: str | None = None, meta: Any = None, **_: Any
    ) -> None:
        actor: AbortableActor = self.__wrapped__
        message = self._self_message
        if task_id is None and message is not None:
            task_id = message.message_id
        actor.update_state(task_id, state, meta)

    def retry(self, *args: Any, **kwargs: Any) -> Retry:
        actor: AbortableActor = self.__wrapped__
        return actor._retry(self._self_message, *args, **kwargs)


def _delay(countdown: float | None, eta: datetime.datetime | None) -> float | None:
    """Seconds from now given as Celery's ``countdown`` or ``eta`` (naive
    ``eta``s are UTC); ``None`` when neither is."""
    if countdown is not None and eta is not None:
        raise TypeError("give countdown or eta, not both")
    if countdown is not None:
        return check_seconds("countdown", countdown)
    if eta is None:
        return None
    return max(0.0, _seconds_until("eta", eta))


def _seconds_until(name: str, when: datetime.datetime) -> float:
    if not isinstance(when, datetime.datetime):
        raise TypeError(f"{name} must be a datetime, not {when!r}")
    when = when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)
    return (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds()


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
            seconds = _seconds_until("expires", expires)
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
    delay = _delay(countdown, eta)
    message = broker.enqueue(message, delay=None if delay is None else int(delay * 1000))
    return AbortableResult(message, broker=broker)
