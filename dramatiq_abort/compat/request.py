"""What a task sees of its own run: Celery's ``self.request``, and the
``einfo`` its failure hooks get."""

from __future__ import annotations

import datetime
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy

from .middleware import HOSTNAME
from .records import format_traceback

__all__ = ["ExceptionInfo", "Request"]


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
