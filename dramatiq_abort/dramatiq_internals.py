"""The only code that reads or changes dramatiq's private state.

An abort must be the only exception raised in a message: not one more
after a time limit or a shutdown notification, nor one of those after it.
That takes the timers of ``TimeLimit`` and the notifications of
``ShutdownNotifications``, which dramatiq keeps private. Storing an
aborted message's failure takes the options of ``Results``, reading a
message at full speed the message inside dramatiq's ``MessageProxy``, and
showing abort metrics beside those of ``Prometheus`` the directory where
its worker processes keep them. Listing the messages a worker has fetched
but not started takes its work queue and its consumers' delay queues.

:meth:`DramatiqInternals.check` says, at worker boot, which of these is
not shaped as expected; each then degrades as its docstring says.
"""

from __future__ import annotations

import operator
import os
import sys
from collections.abc import Callable
from queue import PriorityQueue
from typing import Any, TypeVar, Union

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import ShutdownNotifications, TimeLimit
from dramatiq.results import Results

__all__ = [
    "PROMETHEUS_MODULE",
    "AnyMessage",
    "DramatiqInternals",
    "delete_result",
    "middleware_of",
    "prometheus_dir",
    "result_options",
    "store_no_result",
    "unwrapped",
]

M = TypeVar("M", bound=dramatiq.Middleware)


def middleware_of(broker: dramatiq.Broker, kind: type[M]) -> M | None:
    """The first middleware of ``kind`` on ``broker``, if it has one."""
    return next((m for m in broker.middleware if isinstance(m, kind)), None)


#: The module of dramatiq's ``Prometheus`` middleware. It creates its
#: directory as it is imported, so it is only looked up once imported.
PROMETHEUS_MODULE = "dramatiq.middleware.prometheus"


def prometheus_dir(broker: dramatiq.Broker) -> tuple[str | None, str | None]:
    """Where the worker processes of ``broker`` keep the metrics that
    dramatiq's ``Prometheus`` middleware exposes, and what is not as
    expected, in a phrase; called at worker boot.

    ``Prometheus`` sets ``PROMETHEUS_MULTIPROC_DIR`` to its ``DB_PATH``
    when the process boots, and its exposition server sums every process's
    files there. ``(None, None)`` when ``broker`` has no ``Prometheus``;
    ``(None, phrase)`` when it has one that did not set that up.
    """
    module = sys.modules.get(PROMETHEUS_MODULE)
    prometheus = getattr(module, "Prometheus", None)
    if not isinstance(prometheus, type) or middleware_of(broker, prometheus) is None:
        return None, None
    path = getattr(module, "DB_PATH", None)
    if not isinstance(path, str):
        return None, f"{PROMETHEUS_MODULE} has no 'DB_PATH'"
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") != path:
        return None, f"Prometheus did not set PROMETHEUS_MULTIPROC_DIR to {path!r} at process boot"
    return path, None


def _wraps_message() -> bool:
    probe = MessageProxy(dramatiq.Message("probe", "probe", (), {}, {}))
    return isinstance(vars(probe).get("_message"), dramatiq.Message)


#: Whether a ``MessageProxy`` keeps its message in ``_message``.
_WRAPS_MESSAGE = _wraps_message()

#: What the middleware's hooks take: the ``MessageProxy`` a worker runs,
#: or the plain ``Message`` that the callers of dramatiq-abort 1.x pass.
AnyMessage = Union[MessageProxy, "dramatiq.Message[Any]"]

#: The message inside a ``MessageProxy``, whose attributes read at the cost
#: of a plain read where the proxy forwards each through ``__getattr__``;
#: the proxy itself when dramatiq no longer wraps messages so. Raises
#: ``AttributeError`` on a plain ``Message``: see :func:`unwrapped`.
message_of: Callable[[AnyMessage], Any] = (
    operator.attrgetter("_message") if _WRAPS_MESSAGE else lambda proxy: proxy
)


def unwrapped(message: AnyMessage) -> Any:
    """The message that ``message`` is or wraps, as :data:`message_of`
    reads it, for the calls off the hot path (see :data:`AnyMessage`)."""
    try:
        return message_of(message)
    except AttributeError:
        return message


class DramatiqInternals:
    """dramatiq's private state on one broker, for the worker processes of
    this middleware: which time limit and shutdown notification may still
    be raised in a message, and the options of ``Results``.

    Every method is safe to call when dramatiq is not shaped as expected:
    claims then succeed (an abort may follow a time limit, as without this
    module) and options fall back to dramatiq's documented defaults.
    """

    def __init__(self) -> None:
        self._time_limits: Any = None
        self._shutdown: Any = None
        #: Set once the worker shuts down: the threads that asked for a
        #: shutdown notification have been sent one.
        self.stopping = False
        #: The workers of this process whose queues :meth:`held` reads.
        self._workers: set[dramatiq.Worker] = set()

    def bind(self, broker: dramatiq.Broker) -> list[str]:
        """Read the managers of ``broker``'s ``TimeLimit`` and
        ``ShutdownNotifications``; return what is not as expected, one
        phrase each (empty when all is)."""
        self.stopping = False
        problems = []
        time_limit = middleware_of(broker, TimeLimit)
        self._time_limits = getattr(time_limit, "manager", None)
        if time_limit is not None and not (
            (_has(self._time_limits, "deadlines", dict) and _has(self._time_limits, "mu"))
            or _has(self._time_limits, "timers", dict)
        ):
            problems.append("TimeLimit.manager has neither 'deadlines' and 'mu' nor 'timers'")
            self._time_limits = None
        shutdown = middleware_of(broker, ShutdownNotifications)
        self._shutdown = getattr(shutdown, "manager", None)
        if shutdown is not None and not (
            _has(self._shutdown, "notifications", set)
            or _has(self._shutdown, "notification_greenlets", set)
        ):
            problems.append(
                "ShutdownNotifications.manager has neither 'notifications'"
                " nor 'notification_greenlets'"
            )
            self._shutdown = None
        results = middleware_of(broker, Results)
        if results is not None and not (
            hasattr(results, "store_results") and hasattr(results, "result_ttl")
        ):
            problems.append("Results has no 'store_results' or 'result_ttl'")
        if not _WRAPS_MESSAGE:
            problems.append("MessageProxy keeps no '_message'")
        return problems

    def add_worker(self, worker: dramatiq.Worker) -> list[str]:
        """Read the messages ``worker`` holds in :meth:`held` from now on;
        return what is not as expected, one phrase each (empty when all is)."""
        queues = [getattr(worker, "work_queue", None)]
        consumers = getattr(worker, "consumers", None)
        if not isinstance(consumers, dict):
            return ["Worker has no 'consumers' dict"]
        queues += [getattr(consumer, "delay_queue", None) for consumer in consumers.values()]
        if not all(_is_queue(queue) for queue in queues):
            return ["Worker.work_queue or a consumer's delay_queue is not a PriorityQueue"]
        self._workers.add(worker)
        return []

    def remove_worker(self, worker: dramatiq.Worker) -> None:
        """Stop reading the messages of ``worker``, which shuts down."""
        self._workers.discard(worker)

    def held(self) -> list[tuple[bool, MessageProxy]]:
        """The messages that the workers of this process have fetched and
        not started: each with whether it is delayed (held until its ETA)
        rather than waiting for a free thread. A snapshot: a message may
        start, or its ETA come, as it is read."""
        held = []
        for worker in list(self._workers):
            queues = [(False, worker.work_queue)]
            queues += [(True, consumer.delay_queue) for consumer in list(worker.consumers.values())]
            for delayed, queue in queues:
                if not _is_queue(queue):
                    continue
                with queue.mutex:
                    items = list(queue.queue)
                held += [(delayed, item.message) for item in items if hasattr(item, "message")]
        return held

    def claim_thread(self, thread_id: int) -> bool:
        """Take the thread ``thread_id`` off dramatiq's time limits and
        shutdown notifications, so that an Abort is the only exception
        raised in its message; ``False`` when one of them was raised already.

        Called by the watcher while the message runs in that thread (or
        waits there for its coroutine).
        """
        manager = self._time_limits
        if manager is not None and hasattr(manager, "deadlines"):
            with manager.mu:
                deadlines = manager.deadlines
                if thread_id in deadlines:
                    if deadlines[thread_id] is None:
                        return False  # fired, or already claimed
                    deadlines[thread_id] = None
        notifications = getattr(self._shutdown, "notifications", None)
        if notifications is not None:
            if self.stopping and thread_id in notifications:
                return False
            notifications.discard(thread_id)
        return True

    def claim_greenlet(self, thread_id: int, greenlet: Any) -> bool:
        """:meth:`claim_thread` for gevent, where each message runs in a
        greenlet: called in gevent's hub, while no greenlet runs."""
        timers = getattr(self._time_limits, "timers", None)
        if timers is not None:
            timer = timers.pop(thread_id, None)
            if timer is None:
                # TimeLimit times every message: a timer gone while the
                # message runs has fired.
                return False
            timer.close()
        notified = getattr(self._shutdown, "notification_greenlets", None)
        if notified is not None:
            if self.stopping and (thread_id, greenlet) in notified:
                return False
            notified.discard((thread_id, greenlet))
        return True


def result_options(broker: dramatiq.Broker, message: AnyMessage | None) -> tuple[Any, bool, int]:
    """``broker``'s ``Results`` middleware (or ``None``), whether it stores
    the result of ``message``, and for how many milliseconds: the message's
    option, else its actor's, else the middleware's, as ``Results`` decides.
    With no ``message``, the middleware's defaults."""
    results = middleware_of(broker, Results)
    if results is None:
        return None, False, 0
    store = getattr(results, "store_results", False)
    ttl = getattr(results, "result_ttl", 0)
    if message is not None:
        actor = broker.actors.get(message.actor_name)
        if actor is not None:
            store = actor.options.get("store_results", store)
            ttl = actor.options.get("result_ttl", ttl)
        store = message.options.get("store_results", store)
        ttl = message.options.get("result_ttl", ttl)
    return results, bool(store), ttl


def store_no_result(message: AnyMessage) -> None:
    """Stop ``Results`` from storing what ``message`` ends with: ``None``
    once it is skipped (over a failure stored for it already), or the
    ``None`` an ignored task returns."""
    message.options["store_results"] = False


def delete_result(backend: Any, message: dramatiq.Message[Any]) -> None:
    """Drop the result stored for ``message`` in a Results ``backend``.

    dramatiq's backends have no call for it: this knows how the Redis and
    stub backends keep results, and raises ``NotImplementedError`` for others.
    """
    from dramatiq.results.backends import RedisBackend, StubBackend

    key = backend.build_message_key(message)
    if isinstance(backend, RedisBackend):
        backend.client.delete(key)
    elif isinstance(backend, StubBackend):
        backend.results.pop(key, None)
    else:
        raise NotImplementedError(f"cannot forget results kept by {type(backend).__name__}")


def _is_queue(queue: object) -> bool:
    return isinstance(queue, PriorityQueue) and isinstance(getattr(queue, "queue", None), list)


def _has(manager: Any, name: str, kind: type[Any] | None = None) -> bool:
    value = getattr(manager, name, None)
    if kind is None:
        return value is not None
    return isinstance(value, kind)
