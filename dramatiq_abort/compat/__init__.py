"""Celery's abortable tasks, and the ``Task``/``AsyncResult`` API around them,
on dramatiq.

``AbortableTask`` plays Celery's ``AbortableTask`` (and ``Task``),
``AbortableAsyncResult`` its ``AbortableAsyncResult`` (and ``AsyncResult``),
both on the events of the ``dramatiq_abort`` middleware: the cooperative
``is_aborted()`` and the forced ``Abort`` are one mechanism. Task states
live beside the abort requests, kept by the :class:`TaskStates`
middleware. ``Celery`` plays Celery's app: it builds the dramatiq broker,
with that middleware, from Celery's URLs. Celery itself is not needed.

The same API is importable as ``compat`` (Celery's module names with
``celery`` replaced) and as ``dramatiq_abort.compat``, a name no project
module can shadow.
"""

from . import states
from .app import Celery
from .decorators import shared_task
from .exceptions import (
    Ignore,
    MaxRetriesExceededError,
    Retry,
    TaskAborted,
    TaskRevokedError,
    TimeoutError,
)
from .middleware import TaskStates
from .request import Request
from .result import AbortableGroupResult, AbortableResult
from .states import ABORTED, FAILURE, PENDING, RETRY, REVOKED, STARTED, SUCCESS
from .task import AbortableActor, BoundTask, send_task

#: Celery's names, for imports that only change their module.
AbortableTask = AbortableActor
Task = AbortableActor
AbortableAsyncResult = AbortableResult
AsyncResult = AbortableResult

__all__ = [
    "ABORTED",
    "FAILURE",
    "PENDING",
    "RETRY",
    "REVOKED",
    "STARTED",
    "SUCCESS",
    "AbortableActor",
    "AbortableAsyncResult",
    "AbortableGroupResult",
    "AbortableResult",
    "AbortableTask",
    "AsyncResult",
    "BoundTask",
    "Celery",
    "Ignore",
    "MaxRetriesExceededError",
    "Request",
    "Retry",
    "Task",
    "TaskAborted",
    "TaskRevokedError",
    "TaskStates",
    "TimeoutError",
    "send_task",
    "shared_task",
    "states",
]
