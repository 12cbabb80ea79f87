"""``app.control``: revoking tasks, and inspecting what every worker process
runs, as Celery's ``app.control`` and ``app.control.inspect()`` do."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
from typing import Any

from ..checks import check_seconds
from ..listing import DELAYED, RUNNING, WAITING, Listing, RunningMessage
from ..middleware import abortable_of
from . import records
from .result import App

__all__ = ["INSPECT_TIMEOUT", "QUERY_STATES", "Control", "Inspect", "Replies", "node_name"]

#: Seconds ``inspect()`` and ``ping()`` wait for the workers' replies, as in Celery.
INSPECT_TIMEOUT = 1.0
#: What Celery's ``query_task`` calls a message in each state of a listing:
#: it counts a message held for its ETA among the reserved ones.
QUERY_STATES = {RUNNING: "active", WAITING: "reserved", DELAYED: "reserved"}

#: A reply per worker process, keyed by its name (see :func:`node_name`).
Replies = dict[str, Any]


def node_name(host: str, pid: int) -> str:
    """The name a worker process answers under: ``host:pid``, as the
    ``WORKER`` column of ``dramatiq-abort list`` shows it. Celery names a
    worker ``celery@host``; here each worker process answers for itself."""
    return f"{host}:{pid}"


class Control:
    """``app.control``: ``revoke``, ``ping`` and ``inspect``."""

    def __init__(self, app: App) -> None:
        self.app = app

    def revoke(
        self,
        task_id: str | Iterable[str],
        destination: Any = None,
        terminate: bool = False,
        signal: Any = None,
        *,
        reason: str | None = None,
    ) -> None:
        """Revoke one task, or each of a list, as
        ``app.AsyncResult(id).revoke(terminate=terminate)``: a task that has
        not started never starts; with ``terminate=True`` a running one is
        aborted now. ``signal`` is accepted and unused: dramatiq raises
        ``Abort`` in the task instead of signalling its process.
        """
        if destination is not None:
            raise TypeError(
                f"destination={destination!r} is not supported: every worker sees an abort"
                " request; leave destination out"
            )
        ids = [task_id] if isinstance(task_id, str) else list(task_id)
        # One write for every id, each checked before it.
        records.revoke_tasks(abortable_of(self.app.broker), ids, terminate, reason)

    def inspect(self, destination: Any = None, timeout: float = INSPECT_TIMEOUT) -> Inspect:
        """What every worker process runs and holds: see :class:`Inspect`."""
        return Inspect(self.app, destination, timeout)

    def ping(self, destination: Any = None, timeout: float = INSPECT_TIMEOUT) -> list[Replies]:
        """``[{name: {"ok": "pong"}}, ...]``, one for each worker process
        that answered within ``timeout`` seconds."""
        replies = Inspect(self.app, destination, timeout).ping() or {}
        return [{name: reply} for name, reply in replies.items()]


class Inspect:
    """``app.control.inspect()``: each call asks every worker process and
    returns ``{name: reply}`` (see :func:`node_name`), or ``None`` when no
    process answered within ``timeout`` seconds, as in Celery.

    Only abortable messages are listed, the ones the ``Abortable``
    middleware knows of (every task of the ``compat`` decorators is). A
    task's ``args`` and ``kwargs`` are one shortened text, as Celery gives
    them with ``safe=True``.

    :param destination: A worker process's name, whose reply alone is then
        returned, or a list of names, which keeps only theirs.
    :param timeout: Longest wait for the replies, in seconds.
    """

    def __init__(self, app: App, destination: Any = None, timeout: float = INSPECT_TIMEOUT) -> None:
        if destination is not None and not isinstance(destination, (str, list, tuple)):
            raise TypeError(
                f"destination must be a worker process's name (host:pid) or a list of them,"
                f" not {destination!r:.100}"
            )
        self.app = app
        self.destination = destination
        self.timeout = check_seconds("timeout", timeout)

    def active(self, safe: bool | None = None) -> Replies | None:
        """The tasks each worker process runs: Celery's task info each."""
        return self._ask(lambda listed: [_info(m) for m in listed if m.state == RUNNING])

    def reserved(self, safe: bool | None = None) -> Replies | None:
        """The tasks each worker process fetched and holds until a thread is free."""
        return self._ask(lambda listed: [_info(m) for m in listed if m.state == WAITING])

    def scheduled(self, safe: bool | None = None) -> Replies | None:
        """The tasks each worker process holds until their ETA: ``eta``
        (ISO 8601, in UTC), ``priority`` and the task info as ``request``."""
        return self._ask(lambda listed: [_scheduled(m) for m in listed if m.state == DELAYED])

    def query_task(self, *ids: Any) -> Replies | None:
        """``{name: {id: [state, info]}}`` for the tasks of ``ids`` that a
        worker process runs (``"active"``) or holds (``"reserved"``)."""
        if len(ids) == 1 and isinstance(ids[0], (list, tuple)):
            ids = tuple(ids[0])
        wanted = {str(task_id) for task_id in ids}
        return self._ask(
            lambda listed: {
                m.message_id: [QUERY_STATES.get(m.state, "reserved"), _info(m)]
                for m in listed
                if m.message_id in wanted
            }
        )

    def ping(self) -> Replies | None:
        """``{name: {"ok": "pong"}}`` for each worker process that answered."""
        return self._ask(lambda listed: {"ok": "pong"})

    def _ask(self, reply: Callable[[list[RunningMessage]], Any]) -> Replies | None:
        listing: Listing = abortable_of(self.app.broker).running_messages(
            args=True, timeout=self.timeout
        )
        by_worker: dict[str, list[RunningMessage]] = {
            node_name(host, pid): [] for host, pid in listing.workers
        }
        for message in listing.messages:
            by_worker.setdefault(node_name(message.host, message.pid), []).append(message)
        replies = {name: reply(listed) for name, listed in by_worker.items()}
        if not replies:
            return None
        if isinstance(self.destination, str):
            return replies.get(self.destination)
        if self.destination is not None:
            return {name: r for name, r in replies.items() if name in self.destination}
        return replies


def _info(message: RunningMessage) -> dict[str, Any]:
    """Celery's task info for ``message``."""
    return {
        "id": message.message_id,
        "name": message.actor,
        "args": message.args,
        "kwargs": "",
        "type": message.actor,
        "hostname": node_name(message.host, message.pid),
        "time_start": message.started_at,
        # dramatiq acknowledges a message once it is processed.
        "acknowledged": False,
        "delivery_info": {
            "exchange": "",
            "routing_key": message.queue,
            "priority": None,
            "redelivered": None,
        },
        "worker_pid": message.pid,
    }


def _scheduled(message: RunningMessage) -> dict[str, Any]:
    eta = None
    if message.eta is not None:
        eta = datetime.datetime.fromtimestamp(message.eta, datetime.timezone.utc)
    return {
        "eta": None if eta is None else eta.isoformat(),
        "priority": None,
        "request": _info(message),
    }
