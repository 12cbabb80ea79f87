"""Stress: thousands of short messages on a real dramatiq Worker, a random
subset aborted at random moments (before they start, while they run, right
around their end) from another thread or from another process.

Every message's history is recorded (``time.monotonic()``, which every
process of the machine shares, and lists that worker threads only append
to) and then checked, message by message:

* an ``Abort`` is only raised in the body of the message it was sent for,
  and only after its ``abort()`` call began: never in a message that was
  not aborted (what a thread that moved on to its next message would see),
  never in middleware (the message would fail through dramatiq's Retries,
  or a worker thread would die);
* no abort is lost: a message whose ``abort()`` returned before the worker
  began processing it never enters its body (its result says "cancelled");
  a body that runs until it is interrupted is interrupted;
* an aborted or cancelled message is never retried nor dead-lettered, and
  its result raises ``ResultFailure`` with ``orig_exc_type`` "MessageAborted";
  a message that is not aborted returns its value;
* the worker is whole afterwards: all its threads alive, and it processes
  one more message.

Each run is made twice: with Python's switch interval, and with one of
20 us, which preempts threads between almost any two bytecodes and so tries
far more interleavings. Runs go over StubBroker + StubBackend, RedisBroker +
RedisBackend, and RedisBroker + RedisBackend aborted from another process.
The last test checks what the "no abort lost" guarantee rests on: once
abort() has returned, the event is already readable on every subscription.

Nothing is asserted on durations: times are only compared to order events.
The one allowance for a loaded machine is Abortable's own: a worker waits at
most ``SYNC_TIMEOUT`` for the events on their way before a message starts,
so a few aborts lost after that wait timed out are tolerated (and counted).

``STRESS_SCALE`` multiplies the number of messages (default 1);
``STRESS_SEED`` fixes the plan of a run (its timings still vary).
"""

from __future__ import annotations

import heapq
import logging
import os
import queue
import random
import select
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Protocol

import dramatiq
import pytest
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware
from dramatiq.results import ResultBackend, ResultFailure, ResultMissing, Results
from dramatiq.results.backends import StubBackend as StubResultBackend

from dramatiq_abort import Abort, Abortable, AbortMode, TimedEvent, abort
from dramatiq_abort.backends import RedisBackend, StubBackend
from dramatiq_abort.watcher import SYNC_TIMEOUT

SCALE = float(os.environ.get("STRESS_SCALE", "1"))
SEED = os.environ.get("STRESS_SEED")
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
#: How long the harness waits for any one thing; only a broken run waits that long.
WAIT = 60.0
#: The interpreter's switch interval while a run lasts: Python's default
#: (5 ms), and one so short that threads are preempted between almost any
#: two bytecodes, which tries far more interleavings of the same run.
SWITCH_INTERVALS = {"switch-default": None, "switch-20us": 0.00002}
QUEUE = "stress"

# What a body does.
CPU = "cpu"  # a pure-Python loop of 0-3 ms
SPIN = "spin"  # a pure-Python loop until interrupted (at most BOUND)
SLEEP = "sleep"  # 1 ms sleeps until interrupted (at most BOUND)

# When a message is aborted.
NEVER = "never"
PRE = "pre"  # abort() returns before the message is even sent
EARLY = "early"  # 0-4 ms after it is sent: queued, or just started
START = "start"  # 0-3 ms after its body starts: while it runs, or as it ends
END = "end"  # 0-1 ms after its body ends: as it finishes, or once it is done

#: Tolerated, a few times: see Stress.check.
LOST_AFTER_TIMEOUT = "lost once the pre-start check timed out"

# A message's result, when it is not its value.
CANCELLED = "cancelled"
ABORTED = "aborted"


@dataclass
class Plan:
    index: int
    kind: str
    duration: float
    when: str
    mode: AbortMode | None
    delay: float
    message: dramatiq.Message[Any]

    @property
    def message_id(self) -> str:
        return self.message.message_id


def make_plans(rng: random.Random, count: int, actor: dramatiq.Actor[[int], int]) -> list[Plan]:
    plans = []
    for index in range(count):
        roll = rng.random()
        if roll < 0.15:
            # Until interrupted: always aborted, else it would run to BOUND.
            kind = SPIN if roll < 0.075 else SLEEP
            duration = 0.0
            when = rng.choices([PRE, EARLY, START], weights=[5, 35, 60])[0]
            mode: AbortMode | None = AbortMode.ABORT
        else:
            kind = CPU
            duration = rng.uniform(0, 0.003)
            when = rng.choices([NEVER, PRE, EARLY, START, END], weights=[35, 5, 20, 25, 15])[0]
            mode = None
            if when != NEVER:
                mode = AbortMode.CANCEL if rng.random() < 0.15 else AbortMode.ABORT
        if when == EARLY:
            delay = rng.uniform(0, 0.004)
        elif when == START:
            delay = rng.uniform(0, duration * 1.3 + 0.0003 if kind == CPU else 0.003)
        elif when == END:
            delay = rng.uniform(0, 0.001)
        else:
            delay = 0.0
        plans.append(Plan(index, kind, duration, when, mode, delay, actor.message(index)))
    return plans


class AbortRecord(NamedTuple):
    mode: str
    #: time.monotonic() just before abort() was called, and once it returned.
    called: float
    returned: float
    #: What abort() raised, or "".
    error: str


class Finish(NamedTuple):
    time: float
    #: "processed" or "skipped".
    how: str
    #: The exception dramatiq saw, or "".
    exception: str


class Ledger:
    """What happened to every message. Worker threads and middleware only
    append to lists (one atomic step, which an ``Abort`` cannot split);
    the rest is updated under a lock."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        # Recorded by the bodies: (index, time, thread).
        self.starts: list[tuple[int, float, int]] = []
        self.ends: list[tuple[int, float, int]] = []
        self.interrupts: list[tuple[int, float, int]] = []
        # Recorded by the probes: (message_id, time).
        self.enqueues: list[tuple[str, float]] = []
        self.processing: list[tuple[str, float]] = []
        self.synced: list[tuple[str, float]] = []
        self.finishes: list[tuple[str, Finish]] = []
        self.nacks: list[str] = []
        self.errors: list[str] = []
        #: The aborts handed to the aborter, to wait for their reports.
        self.scheduled: list[str] = []
        self.window = threading.Semaphore(WINDOW)
        #: Set once a body ran to BOUND: the others stop waiting for their abort.
        self.give_up = threading.Event()
        self._changed = threading.Condition()
        self._finished: set[str] = set()
        self.aborts: dict[str, list[AbortRecord]] = defaultdict(list)
        self._reports = 0
        self._reported: dict[str, threading.Event] = {}

    def finish(self, message_id: str, how: str, exception: BaseException | None) -> None:
        self.finishes.append(
            (
                message_id,
                Finish(time.monotonic(), how, "" if exception is None else repr(exception)),
            )
        )
        with self._changed:
            if message_id in self.ids and message_id not in self._finished:
                self._finished.add(message_id)
                self.window.release()
                self._changed.notify_all()

    def wait_finished(self, count: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self._finished) >= count, timeout)

    def expect_report(self, message_id: str) -> threading.Event:
        with self._changed:
            event = self._reported[message_id] = threading.Event()
            if self.aborts.get(message_id):
                event.set()
            return event

    def record_abort(self, message_id: str, record: AbortRecord) -> None:
        with self._changed:
            self.aborts[message_id].append(record)
            self._reports += 1
            event = self._reported.get(message_id)
            if event is not None:
                event.set()
            self._changed.notify_all()

    def wait_reports(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._reports >= len(self.scheduled), timeout)


class Probe(Middleware):
    """First of the broker's middleware, so last to see a message end:
    every enqueue (a retry is one), every end of processing, every nack."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def before_enqueue(
        self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int
    ) -> None:
        self.ledger.enqueues.append((message.message_id, time.monotonic()))

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any | None = None,
        exception: BaseException | None = None,
    ) -> None:
        self.ledger.finish(message.message_id, "processed", exception)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.ledger.finish(message.message_id, "skipped", None)

    def after_nack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.ledger.nacks.append(message.message_id)


class StartProbe(Middleware):
    """Right before Abortable: when the worker began processing a message,
    before Abortable looked for an abort request."""

    def __init__(self, records: list[tuple[str, float]]) -> None:
        self.records = records

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.records.append((message.message_id, time.monotonic()))


class ErrorLog(logging.Handler):
    def __init__(self, errors: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.errors = errors

    def emit(self, record: logging.LogRecord) -> None:
        self.errors.append(f"{record.name}: {record.getMessage()}")


class AbortScheduler:
    """Calls ``send`` for each scheduled abort at its due time (a
    ``time.monotonic()``), from the one thread that runs :meth:`run`,
    and reports when each call began and returned."""

    def __init__(
        self,
        send: Callable[[str, AbortMode], None],
        report: Callable[[str, AbortRecord], None],
    ) -> None:
        self._send = send
        self._report = report
        self._inbox: queue.SimpleQueue[tuple[float, str, str] | None] = queue.SimpleQueue()

    def schedule(self, message_id: str, mode: AbortMode, due: float) -> None:
        self._inbox.put((due, message_id, mode.value))

    def stop(self) -> None:
        """Send what is scheduled, then return from :meth:`run`."""
        self._inbox.put(None)

    def run(self) -> None:
        pending: list[tuple[float, int, str, str]] = []
        received = 0
        stopping = False
        while pending or not stopping:
            timeout = max(0.0, pending[0][0] - time.monotonic()) if pending else None
            try:
                item = self._inbox.get(timeout=timeout)
            except queue.Empty:
                item = None
            else:
                if item is None:
                    stopping = True
                else:
                    received += 1
                    heapq.heappush(pending, (item[0], received, item[1], item[2]))
            while pending and pending[0][0] <= time.monotonic():
                _, _, message_id, mode = heapq.heappop(pending)
                called = time.monotonic()
                error = ""
                try:
                    self._send(message_id, AbortMode(mode))
                except Exception as e:
                    error = f"{type(e).__name__}: {e}"
                self._report(message_id, AbortRecord(mode, called, time.monotonic(), error))


class Aborter(Protocol):
    def start(self) -> None: ...

    def schedule(self, message_id: str, mode: AbortMode, due: float) -> None: ...

    def close(self, timeout: float) -> None: ...


class ThreadAborter:
    """Aborts from a thread of this process."""

    def __init__(self, middleware: Abortable, ledger: Ledger) -> None:
        self.scheduler = AbortScheduler(
            lambda message_id, mode: abort(message_id, middleware=middleware, mode=mode),
            ledger.record_abort,
        )
        self.thread = threading.Thread(
            target=self.scheduler.run, name="stress-aborter", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def schedule(self, message_id: str, mode: AbortMode, due: float) -> None:
        self.scheduler.schedule(message_id, mode, due)

    def close(self, timeout: float) -> None:
        self.scheduler.stop()
        if self.thread.is_alive():
            self.thread.join(timeout)


# The child runs this very file's ``aborter_process_main``, whatever the
# module is named here: the file is run by path.
_CHILD = (
    "import runpy, sys; sys.exit(runpy.run_path(sys.argv[1])['aborter_process_main'](sys.argv[2:]))"
)


def aborter_process_main(argv: list[str]) -> int:
    """The aborter of another process: reads ``A <due> <message_id> <mode>``
    lines, calls abort() for each at its due time, and writes
    ``R <message_id> <mode> <called> <returned> <error>`` lines."""
    url, namespace = argv
    backend = RedisBackend.from_url(url, namespace=namespace)
    middleware = Abortable(backend=backend)
    lock = threading.Lock()

    def write(line: str) -> None:
        with lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def report(message_id: str, record: AbortRecord) -> None:
        write(
            f"R {message_id} {record.mode} {record.called!r} {record.returned!r} "
            f"{record.error or '-'}"
        )

    scheduler = AbortScheduler(
        lambda message_id, mode: abort(message_id, middleware=middleware, mode=mode), report
    )

    def read() -> None:
        for line in sys.stdin:
            parts = line.split()
            if len(parts) == 4 and parts[0] == "A":
                scheduler.schedule(parts[2], AbortMode(parts[3]), float(parts[1]))
        scheduler.stop()

    threading.Thread(target=read, daemon=True).start()
    backend.client.ping()
    write("READY")
    scheduler.run()
    return 0


class ProcessAborter:
    """Aborts from another process, on Redis: the worker's process only
    tells it what to abort and when."""

    def __init__(self, redis_url: str, namespace: str, ledger: Ledger) -> None:
        self.args = [sys.executable, "-c", _CHILD, os.path.abspath(__file__), redis_url, namespace]
        self.ledger = ledger
        self.ready = threading.Event()
        self.process: subprocess.Popen[str] | None = None
        self._outbox: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self._threads = [
            threading.Thread(target=self._forward, daemon=True),
            threading.Thread(target=self._collect, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        if not self.ready.wait(WAIT):
            raise RuntimeError("the aborter process did not start")

    def schedule(self, message_id: str, mode: AbortMode, due: float) -> None:
        self._outbox.put(f"A {due!r} {message_id} {mode.value}\n")

    def close(self, timeout: float) -> None:
        self._outbox.put(None)
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.ledger.errors.append("the aborter process did not stop; killed")
                self.process.kill()
                self.process.wait(timeout)
        for thread in self._threads:
            thread.join(timeout)

    def _forward(self) -> None:
        assert self.process is not None and self.process.stdin is not None
        stdin = self.process.stdin
        try:
            while True:
                lines = [self._outbox.get()]
                while lines[-1] is not None:
                    try:
                        lines.append(self._outbox.get_nowait())
                    except queue.Empty:
                        break
                stdin.write("".join(line for line in lines if line is not None))
                stdin.flush()
                if lines[-1] is None:
                    return
        except OSError as e:
            self.ledger.errors.append(f"could not write to the aborter process: {e!r}")
        finally:
            stdin.close()

    def _collect(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            parts = line.strip().split(maxsplit=5)
            if parts == ["READY"]:
                self.ready.set()
            elif len(parts) == 6 and parts[0] == "R":
                _, message_id, mode, called, returned, error = parts
                record = AbortRecord(
                    mode, float(called), float(returned), "" if error == "-" else error
                )
                self.ledger.record_abort(message_id, record)
            else:
                self.ledger.errors.append(f"the aborter process wrote {line!r}")


class Stress:
    """One stress run on ``broker``, whose Abortable is ``middleware``."""

    def __init__(
        self,
        broker: dramatiq.Broker,
        middleware: Abortable,
        results: ResultBackend,
        make_aborter: Callable[[Ledger], Aborter],
        dead_letters: Callable[[], list[str]],
        count: int,
        seed: int,
    ) -> None:
        self.broker = broker
        self.middleware = middleware
        self.results = results
        self.dead_letters = dead_letters
        self.ledger = ledger = Ledger()
        self.seed = seed
        # Probe is first: it sees every message end last, once Results has
        # stored its result. The StartProbes bracket Abortable's pre-start check.
        broker.add_middleware(Probe(ledger), before=type(broker.middleware[0]))
        broker.add_middleware(StartProbe(ledger.processing), before=Abortable)
        broker.add_middleware(StartProbe(ledger.synced), after=Abortable)

        def stress_body(index: int) -> int:
            return self.body(index)

        def stress_final() -> str:
            return "still working"

        options: dict[str, Any] = {"broker": broker, "queue_name": QUEUE, "store_results": True}
        self.actor: dramatiq.Actor[[int], int] = dramatiq.actor(**options)(stress_body)
        self.final: dramatiq.Actor[[], str] = dramatiq.actor(**options)(stress_final)
        self.plans = make_plans(random.Random(seed), count, self.actor)
        ledger.ids = {plan.message_id: plan.index for plan in self.plans}
        self.aborter = make_aborter(ledger)

    def schedule(self, plan: Plan, due: float) -> None:
        assert plan.mode is not None
        self.ledger.scheduled.append(plan.message_id)
        self.aborter.schedule(plan.message_id, plan.mode, due)

    def body(self, index: int) -> int:
        plan, ledger = self.plans[index], self.ledger
        try:
            started = time.monotonic()
            ledger.starts.append((index, started, threading.get_ident()))
            if plan.when == START:
                self.schedule(plan, started + plan.delay)
            if plan.kind == CPU:
                deadline = started + plan.duration
                while time.monotonic() < deadline:
                    pass
            elif plan.kind == SPIN:
                deadline = started + BOUND
                while time.monotonic() < deadline and not ledger.give_up.is_set():
                    pass
            else:
                deadline = started + BOUND
                while time.monotonic() < deadline and not ledger.give_up.is_set():
                    time.sleep(0.001)
            ended = time.monotonic()
            if plan.kind != CPU:
                ledger.give_up.set()
            ledger.ends.append((index, ended, threading.get_ident()))
            if plan.when == END:
                self.schedule(plan, ended + plan.delay)
        except Abort:
            ledger.interrupts.append((index, time.monotonic(), threading.get_ident()))
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
        worker.start()
        try:
            self.aborter.start()
            try:
                self.send_all()
                if not ledger.wait_finished(len(self.plans), WAIT):
                    violations.append(f"the messages did not all finish within {WAIT} s")
                elif not ledger.wait_reports(WAIT):
                    violations.append(f"the aborts were not all sent within {WAIT} s")
            finally:
                self.aborter.close(WAIT)
            final = self.final.send()
            try:
                final_result = self.results.get_result(final, block=True, timeout=int(WAIT * 1000))
            except Exception as e:
                final_result = e
            dead_threads = sum(not thread.is_alive() for thread in worker.workers)
        finally:
            worker.stop(timeout=int(WAIT * 1000))
            logging.getLogger().removeHandler(errors)

        per_message, stats = self.check()
        if final_result != "still working":
            violations.append(f"the worker did not process a final message: {final_result!r}")
        if dead_threads:
            violations.append(f"{dead_threads} worker thread(s) died")
        dead = self.dead_letters()
        if dead:
            violations.append(f"{len(dead)} message(s) dead-lettered: {dead[:5]}")
        # The run went through what it is meant to exercise.
        for what in ("aborted before processing", "interrupted in its body", "completed"):
            if not stats[what]:
                violations.append(f"no message was {what}")
        violations.extend(f"logged: {error}" for error in ledger.errors[:10])
        violations.extend(per_message)
        summary = f"seed {self.seed}, {len(self.plans)} messages: {dict(sorted(stats.items()))}"
        print(summary)
        assert not violations, f"{len(violations)} violation(s), {summary}:\n" + "\n".join(
            violations[:40]
        )

    def send_all(self) -> None:
        ledger = self.ledger
        for plan in self.plans:
            assert ledger.window.acquire(timeout=BOUND + WAIT), "the worker stopped taking messages"
            if plan.when == PRE:
                reported = ledger.expect_report(plan.message_id)
                self.schedule(plan, time.monotonic())
                assert reported.wait(WAIT), "an abort was never sent"
            self.broker.enqueue(plan.message)
            if plan.when == EARLY:
                self.schedule(plan, time.monotonic() + plan.delay)

    def outcome(self, message: dramatiq.Message[Any]) -> object:
        try:
            return self.results.get_result(message)
        except ResultFailure as e:
            if e.orig_exc_type != "MessageAborted":
                return f"failed with {e.orig_exc_type}: {e.orig_exc_msg}"
            for how in (CANCELLED, ABORTED):
                if e.orig_exc_msg.endswith(f" was {how}"):
                    return how
            return f"MessageAborted saying {e.orig_exc_msg!r}"
        except ResultMissing:
            return "no result"

    def check(self) -> tuple[list[str], Counter[str]]:
        """Every message's history against the guarantees."""
        ledger = self.ledger

        def by_index(records: list[tuple[int, float, int]]) -> dict[int, list[float]]:
            found: dict[int, list[float]] = defaultdict(list)
            for index, at, _ in records:
                found[index].append(at)
            return found

        def by_id(records: list[tuple[str, float]]) -> dict[str, list[float]]:
            found: dict[str, list[float]] = defaultdict(list)
            for message_id, at in records:
                found[message_id].append(at)
            return found

        starts, ends = by_index(ledger.starts), by_index(ledger.ends)
        interrupts = by_index(ledger.interrupts)
        enqueues, processing = by_id(ledger.enqueues), by_id(ledger.processing)
        synced = by_id(ledger.synced)
        finishes: dict[str, list[Finish]] = defaultdict(list)
        for message_id, finish in ledger.finishes:
            finishes[message_id].append(finish)
        nacked = set(ledger.nacks)

        violations: list[str] = []
        stats: Counter[str] = Counter()
        for plan in self.plans:
            index, message_id = plan.index, plan.message_id
            found: list[str] = []
            aborts = ledger.aborts.get(message_id, [])
            sent = aborts[0] if aborts else None
            began = processing.get(message_id, [])
            finished = finishes.get(message_id, [])
            ran = bool(starts.get(index) or ends.get(index) or interrupts.get(index))
            result = self.outcome(plan.message)

            # Processed once, never retried, never failed, never dead-lettered.
            if len(enqueues.get(message_id, [])) != 1:
                found.append(f"enqueued {len(enqueues.get(message_id, []))} times (retried)")
            if len(began) != 1:
                found.append(f"processed {len(began)} times")
            if len(finished) != 1:
                found.append(f"finished {len(finished)} times")
            found.extend(f"failed with {f.exception}" for f in finished if f.exception)
            if message_id in nacked:
                found.append("rejected (nacked)")
            for records, what in (
                (starts, "started"),
                (ends, "ended"),
                (interrupts, "interrupted"),
            ):
                if len(records.get(index, [])) > 1:
                    found.append(f"body {what} {len(records[index])} times")
            if len(aborts) != (plan.mode is not None):
                found.append(f"sent {len(aborts)} aborts for a plan of {plan.when}")
            if sent is not None and sent.error:
                found.append(f"abort() raised {sent.error}")

            # An Abort only in the body of its message, once abort() began.
            for at in interrupts.get(index, []):
                if sent is None or sent.mode != AbortMode.ABORT.value:
                    found.append(
                        f"Abort raised in its body though it was "
                        f"{'not aborted' if sent is None else 'only cancelled'} (wrong thread)"
                    )
                elif at < sent.called:
                    found.append(
                        f"Abort raised in its body {(sent.called - at) * 1000:.3f} ms "
                        "before abort() was called (wrong thread)"
                    )

            # No abort lost: once abort() has returned, the message never starts.
            if sent is not None and began and sent.returned < began[0]:
                stats["aborted before processing"] += 1
                waited = synced.get(message_id, [began[0]])[0] - began[0]
                if (ran or result != CANCELLED) and waited >= SYNC_TIMEOUT:
                    # Abortable documents that it waits at most SYNC_TIMEOUT
                    # for the events on their way: a watcher starved that
                    # long by the machine's load may miss one.
                    stats[LOST_AFTER_TIMEOUT] += 1
                elif ran or result != CANCELLED:
                    found.append(
                        f"abort() returned {(began[0] - sent.returned) * 1000:.3f} ms before the "
                        f"worker began processing it, yet "
                        + ("its body ran" if ran else "it was not cancelled")
                        + f" and its result is {result!r} (lost abort; Abortable's pre-start "
                        f"check took {waited * 1000:.1f} ms)"
                    )
            # ... and a running message is interrupted.
            if plan.kind != CPU:
                if ends.get(index):
                    found.append(
                        f"ran until it gave up (at most {BOUND} s): its abort was never delivered"
                    )
                elif starts.get(index) and not interrupts.get(index):
                    found.append("its body started, yet was neither interrupted nor ended")

            # Its result.
            if result == index:
                stats["completed"] += 1
                if sent is not None:
                    stats["completed though aborted"] += 1
                if not ends.get(index) or interrupts.get(index):
                    found.append("returned its value, yet its body did not complete")
                if finished and finished[0].how != "processed":
                    found.append(f"returned its value, yet was {finished[0].how}")
            elif result in (CANCELLED, ABORTED):
                stats[str(result)] += 1
                if sent is None:
                    found.append(f"{result}, yet never aborted")
                elif finished and sent.called > finished[0].time:
                    found.append(f"{result} before abort() was called")
                if result == CANCELLED and ran:
                    found.append("cancelled, yet its body ran")
                if result == ABORTED and sent is not None and sent.mode != AbortMode.ABORT.value:
                    found.append("only cancelled, yet interrupted while it ran")
                if finished and finished[0].how != "skipped":
                    found.append(f"{result}, yet {finished[0].how} as a failure")
            else:
                found.append(f"unexpected result {result!r}")
            if sent is None and result != index:
                found.append(f"never aborted, yet its result is {result!r}")
            if interrupts.get(index):
                stats["interrupted in its body"] += 1
            if plan.when == END and not interrupts.get(index):
                stats["aborted after its body ended, unharmed"] += 1

            if found:
                detail = (
                    f"message {index} ({plan.kind} {plan.duration * 1000:.2f} ms, "
                    f"{plan.when} {plan.mode and plan.mode.value} +{plan.delay * 1000:.2f} ms, "
                    f"id {message_id})"
                )
                violations.extend(f"{detail}: {problem}" for problem in found)
        if stats[LOST_AFTER_TIMEOUT] > max(2, stats["aborted before processing"] // 20):
            violations.append(
                f"{stats[LOST_AFTER_TIMEOUT]} aborts were lost after Abortable's pre-start check "
                f"gave up waiting (SYNC_TIMEOUT): more than the machine's load explains"
            )
        return violations, stats


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


def run_seed() -> int:
    return int(SEED) if SEED is not None else random.randrange(2**32)


def count(base: int) -> int:
    return max(300, int(base * SCALE))


@pytest.fixture
def stub_stress_broker() -> Iterator[tuple[StubBroker, Abortable, StubResultBackend]]:
    broker = StubBroker()
    results = StubResultBackend()
    broker.add_middleware(Results(backend=results))
    middleware = Abortable(backend=StubBackend())
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
        lambda ledger: ThreadAborter(middleware, ledger),
        lambda: [m.message_id for m in broker.dead_letters],
        count(2000),
        run_seed(),
    ).run()


@pytest.mark.timeout(240)
def test_stress_redis_broker_and_backend(redis_broker: RedisBroker, switch_interval: None) -> None:
    middleware, results, dead_letters = redis_parts(redis_broker)
    Stress(
        redis_broker,
        middleware,
        results,
        lambda ledger: ThreadAborter(middleware, ledger),
        dead_letters,
        count(1500),
        run_seed(),
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
        lambda ledger: ProcessAborter(redis_url, namespace, ledger),
        dead_letters,
        count(1500),
        run_seed(),
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
        for i in range(count(5000)):
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
        f"{len(late)} of {count(5000)} aborts were not yet readable on a subscription when "
        "abort() returned: a worker beginning the message right then starts it"
    )
