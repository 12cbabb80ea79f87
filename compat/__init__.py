"""Celery's ``celery.contrib.abortable`` API on dramatiq.

``AbortableActor`` plays ``AbortableTask`` and ``AbortableResult`` plays
``AbortableAsyncResult``, both on the events of the ``dramatiq_abort``
middleware: the cooperative ``is_aborted()`` and the forced ``Abort`` are
one mechanism. Celery itself is not needed.
"""

from .actor import AbortableActor, Request
from .result import (
    ABORTED,
    FAILURE,
    PENDING,
    REVOKED,
    STARTED,
    SUCCESS,
    AbortableGroupResult,
    AbortableResult,
    TaskAborted,
)

#: Celery's names, for imports that only change their module.
AbortableTask = AbortableActor
AbortableAsyncResult = AbortableResult

__all__ = [
    "ABORTED",
    "FAILURE",
    "PENDING",
    "REVOKED",
    "STARTED",
    "SUCCESS",
    "AbortableActor",
    "AbortableAsyncResult",
    "AbortableGroupResult",
    "AbortableResult",
    "AbortableTask",
    "Request",
    "TaskAborted",
]
