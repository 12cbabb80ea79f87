"""Stress across processes: tens of thousands of short messages on real
``dramatiq`` worker processes (tests/programs/stress_app.py), a random
subset aborted at random moments, from this process and from a third one.

Every worker process writes one line per message it handles (its
``Handling``, see tests/stress/harness.py) and, every 0.1 s, the sizes of
its Abortable tables; the test reads its RSS in /proc. Besides what every
stress run checks (tests/stress/harness.py), the test checks:

* a "holder", whose body runs until its ``ABORT`` comes, is aborted only
  once the test saw it start; a holder that is only cancelled while it
  runs (and told so, so that it goes on a little afterwards) ends normally;
* once the TTLs are over, no key is left in the abort backend's namespace;
* flat memory: each worker process's RSS grows by less than
  ``RSS_GROWTH_MIB`` between a quarter of the messages and the end, and
  its tables hold nothing once every request expired.
"""

from __future__ import annotations

import importlib
import os
import random
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import dramatiq
import pytest
import redis

from dramatiq_abort import Abortable, AbortMode
from dramatiq_abort.backends import RedisBackend
from dramatiq_abort.worker.timers import FORGET_DELAY

from ..support import ROOT, start_dramatiq, stop_process_group
from .harness import (
    NEVER,
    PRE,
    PROCESSED,
    SLACK,
    WAIT,
    AborterProcess,
    AbortLog,
    Handling,
    Plan,
    SentAbort,
    Tables,
    assert_no_violations,
    check_message,
    check_run,
    check_tables,
    run_seed,
    scaled,
)

# About 25 s on an idle 2-core machine; room for a loaded one.
pytestmark = [pytest.mark.timeout(150), pytest.mark.stress, pytest.mark.processes]

#: Messages of a run.
MESSAGES = scaled(20_000)
#: Worker processes, and threads in each.
PROCESSES = 2
THREADS = 4
#: Milliseconds an abort request lives: short, so that the keys are
#: checked soon after the run, long enough for any message's wait in the queue.
ABORT_TTL = 3000
#: Messages sent and not accounted for yet, at most: a backlog for aborts to
#: find queued, small enough that they also find some running.
WINDOW = 300
#: Chance, after each message sent, that some recent messages are aborted.
RANDOM_ABORT_RATE = 0.1
#: Measured here, a worker process's RSS grows by 0.1-0.4 MiB between a
#: quarter of the run and its end. Keeping as little as 1 KiB per message
#: (less than a message's proxy and options weigh) adds ~7.5 MiB over the
#: last three quarters of a process's 10,000 messages.
RSS_GROWTH_MIB = 4
#: How long past the moment it is due something may take to show: a key's
#: expiry (Redis expires keys lazily and in a background cycle), a table's
#: cleanup (seen through snapshots taken every 0.1 s).
MARGIN = 5.0

# When a message is aborted, besides NEVER and PRE.
RANDOM = "random"  # at a random moment: queued, starting, running or done
HELD = "held"  # once its body (a holder's) was seen running
# Where an abort is sent from.
TEST = "test"  # this process
THIRD = "third"  # the third process


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def holds_nothing(snapshot: Tables) -> bool:
    """Whether a worker process holds no request and no running message."""
    return not (snapshot.requests or snapshot.expiries or snapshot.executions or snapshot.deadlines)


def rss_kib(pid: int) -> int:
    """The resident set size of process ``pid``, in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


class Collector:
    """Reads the workers' lines as they come, for the sender's window and
    the final check."""

    def __init__(self, client: redis.Redis, log_key: str, count: int) -> None:
        self.client = client
        self.log_key = log_key
        self.count = count
        self.handlings: dict[int, list[Handling]] = defaultdict(list)
        #: The lowest index not accounted for: about where workers are.
        self.frontier = 0
        self.changed = threading.Condition()
        self.error: BaseException | None = None
        self._offset = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stress-collector", daemon=True)

    @property
    def accounted(self) -> int:
        return len(self.handlings)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(WAIT)

    def wait_for_accounted(self, count: int, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(
                lambda: self.accounted >= count or self.error is not None, timeout
            )

    def _run(self) -> None:
        try:
            while not self._stop.wait(0.01):
                self.collect()
        except BaseException as e:
            with self.changed:
                self.error = e
                self.changed.notify_all()

    def collect(self) -> None:
        raw = self.client.lrange(self.log_key, self._offset, self._offset + 9999)
        if not raw:
            return
        self._offset += len(raw)
        parsed = [Handling.loads(text(item)) for item in raw]
        with self.changed:
            for index, handling in parsed:
                self.handlings[index].append(handling)
            while self.frontier < self.count and self.frontier in self.handlings:
                self.frontier += 1
            self.changed.notify_all()


@dataclass
class StressRun:
    """The worker processes, the third process, and the test's own view of
    the application: its broker, an Abortable to send aborts through, and
    the Redis the workers record into."""

    app: ModuleType
    env: dict[str, str]
    logs: Path
    middleware: Abortable
    client: redis.Redis
    workers: subprocess.Popen[bytes] | None = None
    third: AborterProcess | None = None
    pids: list[int] = field(default_factory=list)

    def start(self) -> None:
        worker_log = (self.logs / "workers.log").open("wb")
        third_log = (self.logs / "third.log").open("wb")
        with worker_log, third_log:
            self.workers = start_dramatiq(
                "tests.programs.stress_app",
                PROCESSES,
                THREADS,
                env=self.env,
                stdout=worker_log,
                stderr=subprocess.STDOUT,
            )
            self.third = AborterProcess(
                self.app.REDIS_URL, self.app.ABORTS_NAMESPACE, ABORT_TTL, stderr=third_log
            )
        # Each worker process snapshots itself once its workers have booted,
        # which they do once its abort watcher is subscribed.
        deadline = time.monotonic() + WAIT
        while len(self.pids) < PROCESSES:
            assert time.monotonic() < deadline, f"{PROCESSES} worker processes did not boot"
            assert self.workers.poll() is None, "the dramatiq command exited:\n" + self.log_tail()
            keys = self.client.scan_iter(match=self.app.STATS_KEY + "*", count=1000)
            self.pids = sorted(int(text(key).rpartition(":")[2]) for key in keys)
            time.sleep(0.05)
        assert len(self.pids) == PROCESSES, f"more worker processes than asked: {self.pids}"

    def snapshot(self, pid: int) -> Tables | None:
        values = {text(k): text(v) for k, v in self.client.hgetall(self.stats_key(pid)).items()}
        if not values:
            return None
        return Tables(float(values.pop("at")), **{name: int(v) for name, v in values.items()})

    def snapshots_after(self, moment: float) -> dict[int, Tables]:
        """Each worker process's first snapshot taken after ``moment``."""
        found: dict[int, Tables] = {}
        deadline = time.monotonic() + WAIT
        while len(found) < len(self.pids):
            assert time.monotonic() < deadline, f"no snapshot of {self.pids} after {moment}"
            for pid in self.pids:
                snapshot = self.snapshot(pid)
                if snapshot is not None and snapshot.at > moment:
                    found[pid] = snapshot
            time.sleep(0.02)
        return found

    def rss_kib(self) -> dict[int, int]:
        """Each worker process's RSS now, read here from /proc."""
        return {pid: rss_kib(pid) for pid in self.pids}

    def stats_key(self, pid: int) -> str:
        return f"{self.app.STATS_KEY}{pid}"

    def abort_keys(self) -> list[str]:
        pattern = self.app.ABORTS_NAMESPACE + "*"
        return [text(key) for key in self.client.scan_iter(match=pattern, count=1000)]

    def log_tail(self, lines: int = 30) -> str:
        content = (self.logs / "workers.log").read_text(errors="replace")
        return "\n".join(content.splitlines()[-lines:])

    def logged_errors(self) -> list[str]:
        found: list[str] = []
        for name in ("workers.log", "third.log"):
            content = (self.logs / name).read_text(errors="replace")
            found.extend(
                f"{name}: {line}"
                for line in content.splitlines()
                if "[ERROR]" in line or "[CRITICAL]" in line or line.startswith("Traceback")
            )
        return found

    def close(self) -> None:
        if self.workers is not None:
            stop_process_group(self.workers)
        if self.third is not None:
            self.third.close(WAIT)


@pytest.fixture
def stress_run(
    redis_url: str,
    namespace: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[StressRun]:
    settings = {
        "STRESS_REDIS_URL": redis_url,
        "STRESS_NAMESPACE": namespace,
        "STRESS_ABORT_TTL": str(ABORT_TTL),
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    previous_broker = dramatiq.get_broker()
    # The same application, imported here to send messages: read at import,
    # the settings must be this test's.
    import tests.programs.stress_app as app

    app = importlib.reload(app)
    middleware = Abortable(
        backend=RedisBackend.from_url(redis_url, namespace=app.ABORTS_NAMESPACE),
        abort_ttl=ABORT_TTL,
    )
    env = {**os.environ, **settings, "PYTHONPATH": str(ROOT)}
    run = StressRun(app, env, tmp_path, middleware, redis_client)
    try:
        run.start()
        yield run
    finally:
        run.close()
        app.broker.close()
        app._client.close()
        backend = middleware.backend
        assert isinstance(backend, RedisBackend)
        backend.client.close()
        dramatiq.set_broker(previous_broker)
        # The redis_client fixture deletes whatever is left in the namespace.


class Stress:
    """One run: send every message, abort some, wait for all; then check."""

    def __init__(self, run: StressRun) -> None:
        self.run = run
        self.app = run.app
        self.seed = run_seed()
        self.rng = random.Random(self.seed)
        self.plans = self.make_plans()
        self.collector = Collector(run.client, self.app.LOG_KEY, len(self.plans))
        self.aborts = AbortLog()
        #: Messages an abort was (or is being) sent for: at most one each.
        self.aborted: set[int] = {plan.index for plan in self.plans if plan.when != NEVER}
        self.errors: list[str] = []
        self.sent = 0
        self.quarter: tuple[dict[int, int], dict[int, Tables]] | None = None
        self._holders_done = threading.Event()

    def make_plans(self) -> list[Plan]:
        app, rng = self.app, self.rng
        plans = []
        for index in range(MESSAGES):
            roll = rng.random()
            millis = 0.0
            when, mode = NEVER, None
            if roll < 0.012:
                kind, when, mode = app.HOLD_ABORT, HELD, AbortMode.ABORT
            elif roll < 0.018:
                kind, when, mode = app.HOLD_CANCEL, HELD, AbortMode.CANCEL
            elif roll < 0.55:
                kind = app.QUICK
            elif roll < 0.75:
                kind, millis = app.SPIN, rng.uniform(0.2, 3)
            else:
                kind, millis = app.SLEEP, rng.uniform(0.5, 5)
            if when == NEVER and rng.random() < 0.03:
                when = PRE
                mode = AbortMode.CANCEL if rng.random() < 0.3 else AbortMode.ABORT
            message = self.app.stress_work.message(index, kind, millis)
            source = rng.choice([TEST, THIRD])
            holds = kind == app.HOLD_ABORT
            plans.append(Plan(index, kind, millis, message, holds, when, mode, source=source))
        return plans

    # Sending aborts.

    def abort(self, when: str, mode: AbortMode, source: str, indexes: list[int]) -> None:
        """Abort ``indexes`` from ``source``; the third process's answer
        records its abort later."""
        ids = [self.plans[index].message_id for index in indexes]

        def record(called: float, returned: float, error: str) -> None:
            self.aborts.record(indexes, SentAbort(when, mode, source, called, returned, error))

        if source == THIRD:
            assert self.run.third is not None
            self.run.third.send(mode, ids, record)
            return
        called = time.monotonic()
        error = ""
        try:
            if len(ids) == 1:
                self.run.middleware.abort(ids[0], mode=mode)
            else:
                self.run.middleware.abort_many(ids, mode=mode)
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
        record(called, time.monotonic(), error)

    def abort_and_wait(self, plan: Plan, when: str) -> None:
        """Abort ``plan``'s message as planned; return once the abort returned."""
        assert plan.mode is not None
        self.abort(when, plan.mode, plan.source, [plan.index])
        if not self.aborts.wait_for_message(plan.index, WAIT):
            raise AssertionError(f"the {plan.source} process did not abort {plan}")

    def abort_holders(self) -> None:
        """Abort each holder once its body runs; tell a cancelled one its
        cancel was sent, so that it goes on and ends."""
        client = self.run.client
        try:
            while not self._holders_done.is_set():
                popped = client.blpop([self.app.HELD_KEY], 0.2)
                if popped is None:
                    continue
                plan = self.plans[int(popped[1])]
                self.abort_and_wait(plan, HELD)
                if plan.mode is AbortMode.CANCEL:
                    client.rpush(self.app.told_key(plan.index), 1)
        except BaseException as e:
            self.errors.append(f"the holders' aborter failed: {e!r}")

    def abort_at_random(self) -> None:
        """Abort a few recent messages: some far enough back to be done or
        in the queue, some about where the workers are (running or starting)."""
        rng = self.rng
        picked = []
        for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 4)):
            if rng.random() < 0.5:
                index = rng.randrange(max(0, self.sent - 2 * WINDOW), self.sent)
            else:
                # The workers' lines come 20-30 ms late: the running messages
                # are some tens past the frontier. Those that take a few ms
                # are the likeliest to be found running.
                index = self.collector.frontier + rng.randint(0, 70)
                for _ in range(8):
                    if index >= self.sent or self.plans[index].kind != self.app.QUICK:
                        break
                    index += 1
            if 0 <= index < self.sent and index not in self.aborted:
                self.aborted.add(index)
                picked.append(index)
        if picked:
            mode = AbortMode.CANCEL if rng.random() < 0.3 else AbortMode.ABORT
            self.abort(RANDOM, mode, rng.choice([TEST, THIRD]), picked)

    # The run.

    def send_all(self) -> None:
        collector, broker = self.collector, self.app.broker
        for plan in self.plans:
            if not collector.wait_for_accounted(self.sent - WINDOW + 1, WAIT):
                raise AssertionError(
                    f"the workers stopped: {collector.accounted} of {self.sent} messages "
                    f"accounted for ({collector.error!r})\n{self.run.log_tail()}"
                )
            if plan.when == PRE:
                self.abort_and_wait(plan, PRE)
            broker.enqueue(plan.message)
            self.sent += 1
            if self.rng.random() < RANDOM_ABORT_RATE:
                self.abort_at_random()
            if self.quarter is None and collector.accounted >= len(self.plans) // 4:
                self.quarter = (self.run.rss_kib(), self.run.snapshots_after(0))

    def execute(self) -> None:
        run, collector = self.run, self.collector
        started = time.monotonic()
        holders = threading.Thread(target=self.abort_holders, name="stress-holders", daemon=True)
        collector.start()
        holders.start()
        try:
            self.send_all()
            if not collector.wait_for_accounted(len(self.plans), WAIT):
                raise AssertionError(
                    f"only {collector.accounted} of {len(self.plans)} messages accounted for "
                    f"within {WAIT} s ({collector.error!r})\n{run.log_tail()}"
                )
        finally:
            self._holders_done.set()
            holders.join(WAIT)
            if self.run.third is not None and not self.run.third.wait_all(WAIT):
                self.errors.append(f"the third process did not answer every call within {WAIT} s")
            collector.stop()
        collector.collect()
        done = time.monotonic()
        processing_time = done - started

        violations, stats = self.check()
        violations.extend(self.errors)
        if run.third is not None:
            violations.extend(run.third.errors)

        # Memory: the RSS, and the tables once every message is done.
        assert self.quarter is not None
        quarter_rss, quarter_tables = self.quarter
        end_rss, end_tables = run.rss_kib(), run.snapshots_after(done)
        violations.extend(self.check_tables(quarter_tables, "at a quarter"))
        violations.extend(self.check_tables(end_tables, "at the end"))
        for pid in run.pids:
            growth = (end_rss[pid] - quarter_rss[pid]) / 1024
            if growth > RSS_GROWTH_MIB:
                violations.append(
                    f"worker process {pid}: RSS grew by {growth:.1f} MiB between a quarter of the "
                    f"messages and the end ({quarter_rss[pid]} -> {end_rss[pid]} KiB), more than "
                    f"{RSS_GROWTH_MIB} MiB"
                )

        # No key left once the TTLs are over: the last ones were written
        # before the last message was accounted for or the last abort returned.
        expired = (
            max([done, *(sent.returned for sent in self.aborts.sent.values())]) + ABORT_TTL / 1000
        )
        violations.extend(self.wait_no_abort_key(expired + MARGIN))

        # The tables once every request expired and the watchers had the
        # time to forget them, with no later request to prompt them. A
        # worker's copy of a request expires when the backend's does, plus
        # the time the event took to reach it.
        forgotten_tables = self.wait_tables(holds_nothing, expired + FORGET_DELAY + SLACK + MARGIN)
        for pid, snapshot in forgotten_tables.items():
            if not holds_nothing(snapshot):
                violations.append(
                    f"worker process {pid} still holds entries once all expired: {snapshot}"
                )

        violations.extend(f"logged: {line}" for line in run.logged_errors()[:10])
        tables = {
            "a quarter in": quarter_tables,
            "at the end": end_tables,
            "once all expired": forgotten_tables,
        }
        figures = [
            f"seed {self.seed}: {len(self.plans)} messages processed in {processing_time:.1f} s, "
            f"{len(self.aborts.sent)} aborted",
            *(
                f"worker process {pid}: RSS {quarter_rss[pid]} KiB a quarter in, "
                f"{end_rss[pid]} KiB at the end; (requests, expiries, executions, deadlines) "
                + ", ".join(f"{moment} {found[pid].sizes()}" for moment, found in tables.items())
                for pid in run.pids
            ),
            str(dict(sorted(stats.items()))),
        ]
        assert_no_violations(violations, "\n".join(figures))

    def wait_tables(self, settled: Callable[[Tables], bool], deadline: float) -> dict[int, Tables]:
        """Tabless in which every worker process is ``settled``, or the
        last ones taken if that does not happen by ``deadline``."""
        moment = time.monotonic()
        while True:
            snapshots = self.run.snapshots_after(moment)
            if all(settled(s) for s in snapshots.values()) or time.monotonic() > deadline:
                return snapshots
            moment = max(s.at for s in snapshots.values())

    def wait_no_abort_key(self, deadline: float) -> list[str]:
        """Wait until no key is left in the abort backend's namespace; a
        violation if some still are at ``deadline``."""
        keys = self.run.abort_keys()
        while keys and time.monotonic() < deadline:
            time.sleep(0.05)
            keys = self.run.abort_keys()
        if keys:
            return [f"{len(keys)} key(s) left in the abort namespace after the TTLs: {keys[:5]}"]
        return []

    def check_tables(self, snapshots: dict[int, Tables], moment: str) -> list[str]:
        return [
            violation
            for pid, tables in snapshots.items()
            for violation in check_tables(
                tables,
                self.aborts,
                ttl=ABORT_TTL / 1000,
                threads=THREADS,
                where=f"worker process {pid} {moment}",
            )
        ]

    def check(self) -> tuple[list[str], Counter[str]]:
        """Every message's history against the guarantees."""
        violations: list[str] = []
        stats: Counter[str] = Counter()
        for plan in self.plans:
            handlings = self.collector.handlings.get(plan.index, [])
            sent = self.aborts.sent.get(plan.index)
            if plan.index in self.aborted and sent is None:
                violations.append(f"{plan}: its abort was never sent")
            violations.extend(
                check_message(
                    plan,
                    handlings,
                    sent,
                    stats,
                    ttl=ABORT_TTL / 1000,
                    also=self.check_holder(plan, handlings[:1], sent),
                )
            )
            if sent is not None and sent.when == RANDOM and handlings:
                handling = handlings[0]
                if handling.started < sent.called < (handling.interrupted or handling.ended):
                    stats["random abort sent while it was running"] += 1
        violations.extend(
            check_run(
                stats,
                self.aborts,
                [
                    "abort sent while it was queued",
                    "abort sent while it was running",
                    "abort sent after its body ended",
                    "cancelled",
                    "interrupted in its body",
                    "never aborted",
                ],
            )
        )
        for source in (TEST, THIRD):
            for mode in AbortMode:
                if not any(
                    s.source == source and s.mode is mode for s in self.aborts.sent.values()
                ):
                    violations.append(f"no {mode.value} was sent from the {source} process")
        return violations, stats

    def check_holder(
        self, plan: Plan, handlings: list[Handling], sent: SentAbort | None
    ) -> list[str]:
        """A holder is aborted once its body started; a cancelled one ends normally."""
        app = self.app
        found = []
        for handling in handlings:
            holder = plan.kind in (app.HOLD_ABORT, app.HOLD_CANCEL)
            if holder and sent is not None and not handling.started < sent.called:
                found.append("a holder aborted before its body started (test bug)")
            if plan.kind == app.HOLD_CANCEL and (handling.how != PROCESSED or not handling.ended):
                found.append(
                    f"cancelled while its body ran, yet {handling.how} and "
                    + ("ended" if handling.ended else "did not end")
                )
        return found


def test_stress_worker_processes(stress_run: StressRun) -> None:
    Stress(stress_run).execute()
