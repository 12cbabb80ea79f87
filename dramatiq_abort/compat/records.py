"""A task's Celery state as it is kept: one JSON record per task, in the
abort backend, beside the task's abort requests."""

from __future__ import annotations

import datetime
import json
import logging
import sys
import traceback
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from ..backend import Event
from ..checks import check_bool
from ..mode import AbortMode

if TYPE_CHECKING:
    from ..middleware import Abortable

__all__ = [
    "REVOKE_MARKS",
    "TaskRecord",
    "decode",
    "encode",
    "failure_meta",
    "format_traceback",
    "is_revoke",
    "rebuild_exception",
    "revoke_tasks",
]

logger = logging.getLogger(__name__)

#: Kept with the request that a revoke sends, so that its task reads
#: ``REVOKED``, as in Celery, rather than ``ABORTED``.
REVOKE_MARKS: dict[str, bool | int | str] = {"revoked": True}


def revoke_tasks(
    abortable: Abortable, tasks: Iterable[Any], terminate: object, reason: str | None
) -> None:
    """Celery's revoke of ``tasks`` (ids or messages), in one write: a
    task that has not started never starts; with ``terminate``, a running
    one is aborted now."""
    mode = AbortMode.ABORT if check_bool("terminate", terminate) else AbortMode.CANCEL
    abortable.abort_many(tasks, mode=mode, reason=reason, marks=REVOKE_MARKS)


def is_revoke(request: Event | None) -> bool:
    """Whether ``request``, an abort event read back, was sent by a revoke."""
    return request is not None and all(
        request.params.get(name) == value for name, value in REVOKE_MARKS.items()
    )


class TaskRecord(NamedTuple):
    """What was last recorded of a task."""

    #: A state of :mod:`~dramatiq_abort.compat.states`, or one of the task's own.
    state: str
    #: What ``update_state()`` was given; for a failure, the exception's
    #: ``exc_type``, ``exc_module`` and ``exc_message``.
    meta: Any = None
    #: Whether the task is over: no later record will come.
    ended: bool = False
    #: The actor and queue that ran it: where its result is stored.
    actor: str | None = None
    queue: str | None = None
    #: Whether the Results middleware stored its result.
    stored: bool = False
    #: When it ended, in seconds since the epoch.
    date_done: float | None = None
    #: The formatted traceback of a failure.
    traceback: str | None = None

    @property
    def done_at(self) -> datetime.datetime | None:
        """:attr:`date_done` as an aware UTC datetime."""
        if self.date_done is None:
            return None
        return datetime.datetime.fromtimestamp(self.date_done, datetime.timezone.utc)


def encode(record: TaskRecord) -> str:
    """``record`` as stored; ``TypeError`` naming the meta if JSON cannot hold it."""
    try:
        return json.dumps(record._asdict(), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"meta must be JSON-serialisable (dicts, lists, str, numbers, bools, None),"
            f" not {record.meta!r}: {e}"
        ) from None


def decode(text: str | None) -> TaskRecord | None:
    """The record stored as ``text``; a malformed one is logged and ignored."""
    if text is None:
        return None
    try:
        fields = json.loads(text)
        record = TaskRecord(**fields)
        if not isinstance(record.state, str):
            raise TypeError(f"state {record.state!r}")
    except (ValueError, TypeError) as e:
        logger.warning("Ignoring a malformed task record (%s): %.200r", e, text)
        return None
    return record


def failure_meta(exception: BaseException) -> dict[str, str]:
    """How a record describes ``exception``."""
    kind = type(exception)
    return {
        "exc_type": kind.__name__,
        "exc_module": kind.__module__,
        "exc_message": str(exception),
    }


def format_traceback(exception: BaseException) -> str:
    return "".join(traceback.format_exception(type(exception), exception, exception.__traceback__))


#: Exception classes rebuilt by name, so that ``get()`` raises the same
#: ``ValueError`` the task raised, as Celery does.
_rebuilt: dict[tuple[str, str], type[Exception]] = {}


def rebuild_exception(meta: Any) -> Exception:
    """An exception like the one :func:`failure_meta` described: of its own
    class when this process has it, else of a class made with its name."""
    if not isinstance(meta, dict):
        return Exception(str(meta))
    name = str(meta.get("exc_type") or "Exception")
    module = str(meta.get("exc_module") or "builtins")
    message = str(meta.get("exc_message", ""))
    # Only from a module this process has imported already: a record must
    # not make it import anything.
    kind: Any = getattr(sys.modules.get(module), name, None)
    if not (isinstance(kind, type) and issubclass(kind, Exception)):
        kind = _rebuilt.get((module, name))
        if kind is None:
            kind = type(name, (Exception,), {"__module__": module})
            _rebuilt[(module, name)] = kind
    try:
        return kind(message)  # type: ignore[no-any-return]
    except Exception:
        return Exception(f"{name}: {message}")
