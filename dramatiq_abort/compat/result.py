"""AbortableResult: Celery's ``AbortableAsyncResult`` as a transparent proxy
over a dramatiq ``Message``; AbortableGroupResult for groups and pipelines."""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Iterator
from typing import Any

import dramatiq
import wrapt
from dramatiq.results.backend import ResultBackend

from ..checks import check_message_id, check_seconds
from ..middleware import Abortable, abortable_of
from . import records
from .exceptions import TaskAborted, TimeoutError
from .states import FAILURE, SUCCESS
from .status import FIRST_PAUSE, Status, TaskReader

#: What ``compat.result`` (Celery's ``celery.result``) gives.
__all__ = ["AbortableGroupResult", "AbortableResult", "App", "Status"]


class App:
    """What ``app=`` takes besides a broker: the
    :class:`~dramatiq_abort.compat.Celery` app derives from it, so that a
    result knows an app without importing the module that builds one."""

    #: The broker the app's tasks are sent on.
    broker: dramatiq.Broker


class AbortableResult(wrapt.ObjectProxy):  # type: ignore[type-arg]
    """The message of a sent task, with Celery's result API on top.

    Everything the dramatiq ``Message`` does still works on it
    (``message_id``, ``get_result()``, ``asdict()``, equality with the
    message, ``isinstance(result, dramatiq.Message)``), but as in Celery
    ``str(result)`` is the task id, and two results of one task are equal
    and hash alike. ``AbortableResult(task_id)`` rebuilds one from an id
    kept elsewhere.

    :param id: The sent message, or its id (Celery's ``id``).
    :param backend: A dramatiq Results backend to read results from;
        defaults to the broker's ``Results`` middleware.
    :param task_name: The actor's name, when known and no ``actor`` is given.
    :param app: The :class:`~dramatiq_abort.compat.Celery` app, or its
        broker: defaults to the actor's, then the global one. ``broker=``
        takes a broker.
    :param actor: The task's actor, when known.
    """

    def __init__(
        self,
        id: dramatiq.Message[Any] | str | None = None,
        backend: ResultBackend | None = None,
        task_name: str | None = None,
        app: App | dramatiq.Broker | None = None,
        parent: Any = None,
        *,
        actor: dramatiq.Actor[Any, Any] | None = None,
        broker: dramatiq.Broker | None = None,
        **celery_options: Any,
    ) -> None:
        message = id if id is not None else celery_options.pop("task_id", None)
        if celery_options:
            raise TypeError(f"unexpected arguments {sorted(celery_options)!r}")
        if backend is not None and not isinstance(backend, ResultBackend):
            raise TypeError(f"backend must be a dramatiq results backend, not {backend!r}")
        if isinstance(app, App):
            app = app.broker
        for name, value in (("app", app), ("broker", broker)):
            if value is not None and not isinstance(value, dramatiq.Broker):
                allowed = (
                    "a compat Celery app or a dramatiq Broker"
                    if name == "app"
                    else "a dramatiq Broker"
                )
                raise TypeError(f"{name} must be {allowed}, not {value!r}")
        broker = broker or app or (actor.broker if actor is not None else dramatiq.get_broker())
        if actor is None and task_name is not None:
            actor = broker.actors.get(task_name)
        if isinstance(message, dramatiq.Message):
            located = True
        else:
            message_id = check_message_id(message)
            located = actor is not None
            message = dramatiq.Message(
                queue_name=actor.queue_name if actor else "",
                actor_name=actor.actor_name if actor else "",
                args=(),
                kwargs={},
                options={},
                message_id=message_id,
            )
        super().__init__(message)
        self._self_reader = TaskReader(broker, backend, message, located, self._located)
        self._self_parent = parent

    def _located(self, message: dramatiq.Message[Any]) -> None:
        # The reader found the actor and queue of a result rebuilt from an
        # id: the proxy shows them too.
        self.__wrapped__ = message

    def __repr__(self) -> str:
        return f"<AbortableResult: {self.__wrapped__.message_id} {self.__wrapped__!r}>"

    # Celery's identity: a result is its task id. Views put ``str(result)``
    # in JSON, and keep results in sets and as dict keys.

    def __str__(self) -> str:
        """The task id, as ``str()`` of Celery's ``AsyncResult``."""
        return self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __eq__(self, other: object) -> bool:
        """Equal to a result of the same task and to its id (a ``str``), as
        in Celery; compared with a dramatiq ``Message``, as the message."""
        if isinstance(other, AbortableResult):
            return self.id == other.id
        if isinstance(other, str):
            return self.id == other
        return bool(self.__wrapped__ == other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __getattr__(self, name: str) -> Any:
        try:
            return getattr(self.__wrapped__, name)
        except AttributeError:
            raise AttributeError(f"'AbortableResult' object has no attribute {name!r}") from None

    @property
    def parent(self) -> Any:
        """Celery's parent result: what the constructor was given."""
        return self._self_parent

    @property
    def id(self) -> str:
        """The task id: the message id."""
        return str(self.__wrapped__.message_id)

    task_id = id

    @property
    def message(self) -> dramatiq.Message[Any]:
        """The dramatiq message itself, unwrapped."""
        message: dramatiq.Message[Any] = self.__wrapped__
        return message

    @property
    def abortable(self) -> Abortable:
        return self._self_reader.abortable

    # Sending abort requests

    def abort(
        self, timeout: float | None = None, *, wait: bool = False, reason: str | None = None
    ) -> bool | None:
        """Ask the task to stop, as Celery's ``abort()`` does: it sees
        ``self.is_aborted()`` turn true within milliseconds, and a task
        still queued never starts.

        Without ``wait``, ``timeout`` is a grace in seconds after which
        ``Abort`` is raised in the task; ``None`` never forces it, as in Celery.

        With ``wait=True`` the request is never forced, and the call blocks
        up to ``timeout`` seconds (``None``: for ever) until it is known what
        became of the task: ``True`` if it stopped early (aborted, or never
        started), ``False`` if it ran to its end anyway. Raises
        ``TimeoutError`` when no worker answered in time.

        ``reason`` says why, as with ``dramatiq_abort.abort``.
        """
        limit = None if timeout is None else check_seconds("timeout", timeout)
        grace = math.inf if wait or limit is None else limit * 1000
        self.abortable.abort(self.message, abort_timeout=grace, reason=reason)
        return self._self_reader.stopped(limit) if wait else None

    def revoke(
        self,
        connection: Any = None,
        terminate: bool = False,
        signal: Any = None,
        wait: bool = False,
        timeout: float | None = None,
        *,
        reason: str | None = None,
    ) -> bool | None:
        """Cancel the task if it has not started; with ``terminate=True``,
        also raise ``Abort`` in it now if it runs (whatever ``signal``).
        ``wait``, ``timeout`` (seconds) and ``reason`` work as with :meth:`abort`."""
        limit = None if timeout is None else check_seconds("timeout", timeout)
        records.revoke_tasks(self.abortable, [self.message], terminate, reason)
        return self._self_reader.stopped(limit) if wait else None

    # Reading state

    def status_now(self) -> Status:
        """Everything one read of the abort backend says of the task."""
        return self._self_reader.now()

    @property
    def state(self) -> str:
        """``PENDING``, ``STARTED``, a state the task reported (``PROGRESS``),
        ``RETRY``, ``ABORTED``, ``REVOKED``, ``SUCCESS`` or ``FAILURE``.

        While an abort is in force and the task has not ended, ``ABORTED``,
        whatever it still reports. One read of the abort backend.
        """
        return self.status_now().state

    status = state

    @property
    def info(self) -> Any:
        """The task's return value once it succeeded, the exception once it
        failed, and the ``meta`` it last reported while it runs (also while
        it is being aborted)."""
        return self._self_reader.info(self.status_now())

    result = info

    @property
    def traceback(self) -> str | None:
        """The formatted traceback of a failed task."""
        record = self.status_now().record
        return None if record is None else record.traceback

    @property
    def date_done(self) -> datetime.datetime | None:
        """When the task ended (an aware UTC datetime), if it did."""
        status = self.status_now()
        return status.record.done_at if status.ended and status.record else None

    def is_aborted(self) -> bool:
        """Whether an abort of the task was requested. Nothing the task
        reports or returns clears it."""
        return self.status_now().aborted

    def ready(self) -> bool:
        """Whether the task is over: it returned, failed, or was stopped."""
        return self.status_now().ended

    def successful(self) -> bool:
        return self.state == SUCCESS

    def failed(self) -> bool:
        return self.state == FAILURE

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        **celery_options: Any,
    ) -> Any:
        """Wait up to ``timeout`` seconds (``None``: for ever) for the task
        to end, and return its result.

        Raises the task's exception if it failed (unless ``propagate`` is
        false: then it is returned), :class:`TaskAborted` if it was aborted
        or revoked before it returned, :class:`TimeoutError` if it is not
        over in time, and ``RuntimeError`` at once when the broker has no
        Results middleware to keep results. ``interval`` is the longest
        pause, in seconds, between two looks; Celery's other options
        (``no_ack``, ``follow_parents``...) change nothing here.
        """
        if self._self_reader.results() is None:
            raise RuntimeError(
                "get() cannot work: results are off, the broker has no Results middleware;"
                " give Celery(..., backend='redis://...'), or add Results to the broker and"
                " declare the actor with store_results=True"
            )
        limit = None if timeout is None else check_seconds("timeout", timeout)
        interval = check_seconds("interval", interval)
        deadline = None if limit is None else time.monotonic() + limit
        pause = FIRST_PAUSE
        while True:
            status = self.status_now()
            if status.ended:
                break
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(
                    f"task {self.id!r} is not over after {limit}s (it is {status.state})"
                )
            time.sleep(pause if remaining is None else min(pause, remaining))
            pause = min(pause * 2, max(interval, FIRST_PAUSE))
        if status.state == FAILURE:
            error = self._self_reader.info(status)
            if propagate:
                raise error
            return error
        if not status.returned:
            if propagate:
                raise TaskAborted(f"task {self.id!r} was {status.state.lower()}")
            return self._self_reader.info(status)
        return self._self_reader.value(status, deadline)

    wait = get

    def forget(self) -> None:
        """Drop what is kept of the task: its result, state and outcome.
        An abort request stays in force until its TTL runs out."""
        self._self_reader.forget()


class AbortableGroupResult:
    """The tasks of a dramatiq ``group`` or ``pipeline``, aborted in one call."""

    def __init__(
        self, tasks: dramatiq.group | dramatiq.pipeline, *, broker: dramatiq.Broker | None = None
    ) -> None:
        messages = list(_messages(tasks))
        self.broker = broker or tasks.broker
        self.results = [AbortableResult(message, broker=self.broker) for message in messages]

    @property
    def ids(self) -> list[str]:
        return [result.id for result in self.results]

    def abort(self, timeout: float | None = None, *, reason: str | None = None) -> None:
        """:meth:`AbortableResult.abort` for every task, in one write."""
        grace = math.inf if timeout is None else check_seconds("timeout", timeout) * 1000
        abortable_of(self.broker).abort_many(
            [result.message for result in self.results], abort_timeout=grace, reason=reason
        )

    def revoke(self, terminate: bool = False, *, reason: str | None = None) -> None:
        """:meth:`AbortableResult.revoke` for every task, in one write."""
        records.revoke_tasks(
            abortable_of(self.broker),
            [result.message for result in self.results],
            terminate,
            reason,
        )


def _messages(tasks: Any) -> Iterator[dramatiq.Message[Any]]:
    if isinstance(tasks, dramatiq.Message):
        yield tasks
    elif isinstance(tasks, dramatiq.pipeline):
        yield from tasks.messages
    elif isinstance(tasks, dramatiq.group):
        for child in tasks.children:
            yield from _messages(child)
    else:
        raise TypeError(f"expected a dramatiq group, pipeline or message, not {tasks!r}")
