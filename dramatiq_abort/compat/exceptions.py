"""The exceptions of Celery's API that tasks raise and callers catch."""

from __future__ import annotations

import builtins

import dramatiq
from dramatiq.middleware import TimeLimitExceeded


class TaskRevokedError(Exception):
    """``get()`` on a task that was revoked: it never ran, so it has no result."""


class TaskAborted(TaskRevokedError):
    """``get()`` on a task that was aborted or revoked before it returned:
    it has no result."""


class TimeoutError(builtins.TimeoutError):
    """``get()`` or ``abort(wait=True)`` gave up waiting. It is also the
    built-in ``TimeoutError``."""


class Ignore(Exception):
    """Raised by a task to end without a result: the state it last reported stays."""


class Retry(dramatiq.Retry):
    """Raised by ``self.retry()``: the task runs again after the delay."""

    def __init__(self, message: str = "", exc: BaseException | None = None, when: float = 0):
        super().__init__(message, delay=int(when * 1000))
        #: The exception that caused the retry, if any.
        self.exc = exc
        #: Seconds until the task runs again.
        self.when = when


class MaxRetriesExceededError(Exception):
    """``self.retry()`` was called once more than ``max_retries`` allows."""


#: Celery's soft and hard time limits are one here: dramatiq's
#: ``TimeLimitExceeded``, raised in the task once the smaller of the
#: ``time_limit`` and ``soft_time_limit`` given to ``shared_task`` or
#: ``apply_async`` runs out, so ``except SoftTimeLimitExceeded:`` cleans up
#: as in Celery. It derives from ``BaseException``: ``except Exception:``
#: does not catch it.
SoftTimeLimitExceeded = TimeLimitExceeded

__all__ = [
    "Ignore",
    "MaxRetriesExceededError",
    "Retry",
    "SoftTimeLimitExceeded",
    "TaskAborted",
    "TaskRevokedError",
    "TimeLimitExceeded",
    "TimeoutError",
]
