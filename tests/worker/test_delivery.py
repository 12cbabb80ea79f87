"""The lock-free protocol between the watcher and a worker thread, raced
directly: thousands of tiny messages, each interrupted (or requested to
stop) at a random moment around its start and its end, with the switch
interval at its smallest so that threads change between almost any two
bytecodes."""

from __future__ import annotations

import itertools
import logging
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import NoReturn

import dramatiq
import pytest
from dramatiq.broker import MessageProxy

from dramatiq_abort.backend import TimedEvent
from dramatiq_abort.dramatiq_internals import DramatiqInternals
from dramatiq_abort.errors import Abort
from dramatiq_abort.mode import AbortMode
from dramatiq_abort.outcome import Outcome
from dramatiq_abort.wire import events_for
from dramatiq_abort.worker.execution import Execution, ExecutionState
from dramatiq_abort.worker.executions import Executions
from dramatiq_abort.worker.requests import AbortRequest, AbortRequests

from ..support import WAIT

pytestmark = [pytest.mark.timeout(120), pytest.mark.stress]

#: Messages the worker thread runs.
MESSAGES = 10_000
LOGGER = logging.getLogger("test_delivery")


@pytest.fixture
def tiny_switch_interval() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def spin(iterations: int) -> None:
    for _ in range(iterations):
        pass


class Stopped(Exception):
    """What the test's ``stopped`` raises: how the message was stopped."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome)
        self.outcome = outcome


def stop(execution: Execution, outcome: Outcome) -> NoReturn:
    raise Stopped(outcome)


def run(actor: Callable[[str, int], None], message_id: str, iterations: int) -> Outcome | None:
    """Run the wrapped ``actor`` in the message begun; how it was stopped, if it was."""
    try:
        actor(message_id, iterations)
    except Stopped as stopped:
        return stopped.outcome
    return None


def test_an_abort_racing_its_message_lands_in_it_or_nowhere_and_is_never_lost(
    tiny_switch_interval: None,
) -> None:
    executions = Executions(LOGGER, DramatiqInternals())
    rng = random.Random(1)
    # One clock for both threads: next() on it is atomic.
    clock = itertools.count()
    outcomes: dict[str, Outcome | None] = {}
    body_ended: dict[str, int] = {}
    delivered: dict[str, int] = {}
    escaped: list[str] = []
    done = threading.Event()

    def body(message_id: str, iterations: int) -> None:
        spin(iterations)
        body_ended[message_id] = next(clock)

    actor = executions.wrap(body, stop)

    def worker() -> None:
        for i in range(MESSAGES):
            message_id = f"m{i}"
            message = MessageProxy(dramatiq.Message("q", "a", (), {}, {}, message_id=message_id))
            try:
                executions.begin(message, message_id)
                outcomes[message_id] = run(actor, message_id, rng.randrange(2000))
                executions.end(message)
                spin(20)  # where an Abort that outlived its message would land
            except Abort:
                escaped.append(message_id)
        done.set()

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        deadline = time.monotonic() + WAIT * 6
        while not done.is_set():
            assert time.monotonic() < deadline, "the worker thread is stuck"
            for execution in executions.running():
                if execution.request is None and rng.random() < 0.5:
                    request = AbortRequest(
                        execution.message_id, True, 0.0, time.monotonic() + 60, 0.0
                    )
                    executions.deliver(execution, request, time.monotonic())
                    delivered[execution.message_id] = next(clock)
            spin(rng.randrange(100))
    finally:
        thread.join(WAIT)
    assert not thread.is_alive()
    assert escaped == []
    assert len(outcomes) == MESSAGES
    # Delivered before the body ended: the message was stopped.
    lost = [m for m, at in delivered.items() if m in body_ended and at < body_ended[m]]
    assert [m for m in lost if outcomes[m] is None] == []
    # The race was run: messages were cancelled, aborted, and ran to their
    # end (how often each depends on the scheduler: a loaded machine
    # cancels few).
    counts = Counter(outcomes.values())
    assert min(counts[Outcome.CANCELLED], counts[Outcome.ABORTED], counts[None]) > 0, counts


def test_a_request_recorded_as_its_message_begins_stops_it_and_nothing_else(
    tiny_switch_interval: None,
) -> None:
    # What the middleware does: the thread registers the message, then
    # reads the table, then runs it; the watcher records a request in the
    # table, then scans the slots and delivers it.
    executions = Executions(LOGGER, DramatiqInternals())
    requests = AbortRequests(LOGGER)
    rng = random.Random(2)
    clock = itertools.count()
    outcomes: dict[str, Outcome | None] = {}
    body_ended: dict[str, int] = {}
    recorded: dict[str, int] = {}
    escaped: list[str] = []
    starting = [0]
    done = threading.Event()

    def body(message_id: str, iterations: int) -> None:
        spin(iterations)
        body_ended[message_id] = next(clock)

    actor = executions.wrap(body, stop)

    def worker() -> None:
        for i in range(MESSAGES):
            starting[0] = i
            message_id = f"m{i}"
            message = MessageProxy(dramatiq.Message("q", "a", (), {}, {}, message_id=message_id))
            try:
                executions.begin(message, message_id)
                if requests.held(message_id) is not None and requests.get(message_id) is not None:
                    outcomes[message_id] = Outcome.CANCELLED
                else:
                    outcomes[message_id] = run(actor, message_id, rng.randrange(200))
                executions.end(message)
                spin(20)  # where an Abort that outlived its message would land
            except Abort:
                escaped.append(message_id)
        done.set()

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        deadline = time.monotonic() + WAIT * 6
        while not done.is_set():
            assert time.monotonic() < deadline, "the worker thread is stuck"
            # The message starting now or one of the next two.
            message_id = f"m{starting[0] + rng.randrange(3)}"
            if message_id in recorded:
                continue
            now = time.monotonic()
            for event in events_for([message_id], AbortMode.ABORT, 0):
                requests.record(TimedEvent(event, 60_000, 60_000), now)
            for execution in executions.find([message_id]).get(message_id, []):
                request = requests.get(message_id)
                assert request is not None
                executions.deliver(execution, request, time.monotonic())
            recorded[message_id] = next(clock)
            spin(rng.randrange(300))
    finally:
        thread.join(WAIT)
    assert not thread.is_alive()
    assert escaped == []
    assert len(outcomes) == MESSAGES
    # Recorded and delivered before the body ended (or began): stopped.
    missed = [m for m, at in recorded.items() if m in outcomes and at < body_ended.get(m, at + 1)]
    assert [m for m in missed if outcomes[m] is None] == []
    # Never stopped without a request.
    assert [m for m, outcome in outcomes.items() if outcome and m not in recorded] == []
    counts = Counter(outcomes.values())
    assert min(counts[Outcome.CANCELLED], counts[Outcome.ABORTED], counts[None]) > 0, counts


def test_a_grace_that_runs_out_as_its_message_finishes_logs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The watcher may find a message whose actor returned but whose end()
    # has not run yet: there is nothing to abort, and nothing to report.
    executions = Executions(LOGGER, DramatiqInternals())
    message = MessageProxy(dramatiq.Message("q", "a", (), {}, {}, message_id="graced"))
    execution = executions.begin(message, "graced")
    execution.state = ExecutionState.RUNNING
    now = time.monotonic()
    request = AbortRequest("graced", True, now + 10, now + 60, now)
    assert executions.deliver(execution, request, now), "the grace is scheduled"
    execution.finish()
    with caplog.at_level(logging.DEBUG, LOGGER.name):
        executions.deliver_due("graced", now + 11)
    assert caplog.records == []
    assert not execution.interrupted
    executions.end(message)
