"""Celery's task states (``celery.states``), with ``ABORTED``.

A state is a plain ``str``; :class:`state` compares them by precedence, as
Celery does. Tasks may report states of their own (``"PROGRESS"``) with
``update_state()``.
"""

from __future__ import annotations

__all__ = [
    "ABORTED",
    "ALL_STATES",
    "EXCEPTION_STATES",
    "FAILURE",
    "IGNORED",
    "PENDING",
    "PRECEDENCE",
    "PROPAGATE_STATES",
    "READY_STATES",
    "RECEIVED",
    "REJECTED",
    "RETRY",
    "REVOKED",
    "STARTED",
    "SUCCESS",
    "UNREADY_STATES",
    "precedence",
    "state",
]

#: Nothing is known of the task yet: it is queued, delayed, or unknown.
PENDING = "PENDING"
#: Only in Celery's events; never reported here.
RECEIVED = "RECEIVED"
#: The task started: recorded for actors declared with ``track_started=True``.
STARTED = "STARTED"
#: The task returned; its return value is the result.
SUCCESS = "SUCCESS"
#: The task raised; the exception is the result.
FAILURE = "FAILURE"
#: The task was cancelled before it started (``revoke()``).
REVOKED = "REVOKED"
#: Only in Celery's events; never reported here.
REJECTED = "REJECTED"
#: The task raised ``self.retry()`` and waits to run again.
RETRY = "RETRY"
#: Celery's state for an ignored task; here ``Ignore`` keeps the last state.
IGNORED = "IGNORED"
#: An abort was requested and the task has not ended since, or it ended aborted.
ABORTED = "ABORTED"

READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
UNREADY_STATES = frozenset({PENDING, RECEIVED, STARTED, REJECTED, RETRY})
EXCEPTION_STATES = frozenset({RETRY, FAILURE, REVOKED})
PROPAGATE_STATES = frozenset({FAILURE, REVOKED})
ALL_STATES = frozenset({PENDING, RECEIVED, STARTED, SUCCESS, FAILURE, RETRY, REVOKED})

#: Celery's precedence of states, highest first; ``None`` stands for any
#: state of a task's own.
PRECEDENCE = [SUCCESS, FAILURE, None, REVOKED, STARTED, RECEIVED, REJECTED, RETRY, PENDING]
_RANK = {name: rank for rank, name in enumerate(PRECEDENCE)}


def precedence(state: str) -> int:
    """The rank of ``state`` in :data:`PRECEDENCE`: lower ranks come first."""
    return _RANK.get(state, _RANK[None])


class state(str):
    """A state that compares with others by precedence: ``state(SUCCESS) > STARTED``."""

    def __gt__(self, other: str) -> bool:
        return precedence(self) < precedence(other)

    def __ge__(self, other: str) -> bool:
        return precedence(self) <= precedence(other)

    def __lt__(self, other: str) -> bool:
        return precedence(self) > precedence(other)

    def __le__(self, other: str) -> bool:
        return precedence(self) >= precedence(other)
