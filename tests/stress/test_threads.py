"""Stress: thousands of short messages on a dramatiq Worker in this process,
a random subset aborted at random moments from another thread or process.

The messages run before, while and right around an abort: it is sent
before a message is even sent, 0-4 ms after it is sent (queued, or just
starting), 0-3 ms into its body (while it runs, or as it ends), or 0-1 ms
after its body ended. Besides what every stress run checks (see
tests/stress/harness.py), this one checks each message's result (an
aborted or cancelled message's says "MessageAborted", anyone else's is its
value), that an ``Abort`` never escapes into middleware (the message would
fail through dramatiq's Retries), that nothing is dead-lettered nor logged
as an error, and that the worker is whole afterwards: all its threads
alive, and it processes one more message.

Each run is made twice: with Python's switch interval, and with one of
20 us, which preempts threads between almost any two bytecodes and so
tries far more interleavings. Runs go over StubBroker + StubBackend,
StubBroker + PostgresBackend, RedisBroker + RedisBackend, and
RedisBroker + RedisBackend aborted from another process. The last test
checks what the "no abort lost" guarantee rests on: once abort() has
returned, the event is already readable on every subscription.
"""

from __future__ import annotations

import logging
import random
import select
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.results import ResultBackend, ResultFailure, ResultMissing, Results
from dramatiq.results.backends import StubBackend as StubResultBackend

from dramatiq_abort import Abort, Abortable, AbortMode, EventBackend, TimedEvent, abort
from dramatiq_abort.backends import RedisBackend, StubBackend

from .harness import (
    NEVER,
    PRE,
    PROCESSED,
    SKIPPED,
    WAIT,
    AborterProcess,
    AbortLog,
    AbortScheduler,
    Answer,
    Handling,
    Plan,
    Recorder,
    SentAbort,
    Tables,
    assert_no_violations,
    check_message,
    check_run,
    check_tables,
    run_seed,
    scaled,
)

pytestmark = pytest.mark.stress

#: Worker threads: more than the machine's cores, so that they contend.
THREADS = 5
#: Messages sent and not finished yet, at most: enough for a backlog that
#: is aborted before it starts, small enough that aborts also land in
#: running messages.
WINDOW = 3 * THREADS
#: How long a body that runs until interrupted may run: far beyond any
#: abort's latency, so reaching it means the abort was lost. Once one
#: body reaches it, the others give up at once: the run has failed.
BOUND = 15.0
#: The interpreter's switch interval while a run lasts: Python's default
#: (5 ms), and one so short that threads are preempted between almost any
#: two bytecodes, which tries far more interleavings of the same run.
SWITCH_INTERVALS = {"switch-default": None, "switch-20us": 0.00002}
#: The queue of the run's messages.
QUEUE = "stress"

# What a body does.
CPU = "cpu"  # a pure-Python loop of 0-3 ms
SPIN = "spin"  # a pure-Python loop until interrupted (at most BOUND)
SLEEP = "sleep"  # 1 ms sleeps until interrupted (at most BOUND)

# When a message is aborted, besides NEVER and PRE.
EARLY = "early"  # 0-4 ms after it is sent: queued, or just started
START = "start"  # 0-3 ms after its body starts: while it runs, or as it ends
END = "end"  # 0-1 ms after its body ends: as it finishes, or once it is done

# A message's result, when it is not its value.
CANCELLED = "cancelled"
ABORTED = "aborted"


def make_plans(rng: random.Random, count: int, actor: dramatiq.Actor[[int], int]) -> list[Plan]:
    plans = []
    for index in range(count):
        roll = rng.random()
        holds = roll < 0.15
        if holds:
            # Until interrupted: always aborted, else it would run to BOUND.
            kind = SPIN if roll < 0.075 else SLEEP
            millis = 0.0
            when = rng.choices([PRE, EARLY, START], weights=[5, 35, 60])[0]
            mode: AbortMode | None = AbortMode.ABORT
        else:
            kind = CPU
            millis = rng.uniform(0, 3)
            when = rng.choices([NEVER, PRE, EARLY, START, END], weights=[35, 5, 20, 25, 15])[0]
            mode = None
            if when != NEVER:
                mode = AbortMode.CANCEL if rng.random() < 0.15 else AbortMode.ABORT
        if when == EARLY:
            delay = rng.uniform(0, 0.004)
        elif when == START:
            delay = rng.uniform(0, millis * 0.0013 + 0.0003 if kind == CPU else 0.003)
        elif when == END:
            delay = rng.uniform(0, 0.001)
        else:
            delay = 0.0
        message = actor.message(index)
        plans.append(Plan(index, kind, millis, message, holds, when, mode, delay))
    return plans


class Ledger:
    """Each message's handlings, kept as they come: they open the window
    for the next message."""

    def __init__(self) -> None:
        self.handlings: dict[int, list[Handling]] = defaultdict(list)
        self.window = threading.Semaphore(WINDOW)
        #: Set once a body ran to BOUND: the others stop waiting for their abort.
        self.give_up = threading.Event()
        #: What was logged at ERROR or above.
        self.errors: list[str] = []
        self._changed = threading.Condition()

    def keep(self, index: int, handling: Handling) -> None:
        with self._changed:
            handlings = self.handlings[index]
            handlings.append(handling)
            if len(handlings) == 1:
                self.window.release()
            self._changed.notify_all()

    def wait_handled(self, count: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.handlings) >= count, timeout)


class ErrorLog(logging.Handler):
    def __init__(self, errors: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.errors = errors

    def emit(self, record: logging.LogRecord) -> None:
        self.errors.append(f"{record.name}: {record.getMessage()}")


class Aborter(Protocol):
    #: What went wrong in the aborter itself.
    errors: list[str]

    def send(
        self, mode: AbortMode, message_ids: list[str], answer: Answer, due: float = 0.0
    ) -> None: ...

    def close(self, timeout: float) -> None: ...


class ThreadAborter:
    """Aborts from a thread of this process."""

    def __init__(self, middleware: Abortable) -> None:
        self.errors: list[str] = []
        self.scheduler = AbortScheduler(middleware)
        self.thread = threading.Thread(
            target=self.scheduler.run, name="stress-aborter", daemon=True
        )
        self.thread.start()

    def send(
        self, mode: AbortMode, message_ids: list[str], answer: Answer, due: float = 0.0
    ) -> None:
        self.scheduler.schedule(due, mode, message_ids, answer)

    def close(self, timeout: float) -> None:
        self.scheduler.stop()
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.errors.append("the aborter thread did not stop")


class Stress:
    """One stress run on ``broker``, whose Abortable is ``middleware``."""

    def __init__(
        self,
        broker: dramatiq.Broker,
        middleware: Abortable,
        results: ResultBackend,
        make_aborter: Callable[[], Aborter],
        dead_letters: Callable[[], list[str]],
        count: int,
    ) -> None:
        self.broker = broker
        self.middleware = middleware
        self.results = results
        self.dead_letters = dead_letters
        self.ledger = Ledger()
        self.aborts = AbortLog()
        self.seed = run_seed()

        def stress_body(index: int) -> int:
            return self.body(index)

        def stress_final() -> str:
            return "still working"

        options: dict[str, Any] = {"broker": broker, "queue_name": QUEUE, "store_results": True}
        self.actor: dramatiq.Actor[[int], int] = dramatiq.actor(**options)(stress_body)
        self.final: dramatiq.Actor[[], str] = dramatiq.actor(**options)(stress_final)
        self.plans = make_plans(random.Random(self.seed), count, self.actor)
        indexes = {plan.message_id: plan.index for plan in self.plans}
        self.recorder = Recorder(lambda message: indexes.get(message.message_id), self.ledger.keep)
        self.recorder.install(broker)
        # Last: run() stops it, whatever happens.
        self.aborter = make_aborter()

    def schedule(self, plan: Plan, due: float) -> None:
        mode = plan.mode
        assert mode is not None

        def answer(called: float, returned: float, error: str) -> None:
            sent = SentAbort(plan.when, mode, "", called, returned, error)
            self.aborts.record([plan.index], sent)

        self.aborter.send(mode, [plan.message_id], answer, due)

    def body(self, index: int) -> int:
        plan, recorder, give_up = self.plans[index], self.recorder, self.ledger.give_up
        try:
            started = recorder.started()
            if plan.when == START:
                self.schedule(plan, started + plan.delay)
            deadline = started + (BOUND if plan.holds else plan.millis / 1000)
            while time.monotonic() < deadline and not give_up.is_set():
                if plan.kind == SLEEP:
                    time.sleep(0.001)
            ended = recorder.ended()
            if plan.holds:
                give_up.set()
            if plan.when == END:
                self.schedule(plan, ended + plan.delay)
        except Abort:
            recorder.interrupted()
            raise
        return index

    def run(self) -> None:
        """Send every message, abort some, wait for all; then check."""
        ledger = self.ledger
        errors = ErrorLog(ledger.errors)
        logging.getLogger().addHandler(errors)
        violations: list[str] = []
        final_result: Any = None
        dead_threads = 0
        worker = dramatiq.Worker(self.broker, worker_threads=THREADS, worker_timeout=100)
        try:
            worker.start()
            try:
                self.send_all()
                if not ledger.wait_handled(len(self.plans), WAIT):
                    violations.append(f"the messages were not all handled within {WAIT} s")
            finally:
                # Once it returns, every abort scheduled was sent and recorded.
                self.aborter.close(WAIT)
            final = self.final.send()
            try:
                final_result = self.results.get_result(final, block=True, timeout=int(WAIT * 1000))
            except Exception as e:
                final_result = e
            dead_threads = sum(not thread.is_alive() for thread in worker.workers)
            tables = Tables.of(self.middleware)
        finally:
            worker.stop(timeout=int(WAIT * 1000))
            logging.getLogger().removeHandler(errors)

        stats: Counter[str] = Counter()
        violations.extend(self.check(stats))
        violations.extend(
            check_run(
                stats,
                self.aborts,
                ["abort returned before processing began", "interrupted in its body", "completed"],
            )
        )
        violations.extend(
            check_tables(
                tables,
                self.aborts,
                ttl=self.middleware.abort_ttl / 1000,
                threads=THREADS,
                where="at the end",
            )
        )
        if final_result != "still working":
            violations.append(f"the worker did not process a final message: {final_result!r}")
        if dead_threads:
            violations.append(f"{dead_threads} worker thread(s) died")
        dead = self.dead_letters()
        if dead:
            violations.append(f"{len(dead)} message(s) dead-lettered: {dead[:5]}")
        violations.extend(self.aborter.errors)
        violations.extend(f"logged: {error}" for error in ledger.errors[:10])
        assert_no_violations(
            violations,
            f"seed {self.seed}, {len(self.plans)} messages, tables at the end (requests, "
            f"expiries, executions, deadlines) {tables.sizes()}: {dict(sorted(stats.items()))}",
        )

    def send_all(self) -> None:
        for plan in self.plans:
            assert self.ledger.window.acquire(timeout=BOUND + WAIT), (
                "the worker stopped taking messages"
            )
            if plan.when == PRE:
                self.schedule(plan, time.monotonic())
                assert self.aborts.wait_for_message(plan.index, WAIT), "an abort was never sent"
            self.broker.enqueue(plan.message)
            if plan.when == EARLY:
                self.schedule(plan, time.monotonic() + plan.delay)

    def result(self, plan: Plan) -> object:
        """The message's result; CANCELLED or ABORTED for a MessageAborted."""
        try:
            # Results stores it before the recorder keeps the handling.
            return self.results.get_result(plan.message)
        except ResultFailure as e:
            if e.orig_exc_type != "MessageAborted":
                return f"failed with {e.orig_exc_type}: {e.orig_exc_msg}"
            for how in (CANCELLED, ABORTED):
                if e.orig_exc_msg.endswith(f" was {how}"):
                    return how
            return f"MessageAborted saying {e.orig_exc_msg!r}"
        except ResultMissing:
            return "no result"

    def check(self, stats: Counter[str]) -> list[str]:
        """Every message's history and result against the guarantees."""
        violations: list[str] = []
        ttl = self.middleware.abort_ttl / 1000
        for plan in self.plans:
            handlings = self.ledger.handlings.get(plan.index, [])
            sent = self.aborts.sent.get(plan.index)
            result = self.result(plan)
            violations.extend(
                check_message(
                    plan,
                    handlings,
                    sent,
                    stats,
                    ttl=ttl,
                    result_says_cancelled=result == CANCELLED,
                    also=self.check_result(plan, handlings, sent, result, stats),
                )
            )
        return violations

    @staticmethod
    def check_result(
        plan: Plan,
        handlings: list[Handling],
        sent: SentAbort | None,
        result: object,
        stats: Counter[str],
    ) -> list[str]:
        """A message's result agrees with what became of it."""
        found = []
        how = handlings[0].how if handlings else "never handled"
        ran = any(handling.started for handling in handlings)
        if result == plan.index:
            stats["completed"] += 1
            if not handlings or not handlings[0].ended or handlings[0].interrupted:
                found.append("returned its value, yet its body did not complete")
            if how != PROCESSED:
                found.append(f"returned its value, yet was {how}")
        elif result in (CANCELLED, ABORTED):
            stats[f"result: {result}"] += 1
            if sent is None:
                found.append(f"{result}, yet never aborted")
            if result == CANCELLED and ran:
                found.append("cancelled, yet its body ran")
            if result == ABORTED and sent is not None and sent.mode is not AbortMode.ABORT:
                found.append("only cancelled, yet interrupted while it ran")
            if how != SKIPPED:
                found.append(f"{result}, yet {how} as a failure")
        else:
            found.append(f"unexpected result {result!r}")
        if sent is None and result != plan.index:
            found.append(f"never aborted, yet its result is {result!r}")
        return found


@pytest.fixture(params=list(SWITCH_INTERVALS.values()), ids=list(SWITCH_INTERVALS))
def switch_interval(request: pytest.FixtureRequest) -> Iterator[None]:
    interval: float | None = request.param
    default = sys.getswitchinterval()
    if interval is not None:
        sys.setswitchinterval(interval)
    try:
        yield
    finally:
        sys.setswitchinterval(default)


@pytest.fixture(params=["stub", "postgres"])
def stub_stress_broker(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[StubBroker, Abortable, StubResultBackend]]:
    """A StubBroker with the in-memory backend, or with PostgreSQL's."""
    broker = StubBroker()
    results = StubResultBackend()
    broker.add_middleware(Results(backend=results))
    backend: EventBackend = (
        StubBackend() if request.param == "stub" else request.getfixturevalue("postgres_backend")
    )
    middleware = Abortable(backend=backend)
    broker.add_middleware(middleware)
    broker.emit_after("process_boot")
    dramatiq.set_broker(broker)
    try:
        yield broker, middleware, results
    finally:
        broker.flush_all()
        broker.close()


def redis_parts(broker: RedisBroker) -> tuple[Abortable, ResultBackend, Callable[[], list[str]]]:
    middleware = next(m for m in broker.middleware if isinstance(m, Abortable))
    results = next(m for m in broker.middleware if isinstance(m, Results)).backend
    client: Any = broker.client
    dead_key = f"{broker.namespace}:{QUEUE}.XQ"

    def dead_letters() -> list[str]:
        return [m.decode() for m in client.zrange(dead_key, 0, -1)]

    return middleware, results, dead_letters


@pytest.mark.timeout(240)
def test_stress_stub_broker_and_backend(
    stub_stress_broker: tuple[StubBroker, Abortable, StubResultBackend], switch_interval: None
) -> None:
    broker, middleware, results = stub_stress_broker
    Stress(
        broker,
        middleware,
        results,
        lambda: ThreadAborter(middleware),
        lambda: [m.message_id for m in broker.dead_letters],
        scaled(2000),
    ).run()


@pytest.mark.timeout(240)
def test_stress_redis_broker_and_backend(redis_broker: RedisBroker, switch_interval: None) -> None:
    middleware, results, dead_letters = redis_parts(redis_broker)
    Stress(
        redis_broker,
        middleware,
        results,
        lambda: ThreadAborter(middleware),
        dead_letters,
        scaled(1500),
    ).run()


@pytest.mark.timeout(240)
def test_stress_redis_aborted_from_another_process(
    redis_broker: RedisBroker, redis_url: str, namespace: str, switch_interval: None
) -> None:
    middleware, results, dead_letters = redis_parts(redis_broker)
    backend = middleware.backend
    assert isinstance(backend, RedisBackend) and backend.namespace == namespace
    Stress(
        redis_broker,
        middleware,
        results,
        lambda: AborterProcess(redis_url, namespace, middleware.abort_ttl),
        dead_letters,
        scaled(1500),
    ).run()


@pytest.mark.timeout(120)
def test_stress_redis_abort_is_on_its_way_to_every_worker_once_it_returns(
    redis_client: Any, namespace: str
) -> None:
    """What the pre-start check relies on: once abort() has returned, the
    event is readable on every subscription, so a worker that then begins
    a message cannot miss it."""
    backend = RedisBackend(client=redis_client, namespace=namespace)
    middleware = Abortable(backend=backend)
    subscription = backend.subscribe()
    late: list[int] = []
    try:
        for i in range(scaled(5000)):
            abort(f"in-flight-{i}", middleware=middleware, mode=AbortMode.CANCEL, abort_ttl=5000)
            if not select.select([subscription.fileno()], [], [], 0)[0]:
                late.append(i)
            received: list[TimedEvent] = []
            deadline = time.monotonic() + WAIT
            while not received and time.monotonic() < deadline:
                select.select([subscription.fileno()], [], [], 1.0)
                received = subscription.receive()
            assert received, "an abort never reached the subscription"
    finally:
        subscription.close()
    assert not late, (
        f"{len(late)} of {scaled(5000)} aborts were not yet readable on a subscription when "
        "abort() returned: a worker beginning the message right then starts it"
    )
