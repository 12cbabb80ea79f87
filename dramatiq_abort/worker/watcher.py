"""The watcher: the one thread per worker process that learns of abort
requests and delivers them to the messages running here."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
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
from ..wire import event_key, is_inquiry, is_rule
from .answerer import Answerer
from .attempts import Attempts
from .cancels import CancelQuestions
from .executions import Executions
from .requests import AbortRequest, AbortRequests
from .rules import AbortRules
from .timers import Timers

__all__ = ["Watcher"]

#: How long a worker thread waits for events already on their way before
#: it starts a message anyway.
SYNC_TIMEOUT = 0.1
#: How long a polling backend is asked to wait for an event, in ms.
POLL_WAIT = 1000


#: :attr:`Watcher.in_flight` while no subscription is live: a C call that
#: always says events may be on their way.
_ALWAYS: Callable[[], int] = functools.partial(int, 1)


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
        """``held``: the messages this process fetched and has not started,
        each with whether it is delayed: listed in answers beside the
        running ones, and kept from the expiry of the requests and rules
        that stop them."""
        super().__init__(name="dramatiq-abort-watcher", daemon=True)
        self.backend = backend
        self.requests = requests
        self.rules = rules
        self.executions = executions
        self.logger = logger
        self.abort_ttl = abort_ttl
        #: Where the requests received are counted, if anywhere.
        self.metrics = metrics
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
        #: Whether the backend pushes events; if not, the watcher polls it.
        self.pushes = backend.pushes
        #: Asks the backend about a message about to start, while no push
        #: channel is live.
        self.cancels = CancelQuestions(backend, logger, abort_ttl, self._record_requests)
        #: The graces that run out, and the TTLs that end.
        self.timers = Timers(executions, requests, rules, held)
        #: Answers inquiries of which messages run here, and of which
        #: actors (``actors``, those this process declares) it runs.
        self.answerer = Answerer(backend, requests, logger, executions.running, held, actors)

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
            self.cancels.ask(message_id)
        else:
            self._wait_received(live)

    def synchronise_ancestors(self, ancestors: tuple[str, ...]) -> None:
        """:meth:`synchronise` for the ``ancestors`` of a message about to
        start, once its execution is indexed under them. Waiting for the
        events on their way was done for the message itself; while no push
        channel is live, the backend is asked about each ancestor."""
        if self._live is None:
            for ancestor in ancestors:
                self.cancels.ask(ancestor)

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
        attempts = Attempts(self.logger, "reach", "reached")
        while not self._stopping:
            try:
                subscription = self.backend.subscribe()
                try:
                    probe = subscription.probe()
                    self._answer_all(self._record(subscription.recorded()))
                    attempts.succeeded()
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
                self._back_off(attempts.failed(e))

    def _listen(self, subscription: Subscription) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(subscription.fileno(), selectors.EVENT_READ, "events")
            selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            while not self._stopping:
                for key, _ in selector.select(self.timers.seconds_to_next()):
                    if key.data == "events":
                        self._receive(subscription)
                    else:
                        self._drain_wake()
                self.timers.deliver_due()
                self.timers.expire(time.monotonic())

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
            self.answerer.reply(timed)

    def _poll_forever(self) -> None:
        attempts = Attempts(self.logger, "poll", "polled")
        while not self._stopping:
            self.timers.expire(time.monotonic())
            try:
                # The ancestors too: their abort reaches their descendants here.
                running = self.executions.running_ids() + self.executions.families.ancestor_ids()
                if not running:
                    self._sleep(POLL_WAIT / 1000)
                    continue
                keys = [event_key(message_id, AbortMode.ABORT) for message_id in running]
                event = self.backend.wait_many(keys, POLL_WAIT)
                if event is not None:
                    self._record([TimedEvent(event, self.abort_ttl, self.abort_ttl)])
                self.timers.deliver_due()
                attempts.succeeded()
            except Exception as e:
                self._back_off(attempts.failed(e, at_least=POLL_WAIT / 1000))

    def _record(self, events: Iterable[TimedEvent]) -> list[TimedEvent]:
        """Record and deliver the requests and rules of ``events``; return
        its inquiries, which the caller answers (see :meth:`Answerer.reply`)."""
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
        deliver = self.timers.deliver
        if requests:
            ids = [request.message_id for request in requests]
            running = self.executions.find(ids)
            descendants = self.executions.families.descendants(ids)
            for request in requests:
                for execution in running.get(request.message_id, ()):
                    deliver(execution, request, now)
                for execution in descendants.get(request.message_id, ()):
                    deliver(execution, request.for_descendant(execution.message_id), now)
        if rules:
            for execution in self.executions.running():
                rule = next((rule for rule in rules if rule.matches(execution.message)), None)
                if rule is not None:
                    deliver(execution, rule.request_for(execution.message_id), now)
        return inquiries

    def _back_off(self, seconds: float) -> None:
        """Wait ``seconds`` before the next attempt to reach the backend,
        doing meanwhile what needs none: the requests it already delivered
        force their messages when their grace runs out, and those whose TTL
        ends are kept for the messages this process holds."""
        until = time.monotonic() + seconds
        while not self._stopping:
            now = time.monotonic()
            self.timers.deliver_due()
            self.timers.expire(now)
            if now >= until:
                return
            next_deadline = self.timers.seconds_to_next()
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
