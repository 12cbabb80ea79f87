"""Requests and rules for the messages a worker process has fetched and not
started: they hold past their TTL until the message starts or leaves the
process; the TTL still ends them for messages that no worker held."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.results import ResultFailure

from dramatiq_abort import Abortable, Outcome, abort, abort_where

from .support import WAIT, wait_until

pytestmark = pytest.mark.timeout(60)

#: The TTL of the requests and rules of these tests, in milliseconds.
SHORT_TTL = 300
#: How many threads the worker of these tests runs.
THREADS = 2
#: How many messages its consumer holds at most.
PREFETCH = 16


@pytest.fixture
def busy_worker(stub_broker: StubBroker, abortable: Abortable) -> Iterator[Busy]:
    """A worker whose threads are all taken by messages that wait until
    the test frees them."""
    busy = Busy(stub_broker)
    worker = dramatiq.Worker(stub_broker, worker_timeout=100, worker_threads=THREADS)
    # More than twice its threads, its default: it holds every message of the test.
    worker.queue_prefetch = PREFETCH
    worker.start()
    try:
        busy.take_every_thread()
        yield busy
    finally:
        busy.free()
        worker.stop()


class Busy:
    """Messages that hold the threads of a worker until :meth:`free`."""

    def __init__(self, broker: StubBroker) -> None:
        self.broker = broker
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


def held_ids(abortable: Abortable) -> set[str]:
    """The ids of the messages the workers of ``abortable`` hold to run."""
    return {message.message_id for _, message in abortable.internals.held()}


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
    wait_until(
        lambda: (
            abortable.requests.get(after_expiry.message_id) is None and not abortable.rules.in_force
        ),
        "the TTL of every request and of the rule is over",
    )
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
