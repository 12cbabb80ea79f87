"""The stress tests' shared harness: the plan, the aborters, each message's record, and the checks.

A run plans which messages get aborted or cancelled, and when
(:class:`Plan`); records every abort call (:class:`AbortLog`) and every
handling of a message in the worker thread that takes it (:class:`Recorder`,
:class:`Handling`), with ``time.monotonic()``, which every process of the
machine shares, so that times order events across processes; and checks,
message by message (:func:`check_message`):

* no wrong-message abort: ``Abort`` is only raised in the body of a message
  that was aborted (not cancelled), and only once its abort was sent; a
  message never aborted is processed and its body runs to its end;
* no lost abort: a message whose abort returned before its worker began
  processing it never runs its body; a body that runs until its Abort
  comes is interrupted. The one allowance for a loaded machine is
  Abortable's own: it waits at most ``SYNC_TIMEOUT`` for the events on
  their way, so a few aborts lost after that wait timed out are tolerated,
  and counted (:func:`check_run`);
* every message is handled exactly once, and never fails;

and that the Abortable's tables hold only running messages and live
requests (:func:`check_tables`). Nothing is asserted on durations.

``STRESS_SCALE`` multiplies the number of messages; ``STRESS_SEED`` fixes
the plan of a run (its timings still vary).

Run as ``python -m tests.stress.harness <redis-url> <namespace> <abort-ttl>``,
it is the aborter of another process (see :class:`AborterProcess`).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import queue
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from dramatiq_abort import Abortable, AbortMode, abort
from dramatiq_abort.backends import RedisBackend
from dramatiq_abort.worker.timers import FORGET_DELAY
from dramatiq_abort.worker.watcher import SYNC_TIMEOUT

from ..support import ROOT, stop_process_group

#: Multiplies the number of messages of every run (``STRESS_SCALE``).
SCALE = float(os.environ.get("STRESS_SCALE", "1"))
#: Fixes the plan of a run when set (``STRESS_SEED``); its timings still vary.
SEED = os.environ.get("STRESS_SEED")

#: When a message is aborted: never, or before it is even sent. Each test
#: adds its own moments (while it runs, as it ends...).
NEVER = "never"
PRE = "pre"

#: How long a run waits for any one thing; only a broken run waits that long.
WAIT = 30.0

#: Allowance for the time from an abort call to its workers learning of it.
SLACK = 1.0

#: How a worker let go of a message: dramatiq processed it (its body ran to
#: its end, or it failed), or skipped it (Abortable cancelled or aborted it).
PROCESSED = "processed"
SKIPPED = "skipped"

#: A few aborts may be lost once Abortable's pre-start check gave up
#: waiting (it documents that it waits at most ``SYNC_TIMEOUT`` for the
#: events on their way): at most this many...
LOST_AFTER_TIMEOUT_FLOOR = 2
#: ... or one in this many of the aborts that returned before processing began.
LOST_AFTER_TIMEOUT_RATIO = 20
LOST_AFTER_TIMEOUT = "lost once the pre-start check timed out"


def run_seed() -> int:
    """The seed of a run's plan: ``STRESS_SEED``, or a fresh one."""
    return int(SEED) if SEED is not None else random.randrange(2**32)


def scaled(base: int) -> int:
    """``base`` messages times ``STRESS_SCALE``, and at least a tenth of ``base``."""
    return max(base // 10, int(base * SCALE))


@dataclass
class Plan:
    """What a message's body does, and which abort it gets, and when."""

    index: int
    #: What its body does; each test has its kinds.
    kind: str
    #: How long its body works, unless it ``holds``.
    millis: float
    message: dramatiq.Message[Any]
    #: Its body runs until its Abort comes (at most some bound of the test's).
    holds: bool = False
    when: str = NEVER
    mode: AbortMode | None = None
    #: Seconds past the moment ``when`` names at which the abort is sent.
    delay: float = 0.0
    #: Which process sends its abort, where a test has several.
    source: str = ""

    @property
    def message_id(self) -> str:
        return self.message.message_id

    def __str__(self) -> str:
        mode = self.mode.value if self.mode else ""
        return (
            f"message {self.index} ({self.kind} {self.millis:.2f} ms, {self.when} {mode} "
            f"+{self.delay * 1000:.2f} ms {self.source}, id {self.message_id})"
        )


class SentAbort(NamedTuple):
    """One abort call, as its sender saw it."""

    when: str
    mode: AbortMode
    source: str
    #: ``time.monotonic()``, which every process of the machine shares, just
    #: before the call and once it returned.
    called: float
    returned: float
    #: What the call raised, or "".
    error: str


class AbortLog:
    """Every abort sent, by message index: at most one per message, the
    first one kept."""

    def __init__(self) -> None:
        self.sent: dict[int, SentAbort] = {}
        #: Messages an abort was sent for a second time: each is a violation.
        self.twice: list[int] = []
        self._changed = threading.Condition()

    def record(self, indexes: list[int], sent: SentAbort) -> None:
        with self._changed:
            for index in indexes:
                if index in self.sent:
                    self.twice.append(index)
                else:
                    self.sent[index] = sent
            self._changed.notify_all()

    def wait_for_message(self, index: int, timeout: float) -> bool:
        """Whether message ``index`` has had its abort sent within ``timeout``."""
        with self._changed:
            return self._changed.wait_for(lambda: index in self.sent, timeout)


#: Called with the times an abort call began and returned, and what it
#: raised ("" if nothing).
Answer = Callable[[float, float, str], None]


class AbortScheduler:
    """Makes each abort call at its due time (a ``time.monotonic()``), from
    the one thread that runs :meth:`run`, and answers when it began and
    returned. :meth:`schedule` may be called from any thread, a message's
    body too: it only puts an item on a queue, one step an Abort cannot split."""

    def __init__(self, middleware: Abortable) -> None:
        self._middleware = middleware
        # Ties on the due time go by the order of scheduling.
        self._order = itertools.count()
        self._inbox: queue.SimpleQueue[tuple[float, int, AbortMode, list[str], Answer] | None] = (
            queue.SimpleQueue()
        )

    def schedule(self, due: float, mode: AbortMode, message_ids: list[str], answer: Answer) -> None:
        self._inbox.put((due, next(self._order), mode, message_ids, answer))

    def stop(self) -> None:
        """Make the calls scheduled, then return from :meth:`run`."""
        self._inbox.put(None)

    def run(self) -> None:
        pending: list[tuple[float, int, AbortMode, list[str], Answer]] = []
        stopping = False
        while pending or not stopping:
            timeout = max(0.0, pending[0][0] - time.monotonic()) if pending else None
            try:
                item = self._inbox.get(timeout=timeout)
            except queue.Empty:
                pass
            else:
                if item is None:
                    stopping = True
                else:
                    heapq.heappush(pending, item)
            while pending and pending[0][0] <= time.monotonic():
                _, _, mode, message_ids, answer = heapq.heappop(pending)
                called = time.monotonic()
                error = ""
                try:
                    if len(message_ids) == 1:
                        abort(message_ids[0], middleware=self._middleware, mode=mode)
                    else:
                        self._middleware.abort_many(message_ids, mode=mode)
                except Exception as e:
                    error = f"{type(e).__name__}: {e}"
                answer(called, time.monotonic(), error)


def aborter_main(argv: list[str]) -> int:
    """The aborter of another process: reads ``<seq> <due> <mode> <id>...``
    lines, makes each call at its due time, and writes ``R <seq> <called>
    <returned> <error>`` lines (``-`` for no error)."""
    url, namespace, abort_ttl = argv
    backend = RedisBackend.from_url(url, namespace=namespace)
    scheduler = AbortScheduler(Abortable(backend=backend, abort_ttl=int(abort_ttl)))

    def answerer(seq: str) -> Answer:
        def answer(called: float, returned: float, error: str) -> None:
            # Only the scheduler's thread writes, once READY is out.
            error = "-" if not error else error.replace(" ", "_")
            sys.stdout.write(f"R {seq} {called!r} {returned!r} {error}\n")
            sys.stdout.flush()

        return answer

    def read() -> None:
        for line in sys.stdin:
            seq, due, mode, *message_ids = line.split()
            scheduler.schedule(float(due), AbortMode(mode), message_ids, answerer(seq))
        scheduler.stop()

    backend.client.ping()
    print("READY", flush=True)
    threading.Thread(target=read, daemon=True).start()
    scheduler.run()
    return 0


class AborterProcess:
    """Aborts from another process (:func:`aborter_main`) on Redis: this one
    only tells it what to abort and when."""

    def __init__(self, redis_url: str, namespace: str, abort_ttl: int, stderr: Any = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.stress.harness", redis_url, namespace, str(abort_ttl)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
        #: What went wrong talking to it.
        self.errors: list[str] = []
        self._ready = threading.Event()
        self._seq = itertools.count(1)
        # Lines are queued, and written by a thread of their own: a body
        # that sends an abort must not block on the pipe.
        self._outbox: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        #: The calls not answered yet, by number.
        self._waiting: dict[int, Answer] = {}
        self._answered = threading.Condition()
        self._threads = [
            threading.Thread(target=self._forward, name="stress-aborter-in", daemon=True),
            threading.Thread(target=self._read, name="stress-aborter-out", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        if not self._ready.wait(WAIT):
            self.close(WAIT)
            raise RuntimeError(f"the aborter process did not start: {self.errors}")

    def send(
        self, mode: AbortMode, message_ids: list[str], answer: Answer, due: float = 0.0
    ) -> None:
        """Have it abort ``message_ids`` at ``due`` (at once by default);
        ``answer`` is called with its report."""
        seq = next(self._seq)
        self._waiting[seq] = answer
        self._outbox.put(f"{seq} {due!r} {mode.value} {' '.join(message_ids)}\n")

    def wait_all(self, timeout: float) -> bool:
        """Whether every call was answered within ``timeout``."""
        with self._answered:
            return self._answered.wait_for(lambda: not self._waiting, timeout)

    def close(self, timeout: float) -> None:
        """Let it make the calls sent, then stop it."""
        self._outbox.put(None)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.errors.append("the aborter process did not stop; killed")
        stop_process_group(self.process)
        for thread in self._threads:
            thread.join(timeout)

    def _forward(self) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        try:
            while True:
                lines = [self._outbox.get()]
                while lines[-1] is not None:
                    try:
                        lines.append(self._outbox.get_nowait())
                    except queue.Empty:
                        break
                stdin.write("".join(line for line in lines if line is not None).encode())
                stdin.flush()
                if lines[-1] is None:
                    return
        except OSError as e:
            self.errors.append(f"could not write to the aborter process: {e!r}")
        finally:
            with contextlib.suppress(OSError):
                stdin.close()

    def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        for raw in stdout:
            parts = raw.decode().split()
            if parts == ["READY"]:
                self._ready.set()
            elif len(parts) == 5 and parts[0] == "R" and int(parts[1]) in self._waiting:
                _, seq, called, returned, error = parts
                with self._answered:
                    # Answered before it stops being waited for: wait_all
                    # returns once every answer is recorded.
                    self._waiting[int(seq)](
                        float(called), float(returned), "" if error == "-" else error
                    )
                    del self._waiting[int(seq)]
                    self._answered.notify_all()
            else:
                self.errors.append(f"the aborter process wrote {raw!r}")
        stdout.close()


class Handling(NamedTuple):
    """What a worker thread saw of one processing of a message:
    ``time.monotonic()`` of each step, 0.0 for a step it did not reach."""

    how: str
    #: The worker began processing it, just before Abortable's pre-start check...
    began: float
    #: ... which then let it go on.
    synced: float
    #: Its body started, then ended or caught Abort.
    started: float
    ended: float
    interrupted: float
    #: dramatiq was done with it (every middleware's after hook ran).
    finished: float

    def dumps(self, index: int) -> str:
        return " ".join([str(index), self.how, *(repr(at) for at in self[1:])])

    @classmethod
    def loads(cls, text: str) -> tuple[int, Handling]:
        index, how, *times = text.split()
        began, synced, started, ended, interrupted, finished = map(float, times)
        return int(index), cls(how, began, synced, started, ended, interrupted, finished)


class _Steps(threading.local):
    """The steps of the message the calling worker thread processes."""

    index = -1
    began = synced = started = ended = interrupted = 0.0


class Recorder:
    """Notes each step of every message in the worker thread that takes it
    (worker threads only set their own attributes, one step an Abort cannot
    split), and hands one :class:`Handling` per processing to ``keep``.

    ``index_of`` tells a planned message's index, or None for any other."""

    def __init__(
        self,
        index_of: Callable[[MessageProxy], int | None],
        keep: Callable[[int, Handling], None],
    ) -> None:
        self._index_of = index_of
        self._keep = keep
        self._steps = _Steps()

    def install(self, broker: dramatiq.Broker) -> None:
        """Around ``broker``'s Abortable, to time its pre-start check, and
        first of all, so that a message is kept once every other middleware
        (Results too) is done with it."""
        steps = self._steps
        recorder = self

        class Began(Middleware):
            def before_process_message(
                self, broker: dramatiq.Broker, message: MessageProxy
            ) -> None:
                index = recorder._index_of(message)
                steps.index = -1 if index is None else index
                steps.began = time.monotonic()
                steps.synced = steps.started = steps.ended = steps.interrupted = 0.0

        class Synced(Middleware):
            def before_process_message(
                self, broker: dramatiq.Broker, message: MessageProxy
            ) -> None:
                steps.synced = time.monotonic()

        class Finished(Middleware):
            def after_process_message(
                self,
                broker: dramatiq.Broker,
                message: MessageProxy,
                *,
                result: Any | None = None,
                exception: BaseException | None = None,
            ) -> None:
                how = PROCESSED if exception is None else f"failed:{type(exception).__name__}"
                recorder._finish(message, how)

            def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
                recorder._finish(message, SKIPPED)

        broker.add_middleware(Finished(), before=type(broker.middleware[0]))
        broker.add_middleware(Began(), before=Abortable)
        broker.add_middleware(Synced(), after=Abortable)

    def started(self) -> float:
        """Call as the body starts; returns the time noted."""
        self._steps.started = at = time.monotonic()
        return at

    def ended(self) -> float:
        """Call as the body ends; returns the time noted."""
        self._steps.ended = at = time.monotonic()
        return at

    def interrupted(self) -> None:
        """Call as the body catches Abort."""
        self._steps.interrupted = time.monotonic()

    def _finish(self, message: MessageProxy, how: str) -> None:
        steps = self._steps
        # A message that a middleware before Began skipped was never begun:
        # it is left out, and so found missing.
        if steps.index < 0 or steps.index != self._index_of(message):
            return
        handling = Handling(
            how,
            steps.began,
            steps.synced,
            steps.started,
            steps.ended,
            steps.interrupted,
            time.monotonic(),
        )
        index, steps.index = steps.index, -1
        self._keep(index, handling)


class Tables(NamedTuple):
    """The sizes of an Abortable's tables at one moment."""

    at: float
    #: Requests in force (AbortRequests), and their expiry heap.
    requests: int
    expiries: int
    #: Messages running (Executions), and graceful aborts due (the watcher's).
    executions: int
    deadlines: int

    @classmethod
    def of(cls, abortable: Abortable) -> Tables:
        watcher = abortable._watcher
        return cls(
            at=time.monotonic(),
            requests=len(abortable.requests._table),
            expiries=abortable.requests._table.scheduled,
            executions=len(abortable.executions.running()),
            deadlines=len(watcher.timers.deadlines) if watcher is not None else 0,
        )

    def sizes(self) -> tuple[int, int, int, int]:
        return self.requests, self.expiries, self.executions, self.deadlines


def check_tables(
    tables: Tables, aborts: AbortLog, *, ttl: float, threads: int, where: str
) -> list[str]:
    """Flat memory: ``tables`` hold at most the running messages (of
    ``threads`` worker threads), and the requests not expired (``ttl``
    seconds after their abort) for longer than the watcher's ``FORGET_DELAY``."""
    violations = []
    oldest = tables.at - ttl - FORGET_DELAY - SLACK
    recent = sum(oldest <= sent.called <= tables.at for sent in aborts.sent.values())
    # Each abort request holds one entry, and one or two (cancel and abort
    # events) in the expiry heap.
    if tables.requests > recent or tables.expiries > 2 * recent:
        violations.append(
            f"{where}: {tables.requests} requests and {tables.expiries} expiries held, though "
            f"only {recent} messages were aborted within the TTL + {FORGET_DELAY + SLACK} s before"
        )
    if tables.executions > threads or tables.deadlines:
        violations.append(
            f"{where}: {tables.executions} executions and {tables.deadlines} deadlines held, "
            f"for {threads} threads and no grace"
        )
    return violations


def check_message(
    plan: Plan,
    handlings: list[Handling],
    sent: SentAbort | None,
    stats: Counter[str],
    *,
    ttl: float,
    result_says_cancelled: bool = True,
    also: Iterable[str] = (),
) -> list[str]:
    """One message's history against the guarantees every run keeps: no
    wrong-message abort, no lost abort, handled exactly once. ``ttl`` is
    the seconds an abort request lives; ``result_says_cancelled`` whether
    the message's result, where the test has one, says it was cancelled;
    ``also`` the problems the test found itself, told the same way."""
    found: list[str] = []
    if plan.when != NEVER and sent is None:
        found.append("its abort was never sent")
    if not handlings:
        found.append("never accounted for (lost)")
    elif len(handlings) > 1:
        found.append(f"handled {len(handlings)} times (retried or redelivered)")
    else:
        found.extend(_check_handling(plan, handlings[0], sent, stats, ttl, result_says_cancelled))
    found.extend(also)
    return [f"{plan}, abort {sent}: {problem}" for problem in found]


def _check_handling(
    plan: Plan,
    handling: Handling,
    sent: SentAbort | None,
    stats: Counter[str],
    ttl: float,
    result_says_cancelled: bool,
) -> list[str]:
    found: list[str] = []
    ran = handling.started > 0
    if handling.how not in (PROCESSED, SKIPPED):
        found.append(f"{handling.how} (an exception left the actor or its middleware)")
    if sent is None:
        stats["never aborted"] += 1
        if handling.interrupted:
            found.append("never aborted, yet Abort raised in its body (wrong message)")
        if handling.how == SKIPPED:
            found.append(
                "never aborted, yet skipped "
                + ("after its body started" if ran else "(cancelled)")
                + " (wrong message)"
            )
        elif not handling.ended and not handling.interrupted:
            found.append(f"never aborted, yet its body did not end ({handling.how})")
        return found
    stats[f"aborted {sent.when} {sent.mode.value} {sent.source}".rstrip()] += 1
    if sent.error:
        found.append(f"its abort failed: {sent.error}")

    # When the abort found it...
    end = handling.interrupted or handling.ended or handling.finished
    if sent.called < handling.began:
        stats["abort sent while it was queued"] += 1
    elif not ran or sent.called < handling.started:
        stats["abort sent as it was starting"] += 1
    elif sent.called < end:
        stats["abort sent while it was running"] += 1
    else:
        stats["abort sent after its body ended"] += 1
    # ... and what became of it.
    if handling.how == SKIPPED and not ran:
        stats["cancelled"] += 1
    elif handling.interrupted:
        stats["interrupted in its body"] += 1
    elif handling.how == SKIPPED:
        stats["aborted as its body ended"] += 1
    else:
        stats["ran to its end though aborted"] += 1

    # No wrong-message abort: Abort only in the body of a message aborted
    # (not cancelled), and only once its abort was sent.
    cancel = sent.mode is AbortMode.CANCEL
    if handling.interrupted and cancel:
        found.append("only cancelled, yet Abort was raised in its body")
    if handling.how == SKIPPED and ran and cancel:
        found.append("only cancelled, yet skipped after its body started")
    if handling.interrupted and handling.interrupted < sent.called:
        found.append(
            f"Abort raised {(sent.called - handling.interrupted) * 1000:.3f} ms before its "
            "abort was sent (wrong-message abort)"
        )
    if handling.how == SKIPPED and handling.finished < sent.called:
        found.append("skipped before its abort was sent (wrong-message abort)")

    # No lost abort: once the abort returned, the message never starts...
    if sent.returned < handling.began:
        stats["abort returned before processing began"] += 1
        if ran or not (handling.how == SKIPPED and result_says_cancelled):
            waited = handling.synced - handling.began
            if handling.began - sent.returned > ttl:
                stats["queued for longer than the TTL"] += 1
            elif waited >= SYNC_TIMEOUT:
                stats[LOST_AFTER_TIMEOUT] += 1
            else:
                found.append(
                    f"its abort returned {(handling.began - sent.returned) * 1000:.3f} ms before "
                    f"processing began, yet it was {handling.how}, its body "
                    f"{'ran' if ran else 'did not run'}"
                    + ("" if result_says_cancelled else " and its result does not say cancelled")
                    + f" (lost abort; the pre-start check took {waited * 1000:.1f} ms)"
                )
    # ... and a body that runs until its Abort comes is interrupted.
    if plan.holds and handling.ended:
        found.append("its body ran until it gave up: its Abort never came (lost abort)")
    elif plan.holds and ran and not handling.interrupted:
        found.append("its body started, yet was neither interrupted nor ended")
    return found


def check_run(stats: Counter[str], aborts: AbortLog, exercised: list[str]) -> list[str]:
    """What the whole run must show: one abort per message, few aborts lost
    to a timed-out pre-start check, and every case in ``exercised`` met at
    least once."""
    violations = [f"message {index} was sent a second abort" for index in aborts.twice]
    lost = stats[LOST_AFTER_TIMEOUT]
    returned_before = stats["abort returned before processing began"]
    if lost > max(LOST_AFTER_TIMEOUT_FLOOR, returned_before // LOST_AFTER_TIMEOUT_RATIO):
        violations.append(
            f"{lost} aborts were lost after Abortable's pre-start check gave up waiting "
            f"(SYNC_TIMEOUT): more than the machine's load explains"
        )
    violations.extend(f"no message was {what}" for what in exercised if not stats[what])
    return violations


def assert_no_violations(violations: list[str], summary: str) -> None:
    """Print the run's figures; fail with the first violations, if any."""
    print(summary)
    assert not violations, f"{len(violations)} violation(s); {summary}\n" + "\n".join(
        violations[:40]
    )


if __name__ == "__main__":
    sys.exit(aborter_main(sys.argv[1:]))
