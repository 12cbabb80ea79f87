"""The application that tests/stress/test_processes.py runs under the
``dramatiq`` command, configured from the environment.

Each worker process records what became of every message it handles, one
line per message (tests/stress/harness.py's ``Handling``), in memory; a
background thread pushes the lines to Redis in batches (one pipelined write
every ``FLUSH_INTERVAL``) together with a snapshot of the sizes of the
process's Abortable tables.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time

import dramatiq
import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware
from redis.typing import EncodableT, FieldT

from dramatiq_abort import Abort, Abortable
from dramatiq_abort.backends import RedisBackend
from tests.stress.harness import Handling, Recorder, Tables

#: The Redis of the run: broker, abort backend and records.
REDIS_URL = os.environ["STRESS_REDIS_URL"]
#: Everything the run makes starts with it.
NAMESPACE = os.environ["STRESS_NAMESPACE"]
#: Milliseconds an abort request lives: the test's ``ABORT_TTL``.
ABORT_TTL = int(os.environ["STRESS_ABORT_TTL"])
#: The queue and the actor of the run's messages.
QUEUE = "stress"
ACTOR = "stress_work"

#: Where the abort backend, the broker and the records keep their keys: the
#: test checks that nothing is left under the first once the TTLs are over.
ABORTS_NAMESPACE = NAMESPACE + "aborts:"
BROKER_NAMESPACE = NAMESPACE + "broker"
RECORDS = NAMESPACE + "records:"
#: One line per message handled: ``Handling.dumps``.
LOG_KEY = RECORDS + "log"
#: Holders push their index here as their body starts, for the test to abort them.
HELD_KEY = RECORDS + "held"
#: A hash per worker process, by pid: its latest snapshot.
STATS_KEY = RECORDS + "stats:"


def told_key(index: int) -> str:
    """Where the test tells holder ``index`` that its cancel was sent."""
    return f"{RECORDS}told:{index}"


# What a body does (its second argument; the third is milliseconds).
QUICK = "quick"
SPIN = "spin"  # pure Python for a few ms: holds the GIL
SLEEP = "sleep"  # time.sleep for a few ms: releases it
HOLD_ABORT = "hold-abort"  # runs until its Abort comes, at most HOLD_BOUND
HOLD_CANCEL = "hold-cancel"  # runs until told its cancel was sent, then a little more

#: How long a holder waits for its abort, or for being told of its cancel:
#: far beyond any abort's latency, so a holder reaching it lost its abort.
HOLD_BOUND = 10.0
#: How long a cancel holder goes on once told: time for an Abort wrongly
#: delivered by the cancel to land in it.
AFTER_CANCEL = 0.02
#: Seconds between two pushes of the lines: the test's view lags that much.
FLUSH_INTERVAL = 0.02
#: Seconds between two snapshots of the tables.
STATS_INTERVAL = 0.1

broker = RedisBroker(url=REDIS_URL, namespace=BROKER_NAMESPACE)
abortable = Abortable(
    backend=RedisBackend.from_url(REDIS_URL, namespace=ABORTS_NAMESPACE), abort_ttl=ABORT_TTL
)
broker.add_middleware(abortable)
dramatiq.set_broker(broker)

_client = redis.Redis.from_url(REDIS_URL)


class Flusher:
    """Lines to push to Redis, and the thread that pushes them with the
    process's snapshots."""

    def __init__(self) -> None:
        # Appended to by worker threads, drained by the flusher: deque's
        # append and popleft are atomic, so no line is lost between them.
        self.lines: collections.deque[str] = collections.deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def keep(self, index: int, handling: Handling) -> None:
        self.lines.append(handling.dumps(index))

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="stress-flusher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.flush(with_stats=True)

    def _run(self) -> None:
        next_stats = 0.0
        while not self._stop.wait(FLUSH_INTERVAL):
            now = time.monotonic()
            with_stats = now >= next_stats
            if with_stats:
                next_stats = now + STATS_INTERVAL
            try:
                self.flush(with_stats)
            except redis.RedisError as e:
                # The test sees the lines missing and says so; keep trying.
                print(f"stress flusher could not write to Redis: {e!r}", file=sys.stderr)

    def flush(self, with_stats: bool) -> None:
        lines = []
        while self.lines:
            lines.append(self.lines.popleft())
        pipe = _client.pipeline(transaction=False)
        if lines:
            pipe.rpush(LOG_KEY, *lines)
        if with_stats:
            tables = Tables.of(abortable)
            mapping: dict[FieldT, EncodableT] = dict(zip(tables._fields, tables, strict=False))
            pipe.hset(f"{STATS_KEY}{os.getpid()}", mapping=mapping)
        pipe.execute()


flusher = Flusher()


class Flushing(Middleware):
    """Pushes the lines from the moment the workers boot until they stop."""

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        flusher.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        flusher.stop()


def _index_of(message: MessageProxy) -> int | None:
    return int(message.args[0]) if message.actor_name == ACTOR else None


recorder = Recorder(_index_of, flusher.keep)
recorder.install(broker)
broker.add_middleware(Flushing())


@dramatiq.actor(actor_name=ACTOR, queue_name=QUEUE, max_retries=0)
def stress_work(index: int, kind: str, millis: float) -> None:
    """Run as ``kind`` says, noting when the body started, ended, or was
    interrupted."""
    try:
        started = recorder.started()
        if kind == SPIN:
            deadline = started + millis / 1000
            while time.monotonic() < deadline:
                pass
        elif kind == SLEEP:
            time.sleep(millis / 1000)
        elif kind == HOLD_ABORT:
            _client.rpush(HELD_KEY, index)
            deadline = started + HOLD_BOUND
            while time.monotonic() < deadline:
                time.sleep(0.001)
        elif kind == HOLD_CANCEL:
            _client.rpush(HELD_KEY, index)
            _client.blpop([told_key(index)], HOLD_BOUND)
            deadline = time.monotonic() + AFTER_CANCEL
            while time.monotonic() < deadline:
                pass
        recorder.ended()
    except Abort:
        recorder.interrupted()
        raise
