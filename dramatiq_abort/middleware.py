"""The Abortable middleware, and the functions that send and read abort requests."""

from __future__ import annotations

import datetime
import functools
import inspect
import logging
import math
import threading
import time
import uuid
import warnings
from collections.abc import Iterable
from typing import Any, NoReturn, TypeAlias

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.common import q_name
from dramatiq.middleware import Middleware
from dramatiq.middleware.threading import current_platform, supported_platforms

from . import listing, settings
from .backend import Event, EventBackend
from .checks import (
    check_abort_timeout,
    check_marks,
    check_message_id,
    check_milliseconds,
    check_mode,
    check_name,
    check_reason,
    check_seconds,
    check_sent_before,
    shown_url,
)
from .dramatiq_internals import (
    AnyMessage,
    DramatiqInternals,
    message_of,
    middleware_of,
    result_options,
    store_no_result,
    unwrapped,
)
from .errors import ActorOptionError, MessageAborted, MessageOptionError, aborted
from .listing import Listing
from .metrics import AbortMetrics, worker_metrics
from .mode import AbortMode
from .outcome import Outcome
from .settings import UNSET, OrUnset
from .wire import event_key, events_for, key_message_id, rule_event
from .worker import coroutines, lineage
from .worker.execution import Execution
from .worker.executions import Executions
from .worker.lineage import ANCESTRY
from .worker.requests import AbortRequest, AbortRequests, prevailing
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

#: What names a message: its id, the message, or the proxy a worker runs it as.
MessageRef: TypeAlias = "str | AnyMessage"

#: Default milliseconds an abort request stays valid for a message that
#: has not started: as in dramatiq-abort 1.x.
DEFAULT_ABORT_TTL = 90_000

#: Default seconds a booting worker waits for its watcher to reach the
#: backend before it starts taking messages anyway: long enough for a
#: backend that answers, short enough not to hold up a worker whose backend
#: is down (the watcher keeps trying in the background).
BOOT_TIMEOUT = 2.0

#: Default seconds :func:`running_messages` waits for worker processes to
#: answer. It returns as soon as every listening process answered, so this
#: is only waited out when one does not: a watcher waits its turn for the
#: GIL behind the busy threads of its process, over a second beside 20
#: threads that compute in Python (see benchmarks/listing.py).
LISTING_WAIT = 5.0

#: The logger of dramatiq's worker threads, which warns of every skipped message.
WORKER_THREAD_LOGGER = "dramatiq.worker.WorkerThread"


class _OwnSkips(logging.Filter):
    """Drops dramatiq's ``Message ... was skipped.`` warning for the
    messages this package stops: an intended abort is not a warning, and
    :class:`Abortable` logs it once, at INFO.

    dramatiq logs that warning for every ``SkipMessage``, and skipping is
    the only ending that neither retries, dead-letters nor triggers the
    next message of a pipeline. The message being stopped is noted in its
    worker thread just before the skip, so other skips still warn.
    """

    def __init__(self) -> None:
        super().__init__()
        self.skipping = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        skipping = getattr(self.skipping, "message_id", None)
        if skipping is None or record.msg != "Message %s was skipped.":
            return True
        message = record.args[0] if isinstance(record.args, tuple) and record.args else None
        if getattr(message, "message_id", None) != skipping:
            return True
        self.skipping.message_id = None
        return False


_own_skips = _OwnSkips()


#: Set on the function that stands for an actor's own once this middleware
#: wrapped it, so that it is wrapped once.
_WRAPPED_MARK = "_dramatiq_abort_wrapped"


class Abortable(Middleware):
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
        if abortable is None:
            abortable = UNSET
        given = {
            name: value
            for name, value in (
                ("abortable", abortable),
                ("abort_children", abort_children),
                ("abort_ttl", abort_ttl),
                ("boot_timeout", boot_timeout),
                ("metrics", metrics),
            )
            if value is not UNSET
        }
        parameters = settings.check_parameters(given)
        if backend is None:
            configuration = settings.configuration()
            parameters = {**configuration.parameters, **parameters}
            backend = configuration.backend()
        elif not isinstance(backend, EventBackend):
            # A URL given here may hold a password.
            shown = shown_url(backend) if isinstance(backend, str) else f"{backend!r:.100}"
            raise TypeError(
                f"backend must be an EventBackend, such as backends.from_url(url),"
                f" or None to build it from the settings, not {shown}"
            )
        self.logger = logging.getLogger(f"{__name__}.{type(self).__name__}")
        self.backend = backend
        self.abortable: bool = parameters.get("abortable", True)
        self.abort_children: bool = parameters.get("abort_children", False)
        self.abort_ttl: int = parameters.get("abort_ttl", DEFAULT_ABORT_TTL)
        self.boot_timeout: float = parameters.get("boot_timeout", BOOT_TIMEOUT)
        #: Whether workers count metrics: see the ``metrics`` parameter.
        self.count_metrics: bool | None = parameters.get("metrics")
        #: The metrics workers of this process count in, once one booted with them.
        self.metrics: AbortMetrics | None = None
        self.requests = AbortRequests(self.logger)
        self.rules = AbortRules(self.logger)
        #: The names of the actors declared in this process, to warn of a
        #: rule that names none of them.
        self.declared_actors: set[str] = set()
        self.internals = DramatiqInternals()
        self.executions = Executions(self.logger, self.internals)
        self._watcher: Watcher | None = None
        self._workers = 0
        self._boot_lock = threading.Lock()

    @property
    def actor_options(self) -> set[str]:
        return {"abortable", "abort_children"}

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
        abortable = unwrapped(message).options.get("abortable")
        if isinstance(abortable, bool):
            return abortable
        if abortable is not None:
            # Sent by a process without this middleware, which would have refused it.
            self.logger.warning(
                "Message %r has abortable=%.100r, which is neither True nor False:"
                " ignored, the actor's setting applies.",
                message.message_id,
                abortable,
            )
        abortable = actor.options.get("abortable")
        return self.abortable if abortable is None else bool(abortable)

    def passes_aborts_on(self, broker: dramatiq.Broker, execution: Execution) -> bool:
        """Whether an abort of the message of ``execution`` reaches the
        messages it enqueues: the ``abort_children`` option of the message,
        else of its actor, else this middleware's; ``None`` counts as not given."""
        passes = unwrapped(execution.message).options.get("abort_children")
        if isinstance(passes, bool):
            return passes
        actor = broker.actors.get(execution.message.actor_name)
        passes = None if actor is None else actor.options.get("abort_children")
        return self.abort_children if passes is None else bool(passes)

    def before_enqueue(
        self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int
    ) -> None:
        options = message.options
        for name in ("abortable", "abort_children"):
            value = options.get(name)
            if value is not None and not isinstance(value, bool):
                # A MiddlewareError: the broker lets it through, and nothing is enqueued.
                raise MessageOptionError(
                    f"{name} must be True or False, not {value!r:.100}"
                    f" (message {message.message_id!r} of actor {message.actor_name!r})"
                )
        if ANCESTRY in options:
            try:
                lineage.check_ancestry(options[ANCESTRY])
            except ValueError as e:
                raise MessageOptionError(
                    f"{e} (message {message.message_id!r} of actor {message.actor_name!r}):"
                    " leave that option to dramatiq-abort"
                ) from None
        # The message running in the calling thread or coroutine, as for
        # abort_requested(); a retry re-enqueues that very message.
        parent = self.executions.current()
        if (
            parent is not None
            and parent.message_id != message.message_id
            and self.passes_aborts_on(broker, parent)
        ):
            ancestry = lineage.ancestry_of(parent.message_id, parent.ancestors)
            lineage.give_ancestry(options, ancestry, message.message_id)

    def before_declare_actor(
        self, broker: dramatiq.Broker, actor: dramatiq.Actor[Any, Any]
    ) -> None:
        for name in ("abortable", "abort_children"):
            value = actor.options.get(name)
            if value is not None and not isinstance(value, bool):
                raise ActorOptionError(
                    f"actor {actor.actor_name!r} sets {name}={value!r:.100}:"
                    " it must be True or False"
                )
        if actor.options.get("abort_children") and actor.options.get("abortable") is False:
            raise ActorOptionError(
                f"actor {actor.actor_name!r} sets abort_children=True and abortable=False:"
                " only an abortable message passes its abort on; drop one of the two"
            )

    def after_declare_actor(self, broker: dramatiq.Broker, actor: dramatiq.Actor[Any, Any]) -> None:
        self.declared_actors.add(actor.actor_name)
        fn = actor.fn
        if getattr(fn, _WRAPPED_MARK, False):
            return
        # dramatiq runs an ``async def`` actor through a function that wraps it.
        wrapped = getattr(fn, "__wrapped__", None)
        async_fn = wrapped if inspect.iscoroutinefunction(wrapped) else None
        executions = self.executions
        runner = (
            None
            if async_fn is None
            else functools.partial(coroutines.runner, executions, async_fn=async_fn)
        )

        def stopped(execution: Execution, outcome: Outcome) -> NoReturn:
            self._stopped(broker, execution.message, outcome, execution.request)

        abortable_fn = executions.wrap(fn, stopped, runner)
        setattr(abortable_fn, _WRAPPED_MARK, True)
        actor.fn = abortable_fn

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
                self.metrics = worker_metrics(broker, self.count_metrics, self.logger)
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
        logging.getLogger(WORKER_THREAD_LOGGER).addFilter(_own_skips)
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
            # worker's, which passes a MessageProxy (a try costs it nothing).
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
            self._cancel(broker, message, request)
        # One lookup for a message that no abortable parent enqueued.
        ancestry = inner.options.get(ANCESTRY)
        if ancestry is not None:
            self._begin_descendant(broker, message, execution, ancestry)
        # Rules (abort_where): one attribute read while none is in force,
        # after begin() as the table is (see Watcher._record).
        if self.rules.in_force:
            self._cancel_by_rule(broker, message, inner)

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
            self._record_outcome(message, outcome, execution.request)

    def after_skip_message(self, broker: dramatiq.Broker, message: AnyMessage) -> None:
        self.executions.end(message)

    def abort(
        self,
        message_id: MessageRef,
        abort_ttl: int | None = None,
        mode: AbortMode = AbortMode.ABORT,
        abort_timeout: float = 0,
        *,
        reason: str | None = None,
    ) -> None:
        """Send an abort request for ``message_id``; see :func:`abort`."""
        self.abort_many([message_id], abort_ttl, mode, abort_timeout, reason=reason)

    def abort_many(
        self,
        message_ids: Iterable[MessageRef],
        abort_ttl: int | None = None,
        mode: AbortMode = AbortMode.ABORT,
        abort_timeout: float = 0,
        *,
        reason: str | None = None,
        marks: dict[str, bool | int | str] | None = None,
    ) -> None:
        """Send the same abort request for every id of ``message_ids`` in
        one write. Every argument is checked before anything is sent.

        Messages may be given instead of ids: the request then lives at least
        until ``abort_ttl`` after the latest of their ETAs, so that a message
        delayed for longer than the TTL is still cancelled.

        ``marks`` are kept with the request for a layer on top of the
        middleware (compat marks Celery's revoke with them), and read back
        in the request's parameters by ``EventBackend.records()``; workers
        ignore them.
        """
        if isinstance(message_ids, str):
            raise TypeError(f"message_ids must be an iterable of ids, not the str {message_ids!r}")
        try:
            given = list(message_ids)
        except TypeError:
            raise TypeError(
                f"message_ids must be an iterable of ids or messages, not {message_ids!r:.100}"
            ) from None
        ids = [_message_id(m) for m in given]
        mode = check_mode(mode)
        ttl = self._ttl(abort_ttl)
        messages = [m for m in given if isinstance(m, (dramatiq.Message, MessageProxy))]
        etas = [m.options.get("eta", 0) for m in messages]
        if etas:
            ttl += max(0, int(max(etas) - time.time() * 1000))
        timeout = check_abort_timeout(abort_timeout)
        reason = check_reason(reason)
        checked_marks = check_marks(marks)
        if not ids:
            return
        self._send(events_for(ids, mode, timeout, reason, checked_marks), ttl)

    def abort_where(
        self,
        *,
        actor: str | None = None,
        queue: str | None = None,
        sent_before: datetime.datetime | float | None = None,
        mode: AbortMode = AbortMode.ABORT,
        abort_timeout: float = 0,
        abort_ttl: int | None = None,
        reason: str | None = None,
    ) -> str:
        """Record a rule that stops the messages of ``actor`` and of
        ``queue`` sent before ``sent_before``; see :func:`abort_where`.
        Returns the rule's id."""
        actor = check_name("actor", actor)
        queue = check_name("queue", queue)
        if actor is None and queue is None:
            raise ValueError(
                "abort_where needs actor or queue (or both): it would stop every message"
            )
        now = time.time()
        before = check_sent_before(sent_before, now)
        mode = check_mode(mode)
        timeout = check_abort_timeout(abort_timeout)
        ttl = self._ttl(abort_ttl)
        reason = check_reason(reason)
        if not self.backend.pushes:
            raise NotImplementedError(
                f"{type(self.backend).__name__} does not push events: workers would never learn"
                " of a rule; use a backend that pushes, such as RedisBackend"
            )
        if actor is not None and self.declared_actors and actor not in self.declared_actors:
            self.logger.warning(
                "The abort rule names actor %r, which matches no actor declared in this"
                " process: it is recorded anyway, for workers that may declare it.",
                actor,
            )
        rule_id = uuid.uuid4().hex
        event = rule_event(
            rule_id,
            actor=actor,
            queue=None if queue is None else q_name(queue),
            sent_before=int(before * 1000),
            mode=mode,
            abort_timeout=timeout,
            reason=reason,
        )
        self._send([event], ttl)
        return rule_id

    def wait_outcome(self, message_id: MessageRef, timeout: float | None = None) -> Outcome | None:
        """Wait up to ``timeout`` seconds (``None`` or ``math.inf``: for ever)
        for a worker to report what became of ``message_id`` (an id or the
        message) after an abort request reached it; ``None`` if no worker
        did in time.

        :raises NotImplementedError: at once, with a backend that does not
            record outcomes (see ``EventBackend.records_outcomes``).
        """
        message_id = _message_id(message_id)
        seconds = check_seconds("timeout", timeout, forever=True)
        if not self.backend.records_outcomes:
            raise NotImplementedError(
                f"{type(self.backend).__name__} does not record outcomes: nothing to wait for"
            )
        outcome = self.backend.wait_outcome(message_id, seconds)
        return None if outcome is None else Outcome(outcome)

    def outcome(self, message_id: MessageRef) -> Outcome | None:
        """What workers last reported of ``message_id``, without waiting;
        always ``None`` with a backend that does not record outcomes."""
        message_id = _message_id(message_id)
        return self.wait_outcome(message_id, 0) if self.backend.records_outcomes else None

    def running_messages(
        self,
        *,
        actor: str | None = None,
        queue: str | None = None,
        sent_before: float | datetime.datetime | None = None,
        args: bool = False,
        timeout: float = LISTING_WAIT,
    ) -> Listing:
        """Ask every worker process which abortable messages it runs; see
        :func:`running_messages`."""
        inquiry = listing.check_inquiry(actor, queue, sent_before, args)
        seconds = check_seconds("timeout", timeout)
        if not seconds:
            raise ValueError(f"timeout must be greater than 0 seconds, not {timeout!r}")
        backend = self.backend
        if not (backend.pushes and backend.carries_answers):
            raise NotImplementedError(
                f"{type(backend).__name__} cannot ask workers what they run: that needs a"
                " backend that pushes events and carries answers, such as RedisBackend"
            )
        return listing.ask(backend, inquiry, seconds)

    def outcome_reason(self, message_id: MessageRef) -> str | None:
        """The reason of the abort request or rule that stopped ``message_id``
        (an id or the message), recorded with its outcome; ``None`` when it
        had none, no outcome is recorded, or the backend does not record
        reasons (see ``EventBackend.records_reasons``)."""
        message_id = _message_id(message_id)
        if not (self.backend.records_outcomes and self.backend.records_reasons):
            return None
        return self.backend.outcome_reason(message_id)

    def get_abort_request(self, message_id: MessageRef | None = None) -> float | None:
        """Milliseconds until ``message_id`` (default: the current message)
        is interrupted, or ``None`` when no abort is requested."""
        if message_id is None:
            # Called in tight loops: the thread's slot first, with no
            # Python frame; then an asyncio task's execution.
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
        else:
            request = self.requests.get(_message_id(message_id))
        if request is None or not request.interrupts:
            return None
        return max(0.0, (request.abort_at - time.monotonic()) * 1000)

    def _held(self, broker: dramatiq.Broker) -> list[tuple[bool, MessageProxy]]:
        """The abortable messages that the workers of this process fetched
        and have not started, as :meth:`DramatiqInternals.held` gives them."""
        held = []
        for delayed, message in self.internals.held():
            actor = broker.actors.get(message.actor_name)
            if actor is not None and self.is_abortable(actor, message):
                held.append((delayed, message))
        return held

    def _send(self, events: list[Event], ttl: int) -> None:
        """Record ``events`` in the backend for ``ttl`` milliseconds."""
        self.backend.notify(events, ttl=ttl)
        # Read-your-writes in this process: once the call returns, the
        # messages running here see what it sent.
        watcher = self._watcher
        if watcher is not None:
            watcher.catch_up()

    def _ttl(self, abort_ttl: object) -> int:
        """The checked ``abort_ttl`` of a request or rule; the middleware's when ``None``."""
        if abort_ttl is None:
            return self.abort_ttl
        return check_milliseconds("abort_ttl", abort_ttl, positive=True)

    def _cancel(
        self, broker: dramatiq.Broker, message: AnyMessage, request: AbortRequest
    ) -> NoReturn:
        """Stop ``message``, which has begun but not started: it leaves its
        slot at once, whoever calls the hooks, and ends as cancelled."""
        self.executions.end(message)
        if request.expires_at == math.inf:
            # Kept past its TTL while the process held the message, which leaves.
            self.requests.forget_left(message)
        self._stopped(broker, message, Outcome.CANCELLED, request)

    def _begin_descendant(
        self, broker: dramatiq.Broker, message: AnyMessage, execution: Execution, ancestry: object
    ) -> None:
        """Index ``execution`` under its ``ancestry`` (the option its message
        carries), then cancel it if an abort of one of them is in force."""
        try:
            ancestors = lineage.check_ancestry(ancestry)
        except ValueError as e:
            # Sent by a process without this middleware, which would have refused it.
            self.logger.warning(
                "Message %r has a bad ancestry, ignored: no abort of another message reaches it"
                " (%s).",
                message.message_id,
                e,
            )
            return
        # Indexed before the table is read, as begin() registers it.
        self.executions.descend(execution, ancestors)
        watcher = self._watcher
        if watcher is not None:
            watcher.synchronise_ancestors(ancestors)
        found: AbortRequest | None = None
        for ancestor in ancestors:
            request = self.requests.get(ancestor)
            if request is not None:
                found = prevailing(found, request)
        if found is not None:
            self._cancel(broker, message, found.for_descendant(execution.message_id))

    def _cancel_by_rule(
        self, broker: dramatiq.Broker, message: AnyMessage, inner: dramatiq.Message[Any]
    ) -> None:
        """Cancel ``message`` if a rule in force stops it. A method of its
        own: the lines it holds would cost every message even unrun."""
        rule = self.rules.match(inner)
        if rule is not None:
            self._cancel(broker, message, rule.request_for(inner.message_id))

    def _stopped(
        self,
        broker: dramatiq.Broker,
        message: AnyMessage,
        outcome: Outcome,
        request: AbortRequest | None,
    ) -> NoReturn:
        """End ``message`` as ``outcome`` says, because of ``request``:
        skipped, with its result (if stored) a :class:`MessageAborted`
        failure that carries the request's reason."""
        reason = None if request is None else request.reason
        ancestor = None if request is None else request.ancestor
        because = "" if ancestor is None else f" with its ancestor {ancestor!r}"
        if reason is None:
            self.logger.info("Message %r was %s%s.", message.message_id, outcome.value, because)
        else:
            # repr: a reason cannot break the one line into several.
            self.logger.info(
                "Message %r was %s%s (reason: %r).",
                message.message_id,
                outcome.value,
                because,
                reason,
            )
        _own_skips.skipping.message_id = message.message_id
        error = MessageAborted(aborted(message.message_id, outcome.value, reason), reason=reason)
        results, store, ttl = result_options(broker, message)
        if store:
            try:
                results.backend.store_exception(message, error, ttl)
            except Exception as e:
                self.logger.error(
                    "Failed to store the result of aborted message %r (%s: %.200s).",
                    message.message_id,
                    type(e).__name__,
                    e,
                )
                self.logger.debug("Storing the result failed with:", exc_info=e)
            # Results stores None for skipped messages, which would hide the failure.
            store_no_result(message)
        self._record_outcome(message, outcome, request)
        raise error

    def _record_outcome(
        self, message: AnyMessage, outcome: Outcome, request: AbortRequest | None
    ) -> None:
        # Only messages an abort request reached get here: no cost per message.
        if self.metrics is not None:
            self.metrics.ended(message.actor_name, outcome, request)
        reason = None if request is None else request.reason
        backend = self.backend
        if not backend.records_outcomes:
            return
        try:
            if backend.records_reasons:
                backend.record_outcome(
                    message.message_id, outcome.value, self.abort_ttl, reason=reason
                )
            else:
                backend.record_outcome(message.message_id, outcome.value, self.abort_ttl)
        except Exception as e:
            self.logger.warning(
                "Failed to record that message %r was %s (%s: %.200s).",
                message.message_id,
                outcome.value,
                type(e).__name__,
                e,
            )
            self.logger.debug("Recording the outcome failed with:", exc_info=e)


_default: tuple[dramatiq.Broker, Abortable] | None = None


def _message_id(message: object) -> str:
    """The checked id of ``message``: an id, a dramatiq message, or the
    proxy of one that a worker runs (``CurrentMessage.get_current_message()``)."""
    if isinstance(message, (dramatiq.Message, MessageProxy)):
        message = message.message_id
    return check_message_id(message)


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
