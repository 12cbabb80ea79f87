"""The Abortable middleware, and the functions that send and read abort requests."""

from __future__ import annotations

import datetime
import functools
import logging
import threading
import warnings
from collections.abc import Iterable
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware
from dramatiq.middleware.threading import current_platform, supported_platforms

from . import settings
from .backend import EventBackend
from .dramatiq_internals import (
    AnyMessage,
    DramatiqInternals,
    message_of,
    middleware_of,
)
from .endings import Endings, own_skips
from .listing import Listing
from .metrics import AbortMetrics, worker_metrics
from .mode import AbortMode
from .options import (
    OPTIONS,
    check_actor_options,
    check_message_options,
    is_abortable,
    passes_aborts_on,
)
from .outcome import Outcome
from .sending import LISTING_WAIT, MessageRef, Sender, message_id_of, time_left
from .settings import UNSET, OrUnset
from .wire import event_key, key_message_id
from .worker import lineage
from .worker.executions import Executions
from .worker.lineage import ANCESTRY
from .worker.requests import AbortRequests
from .worker.rules import AbortRules
from .worker.watcher import Watcher

__all__ = [
    "AbortMode",
    "Abortable",
    "abort",
    "abort_many",
    "abort_requested",
    "abort_where",
    "abortable_of",
    "middleware_of",
    "running_messages",
    "wait_outcome",
]

#: Default milliseconds an abort request stays valid for a message that
#: has not started: as in dramatiq-abort 1.x.
DEFAULT_ABORT_TTL = 90_000

#: Default seconds a booting worker waits for its watcher to reach the
#: backend before it starts taking messages anyway: long enough for a
#: backend that answers, short enough not to hold up a worker whose backend
#: is down (the watcher keeps trying in the background).
BOOT_TIMEOUT = 2.0

#: The logger of dramatiq's worker threads, which warns of every skipped message.
WORKER_THREAD_LOGGER = "dramatiq.worker.WorkerThread"


class Abortable(Sender, Middleware):
    """Middleware that cancels aborted messages before they start and
    interrupts them while they run.

    Each worker process holds one push channel to the backend (one Redis
    subscription with :class:`~dramatiq_abort.backends.RedisBackend`), so
    an abort reaches a running message within milliseconds and starting
    a message costs no round trip.

    It adds the ``abortable`` and ``abort_children`` actor and message
    options; the value given to ``send_with_options`` wins over the
    actor's, which wins over this middleware's default.

    Note: a running message is interrupted by an exception set in its
    thread, which is raised the next time the thread runs Python code: a
    blocking system call finishes first.

    With no ``backend``, it is configured as :mod:`dramatiq_abort.settings`
    says: by Django's ``DRAMATIQ_ABORT`` setting, else the environment
    variable ``DRAMATIQ_ABORT_URL``, else the Redis of django_dramatiq's
    RedisBroker; so django_dramatiq can build it from its dotted path. The
    parameters given win over the setting's; a parameter neither gives
    takes its default. With a ``backend``, nothing is read.

    :param backend: Where abort requests are recorded and pushed from.
    :param abortable: Whether actors are abortable unless they say
        otherwise; by default, ``True``. ``None`` counts as not given, as
        it does in the ``abortable`` option of actors and messages.
    :param abort_children: Whether an abort of a message reaches, unless its
        actor says otherwise, the messages it enqueues while it runs (in its
        worker thread or its coroutine), the later steps of the pipelines and
        the callbacks of the groups it starts, and theirs in turn, down to
        ``lineage.MAX_DEPTH`` generations. Only an abortable message passes
        its abort on. By default, ``False``.
    :param abort_ttl: Default milliseconds an abort request stays valid for
        messages that have not started yet; by default, :data:`DEFAULT_ABORT_TTL`.
    :param boot_timeout: Longest a booting worker waits, in seconds, for
        this process's watcher to reach the backend; after it the worker
        takes messages anyway, with a warning, and the watcher keeps trying.
        By default, :data:`BOOT_TIMEOUT`.
    :param metrics: Whether workers count Prometheus metrics of aborts
        (see :mod:`dramatiq_abort.metrics`): ``None``, the default, when the
        broker has dramatiq's ``Prometheus`` middleware, which then exposes
        them with its own; ``True``, in any case, in prometheus_client's default
        registry when the broker has no ``Prometheus``; ``False``, never.
        ``True`` raises ``ImportError`` when prometheus_client is not installed.
    :raises TypeError, ValueError: on a bad parameter or setting, naming it;
        ``TypeError`` when there is no ``backend`` and nothing configures one.
    """

    def __init__(
        self,
        *,
        backend: EventBackend | None = None,
        abortable: OrUnset[bool | None] = UNSET,
        abort_children: OrUnset[bool] = UNSET,
        abort_ttl: OrUnset[int] = UNSET,
        boot_timeout: OrUnset[float] = UNSET,
        metrics: OrUnset[bool | None] = UNSET,
    ) -> None:
        backend, parameters = settings.resolve(
            backend,
            {
                "abortable": UNSET if abortable is None else abortable,
                "abort_children": abort_children,
                "abort_ttl": abort_ttl,
                "boot_timeout": boot_timeout,
                "metrics": metrics,
            },
        )
        super().__init__(
            backend,
            parameters.get("abort_ttl", DEFAULT_ABORT_TTL),
            logging.getLogger(f"{__name__}.{type(self).__name__}"),
        )
        self.abortable: bool = parameters.get("abortable", True)
        self.abort_children: bool = parameters.get("abort_children", False)
        self.boot_timeout: float = parameters.get("boot_timeout", BOOT_TIMEOUT)
        #: Whether workers count metrics: see the ``metrics`` parameter.
        self.count_metrics: bool | None = parameters.get("metrics")
        self.requests = AbortRequests(self.logger)
        self.rules = AbortRules(self.logger)
        self.internals = DramatiqInternals()
        self.executions = Executions(self.logger, self.internals)
        self._watcher: Watcher | None = None
        self._workers = 0
        self._boot_lock = threading.Lock()
        #: How the messages an abort request reached end.
        self.endings = Endings(self, self.executions, self.requests, self.rules, self.logger)

    @property
    def metrics(self) -> AbortMetrics | None:
        """The metrics workers of this process count in, once one booted with them."""
        return self.endings.metrics

    @property
    def actor_options(self) -> set[str]:
        return set(OPTIONS)

    @staticmethod
    def id_to_key(message_id: str, mode: AbortMode = AbortMode.ABORT) -> str:
        """The key under which the backend holds the ``mode`` request for
        ``message_id``, as in dramatiq-abort 1.x: ``backend.poll(key)``
        returns the request while it is in force."""
        return event_key(message_id, mode)

    @staticmethod
    def key_to_id(key: str) -> str:
        """The message id in ``key``, a key that :meth:`id_to_key` made."""
        return key_message_id(key)

    def is_abortable(self, actor: dramatiq.Actor[Any, Any], message: AnyMessage) -> bool:
        """Whether ``message`` of ``actor`` may be aborted: its
        ``abortable`` option, else its actor's, else this middleware's
        default; an option of ``None`` counts as not given.

        :param message: The ``MessageProxy`` a worker runs, or a plain ``Message``.
        """
        return is_abortable(actor, message, self.abortable, self.logger)

    def before_enqueue(
        self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int
    ) -> None:
        check_message_options(message)
        # The message running in the calling thread or coroutine, as for
        # abort_requested(); a retry re-enqueues that very message.
        parent = self.executions.current()
        if (
            parent is not None
            and parent.message_id != message.message_id
            and passes_aborts_on(broker, parent, self.abort_children)
        ):
            ancestry = lineage.ancestry_of(parent.message_id, parent.ancestors)
            lineage.give_ancestry(message.options, ancestry, message.message_id)

    def before_declare_actor(
        self, broker: dramatiq.Broker, actor: dramatiq.Actor[Any, Any]
    ) -> None:
        check_actor_options(actor)

    def after_declare_actor(self, broker: dramatiq.Broker, actor: dramatiq.Actor[Any, Any]) -> None:
        self.declared_actors.add(actor.actor_name)
        self.endings.wrap(broker, actor)

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if current_platform not in supported_platforms:  # pragma: no cover
            warnings.warn(
                f"Abortable cannot interrupt threads on {current_platform}.",
                RuntimeWarning,
                stacklevel=2,
            )
        problems = self.internals.bind(broker) + self.internals.add_worker(worker)
        if problems:
            self.logger.warning(
                "dramatiq %s is not shaped as dramatiq-abort expects: %s. An abort may then"
                " raise in a message after its time limit or shutdown notification did.",
                dramatiq.__version__,
                "; ".join(problems),
            )
        with self._boot_lock:
            self._workers += 1
            if self._watcher is None:
                self.endings.metrics = worker_metrics(broker, self.count_metrics, self.logger)
                self._watcher = Watcher(
                    self.backend,
                    self.requests,
                    self.executions,
                    self.logger,
                    abort_ttl=self.abort_ttl,
                    metrics=self.metrics,
                    rules=self.rules,
                    held=functools.partial(self._held, broker),
                    actors=self.declared_actors,
                )
                self._watcher.start()
            watcher = self._watcher
        logging.getLogger(WORKER_THREAD_LOGGER).addFilter(own_skips)
        if watcher.pushes and not watcher.connected.wait(self.boot_timeout):
            self.logger.warning(
                "The abort watcher could not reach its backend within %g s (boot_timeout):"
                " the worker takes messages meanwhile, and the watcher keeps trying.",
                self.boot_timeout,
            )

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # ShutdownNotifications, earlier in the list, has just raised Shutdown
        # in the threads that asked for it: no Abort may follow it there.
        self.internals.stopping = True

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.internals.remove_worker(worker)
        with self._boot_lock:
            self._workers -= 1
            if self._workers > 0 or self._watcher is None:
                return
            watcher, self._watcher = self._watcher, None
        watcher.stop(timeout=5)
        # The messages it held went back to their queues: another worker
        # that fetches one finds no request past its TTL.
        self.requests.forget_kept()

    def before_process_message(self, broker: dramatiq.Broker, message: AnyMessage) -> None:
        # The hot path: every message of every actor comes here.
        try:
            inner = message_of(message)
        except AttributeError:
            # A plain Message, as dramatiq-abort 1.x's callers pass: not a
            # worker's, which passes a MessageProxy (a try costs it nothing from
            # Python 3.11, one instruction before).
            inner = message
        actor = broker.actors.get(inner.actor_name)
        if actor is None:
            return  # The worker fails the message right after.
        # Most messages leave the option to their actor, and most actors to
        # this middleware: no call for them. The call settles the rest: a
        # message's option, or an actor's of None (as 1.x's callers give it).
        abortable = (
            actor.options.get("abortable", self.abortable)
            if inner.options.get("abortable") is None
            else None
        )
        if not abortable and (abortable is False or not self.is_abortable(actor, message)):
            return
        message_id = inner.message_id
        # Registered before the table is read (see Executions): a request
        # recorded after the read finds the message in its slot.
        execution = self.executions.begin(message, message_id)
        # The probe before the flag (see Watcher.in_flight). With no watcher
        # (no worker booted), the table stays empty.
        watcher = self._watcher
        if watcher is not None and (watcher.in_flight() or watcher.receiving):
            watcher.synchronise(message_id)
        requests = self.requests
        if requests.held(message_id) is not None and (request := requests.get(message_id)):
            self.endings.cancel(broker, message, request)
        # One lookup for a message that no abortable parent enqueued.
        ancestry = inner.options.get(ANCESTRY)
        if ancestry is not None:
            self.endings.cancel_descendant(broker, message, execution, ancestry, watcher)
        # Rules (abort_where): one attribute read while none is in force,
        # after begin() as the table is (see Watcher._record).
        if self.rules.in_force:
            self.endings.cancel_by_rule(broker, message, inner)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: AnyMessage,
        *,
        result: Any | None = None,
        exception: BaseException | None = None,
    ) -> None:
        execution = self.executions.end(message)
        if execution is not None and execution.request is not None:
            outcome = Outcome.STOPPED if execution.told else Outcome.FINISHED
            self.endings.record_outcome(message, outcome, execution.request)

    def after_skip_message(self, broker: dramatiq.Broker, message: AnyMessage) -> None:
        self.executions.end(message)

    def get_abort_request(self, message_id: MessageRef | None = None) -> float | None:
        """See :func:`abort_requested`."""
        if message_id is not None:
            return time_left(self.requests.get(message_id_of(message_id)))
        # Called in tight loops: the thread's slot first, with no Python
        # frame; then an asyncio task's execution.
        executions = self.executions
        execution = executions.registered(executions.ident()) or executions.adopted()
        if execution is None:
            return None
        request = execution.request
        if request is None:
            # A request the watcher recorded but has not handed over yet.
            if self.requests.held(execution.message_id) is None:
                return None
            request = self.requests.get(execution.message_id)
        if request is not None and request.interrupts:
            execution.note_told()
        return time_left(request)

    def _held(self, broker: dramatiq.Broker) -> list[tuple[bool, MessageProxy]]:
        """The abortable messages that the workers of this process fetched
        and have not started, as :meth:`DramatiqInternals.held` gives them."""
        held = []
        for delayed, message in self.internals.held():
            actor = broker.actors.get(message.actor_name)
            if actor is not None and self.is_abortable(actor, message):
                held.append((delayed, message))
        return held

    def sent(self) -> None:
        """Hand the watcher of this process, if a worker booted one, what
        this process just sent: read-your-writes for the messages it runs."""
        watcher = self._watcher
        if watcher is not None:
            watcher.catch_up()


_default: tuple[dramatiq.Broker, Abortable] | None = None


def resolve(middleware: object) -> Abortable:
    """``middleware`` when it is an :class:`Abortable`, the default one when
    it is ``None``; else a ``TypeError`` that says what was probably meant."""
    if middleware is None:
        return default_abortable()
    if isinstance(middleware, Abortable):
        return middleware
    hint = ""
    if isinstance(middleware, (AbortMode, str, int, float)) and not isinstance(middleware, bool):
        hint = ": pass abort_ttl, mode and abort_timeout by keyword, e.g. mode=AbortMode.CANCEL"
    raise TypeError(f"middleware must be an Abortable or None, not {middleware!r:.100}{hint}")


def abortable_of(broker: dramatiq.Broker) -> Abortable:
    """The :class:`Abortable` middleware of ``broker``; ``RuntimeError`` if it has none."""
    middleware: Abortable | None = middleware_of(broker, Abortable)
    if middleware is None:
        raise RuntimeError(
            f"The broker {broker!r} has no Abortable middleware: add one with"
            " broker.add_middleware(Abortable(backend=...)), or pass middleware=."
        )
    return middleware


def default_abortable() -> Abortable:
    """The :class:`Abortable` of ``dramatiq.get_broker()``, looked up once per broker."""
    global _default
    broker = dramatiq.get_broker()
    if _default is None or _default[0] is not broker:
        _default = (broker, abortable_of(broker))
    return _default[1]


def abort(
    message_id: MessageRef,
    middleware: Abortable | None = None,
    abort_ttl: int | None = None,
    mode: AbortMode = AbortMode.ABORT,
    abort_timeout: float = 0,
    *,
    reason: str | None = None,
) -> None:
    """Abort a pending or running message given its ``message_id``.

    The request is recorded in the backend before this returns: a message
    that has not started by the time a worker learns of it never starts.

    :param message_id: The ``message_id`` of the message, as returned by
        ``actor.send`` or ``actor.send_with_options``, or that message itself:
        then a request for a delayed message lives until ``abort_ttl`` after
        its ETA.
    :param middleware: The :class:`Abortable` to send through; ``None``
        uses the one on ``dramatiq.get_broker()`` and raises
        :class:`RuntimeError` when that broker has none.
    :param abort_ttl: Milliseconds the request stays valid for a message
        that has not started; ``None`` uses the middleware's ``abort_ttl``.
    :param mode: ``AbortMode.CANCEL`` stops the message only if it has not
        started; ``AbortMode.ABORT`` also interrupts it while it runs.
    :param abort_timeout: With ``AbortMode.ABORT``, milliseconds a running
        message is given to finish, during which :func:`abort_requested`
        returns the time left, before it is interrupted. ``math.inf`` asks
        it to stop and never interrupts it.
    :param reason: Why the message is stopped, such as who asked: a
        non-empty text of at most 1,000 characters, stripped. The worker
        logs it, and the message's :class:`Abort`, its ``MessageAborted``
        result and its recorded outcome (see ``Abortable.outcome_reason``)
        carry it.
    :raises TypeError, ValueError: on a bad argument; nothing is sent.
    """
    resolve(middleware).abort(message_id, abort_ttl, mode, abort_timeout, reason=reason)


def abort_many(
    message_ids: Iterable[MessageRef],
    middleware: Abortable | None = None,
    abort_ttl: int | None = None,
    mode: AbortMode = AbortMode.ABORT,
    abort_timeout: float = 0,
    *,
    reason: str | None = None,
) -> None:
    """:func:`abort` for every message of ``message_ids`` (ids or messages),
    in one write to the backend. Every argument is checked first: on a bad
    one, nothing is sent."""
    resolve(middleware).abort_many(message_ids, abort_ttl, mode, abort_timeout, reason=reason)


def abort_where(
    *,
    actor: str | None = None,
    queue: str | None = None,
    sent_before: datetime.datetime | float | None = None,
    mode: AbortMode = AbortMode.ABORT,
    abort_timeout: float = 0,
    abort_ttl: int | None = None,
    reason: str | None = None,
    middleware: Abortable | None = None,
) -> str:
    """Stop every message of ``actor`` and of ``queue`` (those given) sent
    before ``sent_before``, on every worker: a rule recorded in the backend
    for ``abort_ttl``, which workers check as each message starts. Returns
    the rule's id.

    A matching message that has not started is cancelled whatever ``mode``,
    including one queued or delayed that no worker has fetched yet; with
    ``AbortMode.ABORT``, a running one is interrupted after
    ``abort_timeout``, as with :func:`abort`. A message sent after
    ``sent_before`` is never touched.

    :param actor: The name of the actor whose messages stop. A name that no
        actor declared in this process has is recorded anyway, with a warning.
    :param queue: The queue whose messages stop; a delayed message (on
        ``queue + ".DQ"``) matches too. At least one of ``actor`` and
        ``queue`` is required.
    :param sent_before: A ``datetime`` (with no time zone: local time) or
        seconds since the epoch, not in the future; ``None`` means now. It
        is compared with the time the sender of each message stamped on it.
    :param abort_ttl: Milliseconds the rule stays in force; ``None`` uses
        the middleware's ``abort_ttl``.
    :param mode, abort_timeout, reason, middleware: As in :func:`abort`.
    :raises TypeError, ValueError: on a bad argument; nothing is recorded.
    :raises NotImplementedError: at once, with a backend that does not push
        events (see ``EventBackend.pushes``): its workers could not learn of it.
    """
    return resolve(middleware).abort_where(
        actor=actor,
        queue=queue,
        sent_before=sent_before,
        mode=mode,
        abort_timeout=abort_timeout,
        abort_ttl=abort_ttl,
        reason=reason,
    )


def wait_outcome(
    message_id: MessageRef,
    timeout: float | None = None,
    middleware: Abortable | None = None,
) -> Outcome | None:
    """Wait up to ``timeout`` seconds (``None``: for ever) for a worker to
    report what became of a message after an abort request reached it:
    ``Outcome.CANCELLED``, ``ABORTED``, ``STOPPED`` or ``FINISHED``;
    ``None`` if no worker did in time.

    :param message_id: The message's id, or the message itself.
    :param middleware: As in :func:`abort`.
    """
    return resolve(middleware).wait_outcome(message_id, timeout)


def abort_requested(
    message_id: MessageRef | None = None,
    middleware: Abortable | None = None,
) -> float | None:
    """Milliseconds until the current message (or ``message_id``) is
    interrupted, or ``None`` if no abort is requested.

    A local lookup: no round trip, safe to call in a tight loop.

    :param message_id: Ask about this message (its id or the message)
        instead of the current one.
    :param middleware: As in :func:`abort`.
    """
    return resolve(middleware).get_abort_request(message_id)


def running_messages(
    *,
    actor: str | None = None,
    queue: str | None = None,
    sent_before: float | datetime.datetime | None = None,
    args: bool = False,
    timeout: float = LISTING_WAIT,
    middleware: Abortable | None = None,
) -> Listing:
    """Ask every worker process which abortable messages it runs now, and
    which it has fetched and holds to run (see ``RunningMessage.state``).

    The question goes out over the backend's push channel and each worker
    process's watcher answers from memory: nothing is recorded per message
    to make this possible. Returns once every worker process known to
    listen answered, or after ``timeout``. A worker that did not answer in
    time is missing from the listing, not counted as running nothing:
    compare ``Listing.answered`` with ``Listing.expected``.

    :param actor: Only messages of the actor of this name.
    :param queue: Only messages of this queue.
    :param sent_before: Only messages sent before this moment, as in
        :func:`abort_where`: a ``datetime`` (with no time zone: local time)
        or seconds since the epoch.
    :param args: Whether to list each message's arguments, shortened.
    :param timeout: Longest wait for answers, in seconds (more than 0).
    :param middleware: As in :func:`abort`.
    :raises TypeError, ValueError: on a bad argument; nothing is sent.
    :raises NotImplementedError: at once, with a backend that cannot carry
        answers (see ``EventBackend.carries_answers``).
    """
    return resolve(middleware).running_messages(
        actor=actor, queue=queue, sent_before=sent_before, args=args, timeout=timeout
    )
