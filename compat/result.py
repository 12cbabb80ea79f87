"""AbortableResult: Celery's ``AbortableAsyncResult`` as a transparent proxy
over a dramatiq ``Message``."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import dramatiq
import wrapt
from dramatiq.results import ResultFailure, ResultMissing, Results, ResultTimeout

from dramatiq_abort.delivery import Outcome
from dramatiq_abort.middleware import Abortable, abortable_of, middleware_of
from dramatiq_abort.requests import AbortMode, check_message_id, event_key

if TYPE_CHECKING:
    from .actor import AbortableActor

#: Celery's task states, as this layer reports them.
PENDING = "PENDING"
#: Only for actors declared with ``track_started=True``, as in Celery.
STARTED = "STARTED"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
#: An abort was requested (and, once the task is over, it stopped).
ABORTED = "ABORTED"
#: The task was revoked (cancelled) before it started.
REVOKED = "REVOKED"

#: How often ``get()`` looks for the result of a task whose actor it does not know.
_PROBE_INTERVAL = 0.05


class TaskAborted(Exception):
    """``get()`` on a task that was aborted or revoked: it has no result."""


def check_seconds(name: str, value: object) -> float:
    """Return ``value`` as a number of seconds, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds, 0 or more, not {value!r}")
    return float(value)


class AbortableResult(wrapt.ObjectProxy):  # type: ignore[type-arg]
    """The message of a sent task, with Celery's result API on top.

    Everything the dramatiq ``Message`` does still works on it
    (``message_id``, ``get_result()``, ``asdict()``, equality,
    ``isinstance(result, dramatiq.Message)``). ``AbortableResult(task_id)``
    rebuilds one from an id kept elsewhere.

    :param message: The sent message, or its id.
    :param actor: The task's actor, when known: it saves looking it up.
    :param broker: The broker; defaults to the actor's, then the global one.
    """

    def __init__(
        self,
        message: dramatiq.Message[Any] | str,
        *,
        actor: AbortableActor | dramatiq.Actor[Any, Any] | None = None,
        broker: dramatiq.Broker | None = None,
    ) -> None:
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
        self._self_broker = broker or (actor.broker if actor else dramatiq.get_broker())
        self._self_located = located

    def __repr__(self) -> str:
        return f"<AbortableResult: {self.__wrapped__.message_id} {self.__wrapped__!r}>"

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
        return abortable_of(self._self_broker)

    # Sending abort requests

    def abort(self, timeout: float | None = None, *, wait: bool = False) -> bool | None:
        """Ask the task to stop, as Celery's ``abort()`` does.

        The task sees ``self.is_aborted()`` turn true within milliseconds.
        Without ``wait``, ``timeout`` is a grace in milliseconds after which
        ``Abort`` is raised in it; ``None`` never forces it, as in Celery.

        With ``wait=True`` the request is never forced, and the call blocks
        up to ``timeout`` seconds (``None``: for ever) for a worker to say
        what became of the task: ``True`` if it stopped early (aborted, or
        never started), ``False`` if it ran to its end anyway. Raises
        ``TimeoutError`` when no worker answered in time.
        """
        if wait:
            limit = None if timeout is None else check_seconds("timeout", timeout)
            self.abortable.abort(self.message, abort_timeout=math.inf)
            return self._stopped(limit)
        self.abortable.abort(self.message, abort_timeout=math.inf if timeout is None else timeout)
        return None

    def revoke(
        self, terminate: bool = False, *, wait: bool = False, timeout: float | None = None
    ) -> bool | None:
        """Cancel the task if it has not started; with ``terminate=True``,
        also raise ``Abort`` in it now if it runs. ``wait`` and ``timeout``
        (seconds) work as with :meth:`abort`."""
        mode = AbortMode.ABORT if terminate else AbortMode.CANCEL
        limit = None if timeout is None else check_seconds("timeout", timeout)
        self.abortable.abort(self.message, mode=mode)
        return self._stopped(limit) if wait else None

    # Reading state

    @property
    def state(self) -> str:
        """``PENDING``, ``STARTED``, ``ABORTED``, ``REVOKED``, ``SUCCESS`` or ``FAILURE``.

        Read from the abort records and, with the Results middleware, the
        stored result. A task aborted while pending stays ``ABORTED``.
        """
        return self._inspect()[0]

    status = state

    def is_aborted(self) -> bool:
        """Whether an abort of the task was requested."""
        return self.state == ABORTED

    def ready(self) -> bool:
        """Whether the task is over: it has a result, or it was stopped."""
        return self._inspect()[1]

    def successful(self) -> bool:
        return self.state == SUCCESS

    def failed(self) -> bool:
        return self.state == FAILURE

    def get(self, timeout: float | None = None, propagate: bool = True) -> Any:
        """Wait up to ``timeout`` seconds for the task's result.

        Raises :class:`TaskAborted` if the task was aborted or revoked,
        ``TimeoutError`` if it is not over in time, ``RuntimeError`` at once
        when the broker has no Results middleware to keep results, and the
        task's failure (``ResultFailure``) unless ``propagate`` is false.
        """
        results = self._results()
        if results is None:
            raise RuntimeError(
                "get() needs the Results middleware on the broker, with store_results=True"
                " for the actor: without it no result is kept"
            )
        limit = None if timeout is None else check_seconds("timeout", timeout)
        state, over = self._inspect()
        if over and state in (ABORTED, REVOKED):
            raise TaskAborted(f"task {self.id!r} was {state.lower()}")
        try:
            return self._get_result(results, limit)
        except ResultFailure as failure:
            if failure.orig_exc_type == "MessageAborted":
                state = self._requested() or ABORTED
                raise TaskAborted(f"task {self.id!r} was {state.lower()}") from None
            if propagate:
                raise
            return failure

    # Internals

    def _results(self) -> Results | None:
        return middleware_of(self._self_broker, Results)

    def _get_result(self, results: Results, limit: float | None) -> Any:
        deadline = None if limit is None else time.monotonic() + limit
        while not self._locate(results):
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"task {self.id!r} has no result after {limit}s")
            time.sleep(_PROBE_INTERVAL)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return self.__wrapped__.get_result(
                backend=results.backend,
                block=True,
                timeout=None if remaining is None else max(1, int(remaining * 1000)),
            )
        except ResultTimeout:
            raise TimeoutError(f"task {self.id!r} has no result after {limit}s") from None

    def _locate(self, results: Results) -> bool:
        """Find the actor of a result rebuilt from an id alone: the one
        under which a result is stored."""
        if self._self_located:
            return True
        for actor in list(self._self_broker.actors.values()):
            candidate = self.__wrapped__._replace(
                queue_name=actor.queue_name, actor_name=actor.actor_name
            )
            try:
                results.backend.get_result(candidate)
            except ResultMissing:
                continue
            except ResultFailure:
                pass
            self.__wrapped__ = candidate
            self._self_located = True
            return True
        return False

    def _inspect(self) -> tuple[str, bool]:
        """The task's state, and whether it is over."""
        results = self._results()
        if results is not None and self._locate(results):
            try:
                results.backend.get_result(self.__wrapped__)
                return SUCCESS, True
            except ResultMissing:
                pass
            except ResultFailure as failure:
                if failure.orig_exc_type != "MessageAborted":
                    return FAILURE, True
                return self._requested() or ABORTED, True
        outcome = self._outcome()
        if outcome in (Outcome.ABORTED, Outcome.CANCELLED):
            return self._requested() or ABORTED, True
        started = STARTED if outcome is Outcome.STARTED else PENDING
        return self._requested() or started, False

    def _requested(self) -> str | None:
        backend = self.abortable.backend
        if backend.poll(event_key(self.id, AbortMode.ABORT)) is not None:
            return ABORTED
        if backend.poll(event_key(self.id, AbortMode.CANCEL)) is not None:
            return REVOKED
        return None

    def _outcome(self) -> Outcome | None:
        try:
            return self.abortable.outcome(self.id)
        except NotImplementedError:
            return None

    def _stopped(self, limit: float | None) -> bool:
        state, over = self._inspect()
        if over:
            return state not in (SUCCESS, FAILURE)
        outcome = self.abortable.wait_outcome(self.id, limit)
        if outcome is None:
            raise TimeoutError(f"no worker said what became of task {self.id!r} within {limit}s")
        return outcome is not Outcome.FINISHED


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

    def abort(self, timeout: float | None = None) -> None:
        """:meth:`AbortableResult.abort` for every task, in one write."""
        grace = math.inf if timeout is None else timeout
        abortable_of(self.broker).abort_many(
            [result.message for result in self.results], abort_timeout=grace
        )

    def revoke(self, terminate: bool = False) -> None:
        """:meth:`AbortableResult.revoke` for every task, in one write."""
        mode = AbortMode.ABORT if terminate else AbortMode.CANCEL
        abortable_of(self.broker).abort_many([result.message for result in self.results], mode=mode)


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
