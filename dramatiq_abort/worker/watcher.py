"""The watcher: the one thread per worker process that learns of abort
requests and delivers them to the messages running here."""

from __future__ import annotations

import contextlib
import functools
import heapq
import logging
import os
import random
import select
import selectors
import threading
import time
from collections.abc import Callable, Collection, Iterable

from dramatiq.broker import MessageProxy

from .. import nogil
from ..backend import EventBackend, Subscription, TimedEvent
from ..metrics import AbortMetrics
from ..mode import AbortMode
from ..wire import event_key, is_inquiry, is_rule, parse_inquiry
from .answerer import Answerer
from .execution import Execution
from .executions import Executions
from .lineage import ANCESTRY, check_ancestry
from .requests import AbortRequest, AbortRequests
from .rules import AbortRule, AbortRules

#: Longest wait between two attempts to reach a backend that fails.
MAX_BACKOFF = 30.0
#: How long a worker thread waits for events already on their way before
#: it starts a message anyway.
SYNC_TIMEOUT = 0.1
#: How long a polling backend is asked to wait for an event, in ms.
POLL_WAIT = 1000
#: Seconds the watcher lets expired requests wait before it forgets them.
FORGET_DELAY = 1.0
#: Seconds between two warnings that the backend could not be polled.
POLL_WARNING_INTERVAL = 10
#: Seconds between two looks for the messages gone from the process that
#: requests were kept for past their TTL.
LEFT_CHECK_INTERVAL = 1.0


#: :attr:`Watcher.in_flight` while no subscription is live: a C call that
#: always says events may be on their way.
_ALWAYS: Callable[[], int] = functools.partial(int, 1)


def backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` failures in a row: exponential, jittered."""
    return min(MAX_BACKOFF, 0.05 * 2.0 ** min(failures, 16)) * random.uniform(0.5, 1.0)


class Watcher(threading.Thread):
    """Learns every abort request and rule sent to the backend and
    interrupts the messages of this process they target; answers the
    inquiries of which messages run here, from what it holds in memory.

    With a backend that pushes, the watcher holds one subscription and
    sends no command while nothing is aborted; it catches up on recorded
    requests each time it (re)connects. With a backend that can only be
    polled, it waits on the keys of the messages running here.
    """

    def __init__(
        self,
        backend: EventBackend,
        requests: AbortRequests,
        executions: Executions,
        logger: logging.Logger,
        *,
        abort_ttl: int,
        rules: AbortRules,
        metrics: AbortMetrics | None = None,
        held: Callable[[], list[tuple[bool, MessageProxy]]] = list,
        actors: Collection[str] = (),
    ) -> None:
        super().__init__(name="dramatiq-abort-watcher", daemon=True)
        self.backend = backend
        self.requests = requests
        self.rules = rules
        self.executions = executions
        self.logger = logger
        self.abort_ttl = abort_ttl
        #: Where the requests received are counted, if anywhere.
        self.metrics = metrics
        #: The messages this process fetched and has not started, each with
        #: whether it is delayed: listed in answers beside the running ones,
        #: and kept from the expiry of the requests and rules that stop them.
        self.held = held
        #: Set while the watcher is subscribed and caught up.
        self.connected = threading.Event()
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._changed = threading.Condition()
        #: True while the watcher drains the subscription and records what
        #: it read; written under ``_changed``.
        self.receiving = False
        #: Nonzero when events may be on their way to this process: a
        #: message about to start must then call :meth:`synchronise`. While
        #: subscribed, the bare call of the subscription's probe (a C call
        #: with no Python frame, for the path every message takes: nonzero
        #: also on an error), to be read before :attr:`receiving`; else
        #: always nonzero.
        self.in_flight: Callable[[], int] = _ALWAYS
        #: While connected and caught up: the subscription, and the probe
        #: that tells whether events wait on it.
        self._live: tuple[Subscription, nogil.ReadinessProbe] | None = None
        self._poll_warnings_muted_until = 0.0
        #: Whether the backend pushes events; if not, the watcher polls it.
        self.pushes = backend.pushes
        #: Graceful aborts of running messages: (abort_at, message_id).
        self._deadlines: list[tuple[float, str]] = []
        #: Answers inquiries of which messages run here, and of which
        #: actors (``actors``, those this process declares) it runs.
        self.answerer = Answerer(requests, actors)
        #: The reply addresses of the inquiries answered, with when each
        #: inquiry expires: catching up after a reconnect finds an inquiry
        #: that may have been answered already, and an asker that counts a
        #: second answer as another process would stop waiting too soon.
        self._answered: dict[str, float] = {}
        #: ``time.monotonic()`` of the next look for messages gone from the
        #: process, while requests are kept for some.
        self._left_check_at = 0.0

    def stop(self, timeout: float | None = None) -> None:
        """Stop the watcher and release its subscription."""
        self._stopping = True
        os.write(self._wake_w, b"x")
        self.join(timeout)
        if not self.is_alive():
            os.close(self._wake_r)
            os.close(self._wake_w)

    def synchronise(self, message_id: str) -> None:
        """Called by a worker thread before ``message_id`` starts, when
        :attr:`in_flight` or :attr:`receiving` says events may be on their
        way: wait for them (see :meth:`catch_up`), so that an abort sent
        before a message is fetched is never missed. While no push channel
        is live, ask the backend instead."""
        live = self._live
        if live is None:
            # No push channel, or it is down and the watcher catches up only
            # once it reconnects: ask the backend.
            self._poll_cancel(message_id)
        else:
            self._wait_received(live)

    def synchronise_ancestors(self, ancestors: tuple[str, ...]) -> None:
        """:meth:`synchronise` for the ``ancestors`` of a message about to
        start, once its execution is indexed under them. Waiting for the
        events on their way was done for the message itself; while no push
        channel is live, the backend is asked about each ancestor."""
        if self._live is None:
            for ancestor in ancestors:
                self._poll_cancel(ancestor)

    def _poll_cancel(self, message_id: str) -> None:
        try:
            event = self.backend.poll(event_key(message_id, AbortMode.CANCEL))
        except Exception as e:
            # Once per message would flood the log while the backend is down.
            now = time.monotonic()
            if now >= self._poll_warnings_muted_until:
                self._poll_warnings_muted_until = now + POLL_WARNING_INTERVAL
                self.logger.warning(
                    "Could not ask the backend whether message %r was aborted; it starts "
                    "anyway (%s: %s). Further failures are not logged for %d s.",
                    message_id,
                    type(e).__name__,
                    e,
                    POLL_WARNING_INTERVAL,
                )
            return
        if event is not None:
            # Called by a worker thread about to start the message: recorded
            # only, the thread finds it as it starts.
            self._record_requests(
                [TimedEvent(event, self.abort_ttl, self.abort_ttl)], time.monotonic()
            )

    def catch_up(self) -> None:
        """Wait (at most ``SYNC_TIMEOUT``) until the watcher has recorded the
        events already pushed to it. The common case costs one ``poll(2)``.
        """
        live = self._live
        if live is not None and (self.in_flight() or self.receiving):
            self._wait_received(live)

    def _wait_received(self, live: tuple[Subscription, nogil.ReadinessProbe]) -> None:
        # Called when in_flight or the flag showed events on their way,
        # read in that order: the watcher raises the flag before it drains
        # the socket, and lowers it once what it read is recorded, so an
        # event the probe no longer sees is recorded, or the flag is up.
        # Here, under the lock the flag is written under, the probe says
        # exactly whether any wait.
        deadline = time.monotonic() + SYNC_TIMEOUT
        with self._changed:
            while _in_flight(live[1]) or self.receiving:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or live is not self._live:
                    break
                self._changed.wait(remaining)

    def run(self) -> None:
        if not self.pushes:
            self._poll_forever()
            return
        failures = 0
        while not self._stopping:
            try:
                subscription = self.backend.subscribe()
                try:
                    probe = subscription.probe()
                    self._answer_all(self._record(subscription.recorded()))
                    if failures:
                        self.logger.info(
                            "Abort watcher reached its backend again after %d failed attempt(s).",
                            failures,
                        )
                    failures = 0
                    self._live = (subscription, probe)
                    self.in_flight = probe.ready_count
                    self.connected.set()
                    self._listen(subscription)
                finally:
                    self.in_flight = _ALWAYS
                    self._live = None
                    self.connected.clear()
                    subscription.close()
            except Exception as e:
                failures += 1
                delay = backoff(failures)
                self._log_failure("reach", failures, e, delay)
                self._back_off(delay)

    def _log_failure(self, what: str, failures: int, error: Exception, delay: float) -> None:
        """One line per failed attempt; the traceback only at DEBUG, where it
        does not drown the log while the backend stays down."""
        self.logger.warning(
            "Abort watcher cannot %s its backend (attempt %d, %s: %.200s); retrying in %.2f s.",
            what,
            failures,
            type(error).__name__,
            error,
            delay,
        )
        self.logger.debug("Attempt %d failed with:", failures, exc_info=error)

    def _listen(self, subscription: Subscription) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(subscription.fileno(), selectors.EVENT_READ, "events")
            selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            while not self._stopping:
                for key, _ in selector.select(self._until_next_deadline()):
                    if key.data == "events":
                        self._receive(subscription)
                    else:
                        self._drain_wake()
                self._deliver_due()
                self._expire(time.monotonic())

    def _expire(self, now: float) -> None:
        """Forget the requests and rules past their expiry, once the
        requests for messages this process holds are kept (see
        :meth:`_keep_for_held`); put the switch interval back when due."""
        requests, rules = self.requests.ending(now), self.rules.ending(now)
        if requests or rules:
            self._keep_for_held(requests, rules)
        if self.requests.kept and now >= self._left_check_at:
            self._left_check_at = now + LEFT_CHECK_INTERVAL
            self.requests.forget_left()
        self.requests.forget_expired(now)
        self.rules.forget_expired(now)
        self.executions.switching.expire(now)

    def _keep_for_held(self, requests: list[AbortRequest], rules: list[AbortRule]) -> None:
        """Keep in force, until they start or leave the process, the
        ``requests`` and ``rules`` whose TTL ends, for the messages waiting
        here for a thread that they stop: the message of a request, its
        descendants, those a rule matches. A delayed message is not kept
        for: at its ETA it goes back to its queue, and leaves the process."""
        by_message = {request.message_id: request for request in requests}
        for delayed, message in self.held():
            if delayed:
                continue
            message_id = message.message_id
            request = by_message.get(message_id)
            if request is not None:
                self.requests.keep(request, message)
            ancestry = message.options.get(ANCESTRY) if by_message else None
            if ancestry is not None:
                try:
                    ancestors = check_ancestry(ancestry)
                except ValueError:
                    ancestors = ()  # Warned of as it starts: no abort reaches it.
                for ancestor in ancestors:
                    if (request := by_message.get(ancestor)) is not None:
                        self.requests.keep(request.for_descendant(message_id), message)
            rule = next((rule for rule in rules if rule.matches(message)), None)
            if rule is not None:
                self.requests.keep(rule.request_for(message_id), message)

    def _record_requests(self, events: list[TimedEvent], now: float) -> list[AbortRequest]:
        """Record the requests of ``events`` in the table, and count what
        they added; the requests now in force for their messages."""
        # What was in force before, for the metrics, which count what a batch adds.
        before: dict[str, AbortRequest | None] = {}
        requests = [
            request
            for timed in events
            if (request := self.requests.record(timed, now, before)) is not None
        ]
        if requests and self.metrics is not None:
            self.metrics.received(requests, before)
        return requests

    def _receive(self, subscription: Subscription) -> None:
        inquiries: list[TimedEvent] = []
        with self._changed:
            self.receiving = True
        try:
            inquiries = self._record(subscription.receive())
        finally:
            with self._changed:
                self.receiving = False
                self._changed.notify_all()
        self._answer_all(inquiries)

    def _answer_all(self, inquiries: list[TimedEvent]) -> None:
        # Answered once the requests that came with them are delivered, so
        # that the answer shows them, and once ``receiving`` is down: the
        # messages that start meanwhile do not wait on the round trip.
        for timed in inquiries:
            self._answer(timed)

    def _poll_forever(self) -> None:
        failures = 0
        while not self._stopping:
            self._expire(time.monotonic())
            try:
                # The ancestors too: their abort reaches their descendants here.
                running = self.executions.running_ids() + self.executions.ancestor_ids()
                if not running:
                    self._sleep(POLL_WAIT / 1000)
                    continue
                keys = [event_key(message_id, AbortMode.ABORT) for message_id in running]
                event = self.backend.wait_many(keys, POLL_WAIT)
                if event is not None:
                    self._record([TimedEvent(event, self.abort_ttl, self.abort_ttl)])
                self._deliver_due()
                if failures:
                    self.logger.info(
                        "Abort watcher polled its backend again after %d failed attempt(s).",
                        failures,
                    )
                    failures = 0
            except Exception as e:
                failures += 1
                delay = max(POLL_WAIT / 1000, backoff(failures))
                self._log_failure("poll", failures, e, delay)
                self._back_off(delay)

    def _record(self, events: Iterable[TimedEvent]) -> list[TimedEvent]:
        """Record and deliver the requests and rules of ``events``; return
        its inquiries, which the caller answers (see :meth:`_answer`)."""
        now = time.monotonic()
        request_events: list[TimedEvent] = []
        rule_events: list[TimedEvent] = []
        inquiries: list[TimedEvent] = []
        for timed in events:
            if is_rule(timed.event):
                rule_events.append(timed)
            elif is_inquiry(timed.event):
                inquiries.append(timed)
            else:
                request_events.append(timed)
        requests = self._record_requests(request_events, now)
        rules = self.rules.record(rule_events, now) if rule_events else []
        # Looked up only once every request and rule is recorded: a message
        # that registers after this finds them as it starts.
        if requests:
            ids = [request.message_id for request in requests]
            running = self.executions.find(ids)
            descendants = self.executions.descendants(ids)
            for request in requests:
                for execution in running.get(request.message_id, ()):
                    self._deliver(execution, request, now)
                for execution in descendants.get(request.message_id, ()):
                    self._deliver(execution, request.for_descendant(execution.message_id), now)
        if rules:
            for execution in self.executions.running():
                rule = next((rule for rule in rules if rule.matches(execution.message)), None)
                if rule is not None:
                    self._deliver(execution, rule.request_for(execution.message_id), now)
        return inquiries

    def _answer(self, timed: TimedEvent) -> None:
        """Tell the asker which messages run here; a failure is logged,
        and the asker counts this process as not answering."""
        try:
            inquiry = parse_inquiry(timed.event)
            now = time.monotonic()
            self._answered = {
                reply_to: expires for reply_to, expires in self._answered.items() if expires > now
            }
            if inquiry.reply_to in self._answered:
                return
            # Held before running: a message that starts between the two
            # reads is in both, and listed once, rather than in neither.
            held = self.held()
            payload = self.answerer.answer(inquiry, self.executions.running(), held)
            self.backend.answer(inquiry.reply_to, payload, max(1, timed.ttl_left))
            self._answered[inquiry.reply_to] = now + timed.ttl_left / 1000
        except Exception as e:
            self.logger.warning(
                "Abort watcher could not answer inquiry %.100r (%s: %.200s).",
                timed.event.key,
                type(e).__name__,
                e,
            )
            self.logger.debug("Answering failed with:", exc_info=e)

    def _deliver(self, execution: Execution, request: AbortRequest, now: float) -> None:
        if self.executions.deliver(execution, request, now):
            heapq.heappush(self._deadlines, (request.abort_at, request.message_id))

    def _deliver_due(self) -> None:
        now = time.monotonic()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, message_id = heapq.heappop(self._deadlines)
            self.executions.deliver_due(message_id, now)

    def _until_next_deadline(self) -> float | None:
        """Seconds until the watcher has something to do without an event:
        a grace that runs out, a TTL that ends, requests to forget, a
        switch interval to put back."""
        moments = []
        if self._deadlines:
            moments.append(self._deadlines[0][0])
        switching_expires_at = self.executions.switching.expires_at
        if switching_expires_at is not None:
            moments.append(switching_expires_at)
        # On time: a request may have to be kept before its grace runs out.
        for look in (self.requests.next_look(), self.rules.next_look()):
            if look is not None:
                moments.append(look)
        if self.requests.kept:
            moments.append(self._left_check_at)
        for expiry in (self.requests.next_expiry(), self.rules.next_expiry()):
            if expiry is not None:
                # Late on purpose, so that requests expiring together are
                # forgotten in one wake-up.
                moments.append(expiry + FORGET_DELAY)
        if not moments:
            return None
        return max(0.0, min(moments) - time.monotonic())

    def _back_off(self, seconds: float) -> None:
        """Wait ``seconds`` before the next attempt to reach the backend,
        doing meanwhile what needs none: the requests it already delivered
        force their messages when their grace runs out, and those whose TTL
        ends are kept for the messages this process holds."""
        until = time.monotonic() + seconds
        while not self._stopping:
            now = time.monotonic()
            self._deliver_due()
            self._expire(now)
            if now >= until:
                return
            next_deadline = self._until_next_deadline()
            self._sleep(until - now if next_deadline is None else min(until - now, next_deadline))

    def _sleep(self, seconds: float) -> None:
        if select.select([self._wake_r], [], [], seconds)[0]:
            self._drain_wake()

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_r, 64)


def _in_flight(probe: nogil.ReadinessProbe) -> bool:
    """Whether events wait on the subscription ``probe`` watches."""
    try:
        return probe()
    except (OSError, ValueError):
        # Closed under the caller: the watcher reconnects and catches up.
        return False
