"""What a user relies on when aborting: on a real dramatiq Worker, over the
in-memory backend and over Redis."""

from __future__ import annotations

import math
import sys
import threading
import time
from typing import Any

import dramatiq
import pytest
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.results import ResultFailure, Results

from dramatiq_abort import Abort, Abortable, AbortMode, Outcome, abort, abort_requested
from dramatiq_abort.errors import MessageAborted
from dramatiq_abort.worker.execution import ExecutionState

from ..support import QUEUED_FOR, WAIT, spin_until_aborted, wait_until

pytestmark = pytest.mark.timeout(30)


def aborted_result(message: dramatiq.Message[Any]) -> ResultFailure:
    with pytest.raises(ResultFailure) as info:
        message.get_result(block=True, timeout=int(WAIT * 1000))
    return info.value


def test_abort_interrupts_a_running_message_once_and_never_retries_it(
    stub_broker: StubBroker, worker: dramatiq.Worker
) -> None:
    started, interrupted = threading.Event(), threading.Event()
    runs: list[int] = []

    @dramatiq.actor(store_results=True, max_retries=5, min_backoff=1, max_backoff=1)
    def work() -> None:
        runs.append(1)
        spin_until_aborted(started.set, interrupted.set)

    message = work.send()
    assert started.wait(WAIT)
    abort(message.message_id)
    assert interrupted.wait(WAIT)

    failure = aborted_result(message)
    assert failure.orig_exc_type == "MessageAborted"
    assert "aborted" in failure.orig_exc_msg
    stub_broker.join(work.queue_name)
    worker.join()
    assert runs == [1]
    assert stub_broker.dead_letters == []


def test_cancel_stops_a_queued_message_and_leaves_a_running_one(
    stub_broker: StubBroker, worker: dramatiq.Worker
) -> None:
    started, finish = threading.Event(), threading.Event()
    ran: list[str] = []

    @dramatiq.actor(store_results=True)
    def job(name: str) -> str:
        ran.append(name)
        if name == "running":
            started.set()
            assert finish.wait(WAIT)
        return name

    running = job.send("running")
    assert started.wait(WAIT)
    queued = job.send_with_options(args=("queued",), delay=QUEUED_FOR)
    abort(queued.message_id, mode=AbortMode.CANCEL)
    abort(running.message_id, mode=AbortMode.CANCEL)
    finish.set()

    assert running.get_result(block=True, timeout=int(WAIT * 1000)) == "running"
    assert aborted_result(queued).orig_exc_msg.endswith("was cancelled")
    stub_broker.join(job.queue_name)
    worker.join()
    assert ran == ["running"]


def test_grace_lets_the_actor_finish_and_reports_the_time_left(
    stub_broker: StubBroker, worker: dramatiq.Worker
) -> None:
    started = threading.Event()
    seen: list[float | None] = []

    @dramatiq.actor(store_results=True)
    def polite() -> str:
        started.set()
        seen.append(abort_requested())
        deadline = time.monotonic() + WAIT
        while (left := abort_requested()) is None and time.monotonic() < deadline:
            time.sleep(0.001)
        seen.append(left)
        return "tidied up"

    message = polite.send()
    assert started.wait(WAIT)
    abort(message.message_id, abort_timeout=5_000)
    assert message.get_result(block=True, timeout=int(WAIT * 1000)) == "tidied up"
    assert seen[0] is None
    assert seen[1] is not None and 0 < seen[1] <= 5_000


def test_grace_runs_out_then_abort_is_raised(
    stub_broker: StubBroker, worker: dramatiq.Worker
) -> None:
    started, interrupted = threading.Event(), threading.Event()
    told: list[float] = []

    @dramatiq.actor(store_results=True)
    def stubborn() -> None:
        try:
            started.set()
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                left = abort_requested()
                if left is not None and not told:
                    told.append(left)
        except Abort:
            interrupted.set()
            raise

    message = stubborn.send()
    assert started.wait(WAIT)
    abort(message.message_id, abort_timeout=50)
    assert interrupted.wait(WAIT)
    assert told and told[0] <= 50
    assert aborted_result(message).orig_exc_type == "MessageAborted"


def test_abortable_option_priority(stub_broker: StubBroker, abortable: Abortable) -> None:
    abortable.abortable = False
    worker = dramatiq.Worker(stub_broker, worker_timeout=100, worker_threads=2)
    worker.start()
    try:
        ran: list[str] = []

        @dramatiq.actor
        def plain(tag: str) -> None:
            ran.append(tag)

        @dramatiq.actor(abortable=True)
        def opted_in(tag: str) -> None:
            ran.append(tag)

        sent = [
            plain.send_with_options(args=("middleware default: not abortable",), delay=QUEUED_FOR),
            plain.send_with_options(
                args=("message says abortable",), delay=QUEUED_FOR, abortable=True
            ),
            opted_in.send_with_options(args=("actor says abortable",), delay=QUEUED_FOR),
            opted_in.send_with_options(
                args=("message says not",), delay=QUEUED_FOR, abortable=False
            ),
        ]
        for message in sent:
            abort(message.message_id)
        stub_broker.join(plain.queue_name)
        worker.join()
        assert sorted(ran) == ["message says not", "middleware default: not abortable"]
    finally:
        worker.stop()


def test_abort_of_a_finished_message_is_a_no_op(
    stub_broker: StubBroker, worker: dramatiq.Worker
) -> None:
    @dramatiq.actor(store_results=True)
    def add(a: int, b: int) -> int:
        return a + b

    done = add.send(1, 2)
    assert done.get_result(block=True, timeout=int(WAIT * 1000)) == 3
    abort(done.message_id)
    abort("a-message-nobody-sent")
    assert add.send(2, 3).get_result(block=True, timeout=int(WAIT * 1000)) == 5
    assert done.get_result() == 3


def test_abort_requested_sees_other_messages_and_is_none_outside_actors(
    stub_broker: StubBroker, worker: dramatiq.Worker, abortable: Abortable
) -> None:
    started, release = threading.Event(), threading.Event()

    @dramatiq.actor
    def waiting() -> None:
        started.set()
        release.wait(WAIT)

    message = waiting.send()
    assert started.wait(WAIT)
    abort(message.message_id, abort_timeout=60_000)
    try:
        deadline = time.monotonic() + WAIT
        while abort_requested(message.message_id) is None and time.monotonic() < deadline:
            time.sleep(0.001)
        left = abort_requested(message.message_id, middleware=abortable)
        assert left is not None and 0 < left <= 60_000
        assert abort_requested(message) is not None  # the message itself will do too
        assert abort_requested() is None
    finally:
        release.set()


def test_an_actor_calling_another_is_aborted_as_one_message(
    stub_broker: StubBroker, worker: dramatiq.Worker
) -> None:
    started, interrupted = threading.Event(), threading.Event()

    @dramatiq.actor
    def inner() -> None:
        spin_until_aborted(started.set, interrupted.set)

    @dramatiq.actor(store_results=True)
    def outer() -> None:
        inner()

    message = outer.send()
    assert started.wait(WAIT)
    abort(message.message_id)
    assert interrupted.wait(WAIT)
    assert aborted_result(message).orig_exc_type == "MessageAborted"


def test_an_abort_the_actor_handles_lets_it_finish(
    stub_broker: StubBroker, worker: dramatiq.Worker
) -> None:
    started = threading.Event()

    @dramatiq.actor(store_results=True)
    def careful() -> str:
        try:
            spin_until_aborted(started.set, threading.Event().set)
        except Abort:
            return "cleaned up"
        return "ran to the end"

    message = careful.send()
    assert started.wait(WAIT)
    abort(message.message_id)
    assert message.get_result(block=True, timeout=int(WAIT * 1000)) == "cleaned up"


def test_an_abort_raised_by_the_actor_itself_is_an_ordinary_failure(
    stub_broker: StubBroker, worker: dramatiq.Worker
) -> None:
    @dramatiq.actor(store_results=True, max_retries=0)
    def gives_up() -> None:
        raise Abort("my own")

    with pytest.raises(ResultFailure) as info:
        gives_up.send().get_result(block=True, timeout=int(WAIT * 1000))
    assert info.value.orig_exc_type == "Abort"


def test_on_redis_broker_aborted_messages_are_acknowledged_not_dead_lettered(
    redis_broker: RedisBroker, redis_worker: dramatiq.Worker
) -> None:
    started, interrupted = threading.Event(), threading.Event()

    @dramatiq.actor(store_results=True, max_retries=3)
    def crunch() -> None:
        spin_until_aborted(started.set, interrupted.set)

    @dramatiq.actor(store_results=True, max_retries=0)
    def fails() -> None:
        raise ValueError("dead-lettered, as a control")

    message = crunch.send()
    queued = crunch.send_with_options(delay=QUEUED_FOR)
    abort(queued.message_id, mode=AbortMode.CANCEL)
    assert started.wait(WAIT)
    abort(message.message_id)
    assert interrupted.wait(WAIT)
    control = fails.send()

    assert aborted_result(message).orig_exc_type == "MessageAborted"
    assert aborted_result(queued).orig_exc_msg.endswith("was cancelled")
    assert aborted_result(control).orig_exc_type == "ValueError"
    redis_broker.join(crunch.queue_name, timeout=int(WAIT * 1000))
    client: Any = redis_broker.client
    dead = client.hvals(f"{redis_broker.namespace}:{crunch.queue_name}.XQ.msgs")
    assert [dramatiq.Message.decode(data).message_id for data in dead] == [control.message_id]
    # The results are in the test's namespace, which the fixture cleans up.
    results = next(m for m in redis_broker.middleware if isinstance(m, Results)).backend
    namespace = redis_broker.namespace.removesuffix("broker")
    for sent in (message, queued, control):
        key = results.build_message_key(sent)
        assert key.startswith(namespace) and client.exists(key)


def test_a_grace_longer_than_the_ttl_still_ends_in_abort(
    stub_broker: StubBroker, worker: dramatiq.Worker
) -> None:
    started, interrupted = threading.Event(), threading.Event()

    @dramatiq.actor(store_results=True)
    def slow() -> None:
        spin_until_aborted(started.set, interrupted.set)

    message = slow.send()
    assert started.wait(WAIT)
    abort(message.message_id, abort_ttl=20, abort_timeout=200)
    assert interrupted.wait(WAIT)
    assert aborted_result(message).orig_exc_type == "MessageAborted"


def test_a_request_without_grace_limit_asks_and_never_forces(
    stub_broker: StubBroker, worker: dramatiq.Worker, abortable: Abortable
) -> None:
    started = threading.Event()

    @dramatiq.actor(store_results=True)
    def cooperative() -> float | None:
        started.set()
        deadline = time.monotonic() + WAIT
        while (left := abort_requested()) is None and time.monotonic() < deadline:
            pass
        # Keep computing: nothing may force it to stop.
        until = time.monotonic() + 0.1
        while time.monotonic() < until:
            pass
        return left

    message = cooperative.send()
    assert started.wait(WAIT)
    abort(message.message_id, abort_timeout=math.inf)
    assert message.get_result(block=True, timeout=int(WAIT * 1000)) == math.inf
    assert abortable.wait_outcome(message.message_id, WAIT) is Outcome.STOPPED


@pytest.mark.stress
def test_once_abort_returns_the_messages_running_in_this_process_see_it(
    stub_broker: StubBroker, worker: dramatiq.Worker
) -> None:
    reached, proceed = threading.Event(), threading.Event()

    @dramatiq.actor(store_results=True)
    def checks_once() -> float | None:
        reached.set()
        assert proceed.wait(WAIT)
        return abort_requested()

    for _ in range(20):
        reached.clear()
        proceed.clear()
        message = checks_once.send()
        assert reached.wait(WAIT)
        abort(message.message_id, abort_timeout=math.inf)
        proceed.set()
        assert message.get_result(block=True, timeout=int(WAIT * 1000)) == math.inf


@pytest.mark.slow
def test_a_worker_forgets_expired_requests_without_waiting_for_another(
    stub_broker: StubBroker, worker: dramatiq.Worker, abortable: Abortable
) -> None:
    abortable.abort_many([f"gone-{i}" for i in range(50)], abort_ttl=50)
    assert len(abortable.requests) == 50
    wait_until(lambda: len(abortable.requests) == 0, "the expired requests are forgotten")


def test_an_abort_leaves_no_exception_flagged_in_the_interpreter(
    stub_broker: StubBroker, worker: dramatiq.Worker
) -> None:
    started, interrupted = threading.Event(), threading.Event()

    @dramatiq.actor(max_retries=0)
    def crunch() -> None:
        spin_until_aborted(started.set, interrupted.set)

    message = crunch.send()
    assert started.wait(WAIT)
    abort(message.message_id)
    assert interrupted.wait(WAIT)
    stub_broker.join(crunch.queue_name)
    worker.join()

    # A thread under a tracer (coverage, a debugger) spins forever on
    # CPython 3.11 when the interpreter is left flagged as having an
    # asynchronous exception pending that no thread has.
    def called() -> None:
        pass

    def traced() -> None:
        sys.settrace(lambda *_: None)
        try:
            called()
        finally:
            sys.settrace(None)

    tracer = threading.Thread(target=traced, daemon=True)
    tracer.start()
    tracer.join(WAIT)
    assert not tracer.is_alive()


def test_workers_report_what_became_of_aborted_messages(
    stub_broker: StubBroker, worker: dramatiq.Worker, abortable: Abortable
) -> None:
    started, interrupted = threading.Event(), threading.Event()

    @dramatiq.actor
    def crunch() -> None:
        spin_until_aborted(started.set, interrupted.set)

    running = crunch.send()
    assert started.wait(WAIT)
    queued = crunch.send_with_options(delay=QUEUED_FOR)
    abortable.abort_many([queued.message_id, running.message_id])

    assert abortable.wait_outcome(running.message_id, WAIT) is Outcome.ABORTED
    assert abortable.wait_outcome(queued.message_id, WAIT) is Outcome.CANCELLED
    assert abortable.wait_outcome("never-sent", 0.05) is None


def test_abort_many_checks_every_id_before_sending_any(abortable: Abortable) -> None:
    with pytest.raises(TypeError, match="None"):
        abortable.abort_many(["fine", None])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="'one-id'"):
        abortable.abort_many("one-id")
    assert abortable.backend.poll("cancel:fine") is None
    abortable.abort_many(["a", "b"], mode=AbortMode.CANCEL)
    assert abortable.backend.poll("cancel:a") is not None
    assert abortable.backend.poll("cancel:b") is not None


def test_an_actor_that_raises_is_done_with_before_middleware_runs(
    stub_broker: StubBroker, worker: dramatiq.Worker, abortable: Abortable
) -> None:
    states: list[ExecutionState | None] = []

    class Spy(dramatiq.Middleware):
        def after_process_message(self, broker: Any, message: Any, **_: Any) -> None:
            execution = abortable.executions.current()
            states.append(None if execution is None else execution.state)

    # Added last, its after_process_message runs first, before Abortable.end().
    stub_broker.add_middleware(Spy())

    @dramatiq.actor(store_results=True, max_retries=0)
    def fails() -> None:
        raise ValueError("ordinary failure")

    with pytest.raises(ResultFailure, match="ordinary failure"):
        fails.send().get_result(block=True, timeout=int(WAIT * 1000))
    # By the time middleware runs, no Abort can be delivered to the thread.
    assert states and all(state in (None, ExecutionState.FINISHED) for state in states)


def test_a_request_for_a_delayed_message_lives_until_its_eta(
    stub_broker: StubBroker, worker: dramatiq.Worker, abortable: Abortable
) -> None:
    abortable.abort_ttl = 300
    ran: list[str] = []

    @dramatiq.actor(store_results=True)
    def later(tag: str) -> str:
        ran.append(tag)
        return tag

    covered = later.send_with_options(args=("covered",), delay=1500)
    by_id = later.send_with_options(args=("by id",), delay=1500)
    abort(covered, mode=AbortMode.CANCEL)
    # By id alone the request expires after 300 ms, before the message starts.
    abort(by_id.message_id, mode=AbortMode.CANCEL)
    assert abortable.wait_outcome(covered.message_id, WAIT) is Outcome.CANCELLED
    assert by_id.get_result(block=True, timeout=int(WAIT * 1000)) == "by id"
    assert ran == ["by id"]


def test_a_message_cancelled_as_it_starts_is_not_left_registered_in_its_thread(
    stub_broker: StubBroker, worker: dramatiq.Worker, abortable: Abortable
) -> None:
    # Only dramatiq's worker ends a skipped message (after_skip_message):
    # code that calls the hooks itself must not find the thread still
    # processing the cancelled message afterwards.
    @dramatiq.actor
    def double(x: int) -> int:
        return 2 * x

    message = double.message(21)
    abort(message.message_id)
    with pytest.raises(MessageAborted):
        # This middleware's hook alone: dramatiq's TimeLimit would keep a
        # deadline for this thread, and raise in it ten minutes later.
        abortable.before_process_message(stub_broker, MessageProxy(message))
    assert abortable.executions.current() is None
    assert abort_requested() is None
    assert double.fn(4) == 8
