"""Requests and rules for the messages a worker process has fetched and not
started: they hold past their TTL until the message starts or leaves the
process; the TTL still ends them for messages that no worker held."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.results import ResultFailure

from dramatiq_abort import Abortable, AbortMode, Outcome, abort, abort_where
from dramatiq_abort.backends import RedisBackend
from dramatiq_abort.middleware import abortable_of
from dramatiq_abort.worker.requests import EXPIRY_GRACE

from ..support import (
    WAIT,
    App,
    PrivateRedis,
    recorded,
    spin_until_aborted,
    wait_until,
    wait_until_cut_off,
)

pytestmark = pytest.mark.timeout(60)

#: The TTL of the requests and rules of these tests, in milliseconds.
SHORT_TTL = 300
#: How many threads the worker of these tests runs.
THREADS = 2
#: How many messages its consumer holds at most.
PREFETCH = 1024
#: How many messages of the stress test are stopped in each round, and the
#: rounds.
TARGETS = 200
ROUNDS = 5
#: Seconds each message between two of them keeps a thread: the messages
#: start about one each millisecond, over 0.2 s around the end of the TTL.
PACE = 0.002
#: The environment of worker processes that hold that many messages.
PREFETCHING = {"dramatiq_queue_prefetch": str(PREFETCH)}


@pytest.fixture
def busy_worker(stub_broker: StubBroker, abortable: Abortable) -> Iterator[Busy]:
    """A worker whose threads are all taken by messages that wait until
    the test frees them."""
    busy = Busy()
    worker = start(stub_broker)
    try:
        busy.take_every_thread()
        yield busy
    finally:
        busy.free()
        worker.stop()


class Busy:
    """Messages that hold the threads of a worker until :meth:`free`."""

    def __init__(self) -> None:
        self.started = threading.Semaphore(0)
        self.freed = threading.Event()

        @dramatiq.actor(max_retries=0)
        def hold_a_thread() -> None:
            self.started.release()
            assert self.freed.wait(WAIT)

        self.actor = hold_a_thread

    def take_every_thread(self) -> None:
        for _ in range(THREADS):
            self.actor.send()
        for _ in range(THREADS):
            assert self.started.acquire(timeout=WAIT), "a thread took a holding message"

    def free(self) -> None:
        self.freed.set()


def start(broker: dramatiq.Broker) -> dramatiq.Worker:
    """A started worker of ``THREADS`` threads that holds up to ``PREFETCH`` messages."""
    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=THREADS)
    # More than twice its threads, its default: it holds every message of a test.
    worker.queue_prefetch = PREFETCH
    worker.start()
    return worker


def wait_until_received_then_over(abortable: Abortable, message_id: str) -> None:
    """Wait until this process received the request for ``message_id``, and
    then until its TTL (and the grace after it) is over: a request not yet
    received reads as none too."""
    seen: list[bool] = []

    def over() -> bool:
        if abortable.requests.get(message_id) is not None:
            seen.append(True)
            return False
        return bool(seen)

    wait_until(over, f"the request for {message_id} is received, then over")


def held_ids(abortable: Abortable) -> set[str]:
    """The ids of the messages the workers of ``abortable`` hold to run."""
    return {message.message_id for _, message in abortable.internals.held()}


@pytest.mark.slow
def test_a_request_and_a_rule_for_held_messages_hold_past_their_ttl_until_the_messages_start(
    stub_broker: StubBroker, abortable: Abortable, busy_worker: Busy
) -> None:
    abortable.abort_ttl = SHORT_TTL
    ran: list[str] = []

    @dramatiq.actor(store_results=True, max_retries=0)
    def job(name: str) -> None:
        ran.append(name)

    @dramatiq.actor(store_results=True, max_retries=0)
    def ruled(name: str) -> None:
        ran.append(name)

    by_id = job.send("by id")
    by_rule = ruled.send("by rule")
    wait_until(lambda: {by_id.message_id, by_rule.message_id} <= held_ids(abortable), "held")
    abort(by_id.message_id)
    abort_where(actor="ruled")
    # Sent before its message is fetched, which then waits beyond the TTL.
    # A longer TTL: the worker must fetch the message while it is in force.
    before_fetch = job.message("before fetch")
    abort(before_fetch.message_id, abort_ttl=SHORT_TTL * 4)
    stub_broker.enqueue(before_fetch)
    # Its message is only sent once the request expired: no worker held it
    # while it was in force, so it runs. The last TTL to end of the test.
    after_expiry = job.message("after expiry")
    abort(after_expiry.message_id, abort_ttl=SHORT_TTL * 4)
    # Received after the rule, so the rule was received too; a rule past its
    # TTL is forgotten a little later than a request reads as over.
    wait_until_received_then_over(abortable, after_expiry.message_id)
    wait_until(lambda: not abortable.rules.in_force, "the rule's TTL is over")
    stub_broker.enqueue(after_expiry)
    wait_until(lambda: after_expiry.message_id in held_ids(abortable), "the late message is held")

    busy_worker.free()
    for stopped in (by_id, by_rule, before_fetch):
        assert abortable.wait_outcome(stopped.message_id, WAIT) is Outcome.CANCELLED
        with pytest.raises(ResultFailure, match="MessageAborted"):
            stopped.get_result(block=True, timeout=int(WAIT * 1000))
    after_expiry.get_result(block=True, timeout=int(WAIT * 1000))
    assert ran == ["after expiry"]
    # Once the messages left, the process forgets what kept them.
    wait_until(lambda: len(abortable.requests) == 0, "the process forgets the requests")


@pytest.mark.slow
@pytest.mark.parametrize("event_backend", ["stub"], indirect=True)
def test_a_held_child_of_a_cancelled_parent_is_cancelled_when_threads_free_past_the_ttl(
    stub_broker: StubBroker, abortable: Abortable
) -> None:
    abortable.abort_ttl = SHORT_TTL
    ran: list[str] = []
    busy = Busy()

    @dramatiq.actor(max_retries=0)
    def child() -> None:
        ran.append("child")

    @dramatiq.actor(max_retries=0, abort_children=True)
    def parent() -> None:
        # Sent while it runs: an abort of the parent reaches it.
        sent.append(child.send())
        busy.started.release()
        assert busy.freed.wait(WAIT)

    sent: list[dramatiq.Message[Any]] = []
    worker = start(stub_broker)
    try:
        # The parent and a holding message take both threads. The holding
        # one first: the threads take messages in the order sent, so both
        # are taken before the parent enqueues its child (sent the other way
        # round, a slow test thread let the child run on the second thread).
        busy.actor.send()
        stopped = parent.send()
        for _ in range(THREADS):
            assert busy.started.acquire(timeout=WAIT)
        wait_until(lambda: sent[0].message_id in held_ids(abortable), "the child is held")
        abort(stopped.message_id, mode=AbortMode.CANCEL)
        never_held = uuid.uuid4().hex
        abort(never_held)
        wait_until_received_then_over(abortable, never_held)

        busy.free()
        assert abortable.wait_outcome(sent[0].message_id, WAIT) is Outcome.CANCELLED
        assert ran == []
    finally:
        busy.free()
        worker.stop()


@pytest.mark.slow
def test_a_request_kept_for_a_held_message_ends_when_the_worker_requeues_it_as_it_shuts_down(
    redis_broker: RedisBroker,
) -> None:
    abortable = abortable_of(redis_broker)
    abortable.abort_ttl = SHORT_TTL
    ran: list[str] = []

    @dramatiq.actor(max_retries=0)
    def job(name: str) -> None:
        ran.append(name)

    busy = Busy()
    first = start(redis_broker)
    stopping: threading.Thread | None = None
    restarted: dramatiq.Worker | None = None
    try:
        busy.take_every_thread()
        held = job.send("held")
        wait_until(lambda: held.message_id in held_ids(abortable), "the worker holds the message")
        abort(held.message_id, mode=AbortMode.CANCEL)
        never_held = uuid.uuid4().hex
        abort(never_held)
        wait_until_received_then_over(abortable, never_held)
        assert abortable.requests.get(held.message_id) is not None, "kept while held"

        # Its threads told to stop before they are freed: none takes the
        # held message, which goes back to its queue.
        stopping = threading.Thread(target=first.stop)
        stopping.start()
        wait_until(lambda: not any(thread.running for thread in first.workers), "threads stop")
        busy.free()
        stopping.join(WAIT)
        assert not stopping.is_alive()
        assert abortable.requests.get(held.message_id) is None

        # As after a restart, or in another process: the request ended with
        # its TTL for a worker that never held the message while it was in force.
        restarted = start(redis_broker)
        wait_until(lambda: ran == ["held"], "the requeued message runs")
    finally:
        busy.free()
        if stopping is None:
            first.stop()
        else:
            stopping.join(WAIT)
        if restarted is not None:
            restarted.stop()


@pytest.mark.servers
def test_a_held_message_is_cancelled_and_a_grace_runs_out_while_the_backend_is_down(
    stub_broker: StubBroker, private_redis: PrivateRedis, namespace: str
) -> None:
    # The watcher backs off between attempts to reach its backend again:
    # what it already received must still take effect on time meanwhile.
    backend = RedisBackend.from_url(private_redis.url, namespace=namespace)
    abortable = Abortable(backend=backend, abort_ttl=SHORT_TTL)
    stub_broker.add_middleware(abortable)
    ran: list[str] = []
    interrupted = threading.Event()

    @dramatiq.actor(max_retries=0)
    def job(name: str) -> None:
        ran.append(name)

    @dramatiq.actor(max_retries=0)
    def graceful() -> None:
        spin_until_aborted(busy.started.release, interrupted.set)

    busy = Busy()
    worker = start(stub_broker)
    try:
        # One thread runs a message that is given a grace, the other is
        # held: the message sent next waits for a thread.
        running = graceful.send()
        busy.actor.send()
        for _ in range(THREADS):
            assert busy.started.acquire(timeout=WAIT), "both threads are taken"
        held = job.send("held")
        wait_until(lambda: held.message_id in held_ids(abortable), "the worker holds the message")
        abort(held.message_id, mode=AbortMode.CANCEL)
        # Longer than the watcher takes to notice the backend is gone: the
        # grace runs out while it backs off.
        grace = 3000
        abort(running.message_id, abort_timeout=grace)
        wait_until(
            lambda: (
                abortable.get_abort_request(running.message_id) is not None
                and abortable.requests.get(held.message_id) is not None
            ),
            "the watcher received both requests",
        )
        private_redis.stop()
        watcher = abortable._watcher
        assert watcher is not None
        wait_until_cut_off(watcher)
        assert interrupted.wait(WAIT), "the grace ran out while the backend was down"

        ttl_over = time.monotonic() + SHORT_TTL / 1000 + EXPIRY_GRACE
        wait_until(lambda: time.monotonic() > ttl_over, "the TTL and its grace are over")
        busy.free()
        stub_broker.join(job.queue_name, timeout=int(WAIT * 1000))
        assert ran == []
    finally:
        busy.free()
        worker.stop()
        backend.client.close()


@pytest.mark.slow
@pytest.mark.parametrize("event_backend", ["stub"], indirect=True)
def test_held_messages_that_threads_take_as_their_requests_ttl_ends_are_all_cancelled(
    stub_broker: StubBroker, abortable: Abortable
) -> None:
    # Threads take messages all through the moment the TTL ends, when the
    # watcher looks which messages the process holds: a message a thread
    # took just before it, and that starts just after, must be cancelled too.
    abortable.abort_ttl = SHORT_TTL
    ran: list[str] = []

    @dramatiq.actor(max_retries=0)
    def job(name: str) -> None:
        ran.append(name)

    @dramatiq.actor(max_retries=0)
    def pace() -> None:
        time.sleep(PACE)

    busy = Busy()
    worker = start(stub_broker)
    try:
        for round in range(ROUNDS):
            messages = [job.message(f"{round}.{number}") for number in range(TARGETS)]
            stop_as_the_ttl_ends(abortable, busy, messages, pace)
        stub_broker.join(job.queue_name)
        assert ran == []
    finally:
        busy.free()
        worker.stop()


def stop_as_the_ttl_ends(
    abortable: Abortable,
    busy: Busy,
    messages: list[dramatiq.Message[Any]],
    pace: dramatiq.Actor[[], None],
) -> None:
    """Hold every thread, send ``messages``, each after one of ``pace``,
    stop them while they are held, and free the threads so that they start
    over a span around the end of their requests' TTL; check that each is
    cancelled."""
    busy.freed.clear()
    busy.take_every_thread()
    broker = dramatiq.get_broker()
    for message in messages:
        pace.send()
        broker.enqueue(message)
    ids = {message.message_id for message in messages}
    wait_until(lambda: ids <= held_ids(abortable), "the worker holds the messages")
    abortable.abort_many(ids)
    ttl_ends = time.monotonic() + SHORT_TTL / 1000
    span = len(messages) * PACE / THREADS
    wait_until(lambda: time.monotonic() >= ttl_ends - span / 2, "the span begins")
    busy.free()
    for message in messages:
        assert abortable.wait_outcome(message.message_id, WAIT) is Outcome.CANCELLED


@pytest.mark.processes
def test_a_worker_process_cancels_the_held_messages_that_the_cli_stopped_once_a_thread_frees(
    redis_url: str, namespace: str
) -> None:
    # One thread, busy: the messages sent after the first wait for it.
    app = App("redis", redis_url, namespace, processes=1, threads=1, env=PREFETCHING)
    try:
        busy_token, busy = app.send("spin")
        assert app.report(busy_token, timeout=60) == "started"
        (by_id_token, by_id), (by_rule_token, by_rule) = app.send("quick"), app.send("quick")
        wait_until(
            lambda: app.reports.llen(f"{namespace}broker:{app.queue}") == 0,
            "the worker process fetches the messages",
        )
        ttl = "300"
        app.abort_from_another_process(by_id.message_id, "--mode", "cancel", "--ttl", ttl)
        # Cancels: the running message is left alone.
        app.abort_from_another_process("--actor", "work", "--mode", "cancel", "--ttl", ttl)
        sent = time.monotonic()
        # Well after the TTL and its grace in the worker process.
        over = sent + int(ttl) / 1000 + EXPIRY_GRACE + 1
        wait_until(lambda: time.monotonic() > over, "the TTL is over")
        assert not recorded(app.backend), "the backend forgot the request and the rule"

        app.abort_from_another_process(busy.message_id)
        assert app.report(busy_token) == "aborted"
        for stopped in (by_id, by_rule):
            assert app.middleware.wait_outcome(stopped.message_id, WAIT) is Outcome.CANCELLED
        for token in (by_id_token, by_rule_token):
            assert app.report(token, timeout=0.5) is None, "a stopped message started"
    finally:
        app.close()
