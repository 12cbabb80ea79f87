"""Scale: aborting many messages in one call, and what the watcher costs
while many abortable messages run in one worker process.

Bulk abort. ``Abortable.abort_many()`` of 10,000 ids (``--ids``) against
10,000 ``abort()`` calls, each timed from the first call to the return of
the last, median of 5 runs (``--runs``), fresh ids each run: first with no
worker subscribed, then with one worker process subscribed, where what
matters is when its watcher knows every request. The worker is given the
ids before they are sent, and looks them up with
``abortable.get_abort_request(id)`` (a table lookup, what
``abort_requested(id)`` does) every half millisecond until it finds them
all; ``time.monotonic()`` is one clock for every process of the machine,
so the moment it answers is compared with the moment the first call was
made. Only the public API is used: the figures are those of whatever
``RedisBackend.notify`` does with a large batch.

Watcher cost. A worker process with N worker threads (1, 100 and 1,000;
``--running``) runs N abortable messages at once: N - 1 that wait in
``dramatiq_abort.sleep()`` for as long as the case lasts, and a target
that waits the same way. For each N:

- the CPU time of the watcher and of the whole process over 5 s
  (``--idle-window``) while the N messages run and nothing is aborted;
- abort latency, from just before ``abort()`` in this process to the
  target's ``except Abort`` in the worker, p50 and p99 over 100 targets
  (``--samples``), each aborted 0-0.2 s after it started, after one
  unsampled abort that warms the watcher up;
- the watcher thread's CPU time over those aborts, per abort.

Threads rather than ``async def`` actors: dramatiq runs every message,
an async one too, on a worker thread of its own that waits for it (and
wakes every 0.1 s to do so), so 1,000 messages in flight means 1,000
worker threads either way; waiting in ``dramatiq_abort.sleep()`` wakes no
thread until the abort comes. Thread CPU times are read in the worker
process from each thread's CPU clock (``time.pthread_getcpuclockid``):
nanoseconds, where ``/proc/self/task/<tid>/stat`` counts 10 ms ticks; so
Linux only. The thread that reads them is left out of the figures. This
package only: 1.2.1 has no watcher to measure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import common
import dramatiq
import redis

import dramatiq_abort
from dramatiq_abort import Abort, Abortable, abort

QUEUE = "bench-scale"
#: The name the watcher thread of a worker process runs under.
WATCHER_NAME = "dramatiq-abort-watcher"
#: Seconds a message waits at most when no abort reaches it.
HOLD_LIMIT = 3600.0
#: Seconds the worker is left alone once every message runs, before idle CPU is counted.
SETTLE = 1.0
#: Seconds between two looks of the worker at whether it knows every request.
LOOKUP_INTERVAL = 0.0005
#: Seconds after which an abort that has not landed is a miss.
ABORT_TIMEOUT = 5.0
#: Seconds after which a worker that does not know every request of a bulk abort gives up.
KNOW_TIMEOUT = 60.0
#: Connections of each client of the worker process that its threads share.
WORKER_CONNECTIONS = 20

_reporter: redis.Redis | None = None
_namespace = ""
_middleware: Abortable | None = None


def hold(role: str, token: str) -> None:
    """Wait until aborted; report when it started and when the Abort landed."""
    assert _reporter is not None
    try:
        report(role, "started", token)
        dramatiq_abort.sleep(HOLD_LIMIT, middleware=_middleware)
    except Abort:
        report(role, "aborted", token)
        raise


def report(role: str, event: str, token: str) -> None:
    assert _reporter is not None
    _reporter.rpush(f"{_namespace}{role}:{event}", json.dumps([token, time.monotonic()]))


def declare(broker: dramatiq.Broker) -> dramatiq.Actor[[str, str], None]:
    return common.actor(broker, "bench_hold", QUEUE)(hold)


# The worker process.


def work(args: argparse.Namespace) -> None:
    """Run ``hold`` with the Abortable middleware, answering the commands
    that arrive on stdin (one JSON list a line) until it closes."""
    global _reporter, _namespace, _middleware
    # Aborted messages are logged as skipped; that is what is measured here.
    logging.getLogger("dramatiq.worker.WorkerThread").setLevel(logging.ERROR)
    # Up to 1,000 threads at once report and ack (dramatiq), each through
    # one of these clients; the middleware's from_url client pools alike.
    _reporter = common.pooled_client(args.redis_url, WORKER_CONNECTIONS)
    _namespace = args.namespace
    broker, _ = common.make_broker(
        args.redis_url,
        args.namespace,
        abortable=False,
        client=common.pooled_client(args.redis_url, WORKER_CONNECTIONS),
    )
    _middleware = common.make_abortable(args.redis_url, args.namespace)
    broker.add_middleware(_middleware)
    declare(broker)
    with common.running_worker(broker, args.threads):
        print("ready", flush=True)
        for line in sys.stdin:
            command, *operands = json.loads(line)
            if command == "cpu":
                answer(thread_cpu_seconds())
            elif command == "watch":
                # Acknowledged first: the ids are sent only once we look.
                answer("watching")
                answer(when_known(_middleware, operands[0], operands[1]))
            else:
                raise ValueError(f"unknown command {command!r}")
        common.STOP.set()


def answer(value: Any) -> None:
    print(json.dumps(value), flush=True)


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by the process ("process"), by the watcher,
    and by the other threads grouped by class; all but the calling thread,
    which only measures (reading 1,000 thread clocks takes milliseconds)."""
    used = {"process": time.process_time() - time.thread_time()}
    for thread in threading.enumerate():
        if thread.ident is None or thread is threading.current_thread():
            continue
        kind = "watcher" if thread.name == WATCHER_NAME else type(thread).__name__
        try:
            seconds = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except OSError:  # It ended since it was listed.
            continue
        used[kind] = used.get(kind, 0.0) + seconds
    return used


def when_known(middleware: Abortable, message_ids: list[str], timeout: float) -> float | None:
    """``time.monotonic()`` once this process knows a request for every id
    of ``message_ids``; None after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    known = 0
    # In order, but each id is waited for until found: right whatever the
    # order the requests come in.
    while known < len(message_ids):
        if middleware.get_abort_request(message_ids[known]) is not None:
            known += 1
            continue
        if time.monotonic() > deadline:
            return None
        time.sleep(LOOKUP_INTERVAL)
    return time.monotonic()


# The process that sends the messages and the aborts.


def ask(worker: subprocess.Popen[str], *command: Any) -> Any:
    """Send ``command`` to a worker started by ``common.worker_process``; its answer."""
    assert worker.stdin is not None
    worker.stdin.write(json.dumps(command) + "\n")
    worker.stdin.flush()
    return read_answer(worker)


def read_answer(worker: subprocess.Popen[str]) -> Any:
    assert worker.stdout is not None
    line = worker.stdout.readline()
    if not line:
        raise RuntimeError("the worker process ended")
    return json.loads(line)


def worker_args(args: argparse.Namespace, namespace: str, threads: int) -> list[str]:
    return [
        "--worker",
        "--redis-url",
        args.redis_url,
        "--namespace",
        namespace,
        "--threads",
        str(threads),
    ]


def new_ids(count: int) -> list[str]:
    """Ids shaped like dramatiq's; no message needs to exist for a request."""
    return [str(uuid.uuid4()) for _ in range(count)]


def abort_one_by_one(sender: Abortable, message_ids: Sequence[str]) -> None:
    for message_id in message_ids:
        abort(message_id, middleware=sender)


def time_bulk(
    args: argparse.Namespace,
    namespace: str,
    send: Callable[[list[str]], None],
    worker: subprocess.Popen[str] | None,
) -> tuple[float, float | None]:
    """Seconds until ``send`` of fresh ids returns, and until ``worker`` knows
    them all (None without a worker, or when it never did)."""
    message_ids = new_ids(args.ids)
    if worker is not None:
        ask(worker, "watch", message_ids, KNOW_TIMEOUT)
    sent_at = time.monotonic()
    send(message_ids)
    returned = time.monotonic() - sent_at
    known = None
    if worker is not None:
        known_at = read_answer(worker)
        known = None if known_at is None else known_at - sent_at
    # Each run leaves 2 keys an id: gone before the next, on a shared Redis.
    common.delete_namespace(args.redis_url, namespace + "aborts:")
    return returned, known


def bulk_abort(args: argparse.Namespace) -> dict[str, dict[str, list[float | None]]]:
    """The times of each way to send, alone and with a worker subscribed."""
    found: dict[str, dict[str, list[float | None]]] = {}
    with common.namespace_on(args.redis_url, "scale-bulk") as namespace:
        sender = common.make_abortable(args.redis_url, namespace)
        ways: dict[str, Callable[[list[str]], None]] = {
            "many": sender.abort_many,
            "single": lambda message_ids: abort_one_by_one(sender, message_ids),
        }
        for way in ways:
            found[way] = {"alone": [], "subscribed": [], "known": []}
        # The two ways alternate, so that both see the same noise.
        for _ in range(args.runs):
            for way, send in ways.items():
                found[way]["alone"].append(time_bulk(args, namespace, send, None)[0])
        with common.worker_process(__file__, worker_args(args, namespace, threads=1)) as worker:
            for _ in range(args.runs):
                for way, send in ways.items():
                    returned, known = time_bulk(args, namespace, send, worker)
                    found[way]["subscribed"].append(returned)
                    found[way]["known"].append(known)
    return found


class Case:
    """A worker process running abortable messages, and the aborts sent to it."""

    def __init__(self, args: argparse.Namespace, namespace: str) -> None:
        self.client = redis.Redis.from_url(args.redis_url)
        self.namespace = namespace
        broker, _ = common.make_broker(args.redis_url, namespace, abortable=False)
        self.actor = declare(broker)
        self.sender = common.make_abortable(args.redis_url, namespace)

    def start(self, role: str) -> tuple[str, str]:
        """Send one ``hold``; its token and message id."""
        token = uuid.uuid4().hex
        return token, self.actor.send(role, token).message_id

    def wait(self, role: str, event: str, token: str, timeout: float) -> list[Any] | None:
        """What the message ``token`` reported as ``event``, or None after ``timeout``."""
        return common.wait_report(self.client, f"{self.namespace}{role}:{event}", token, timeout)

    def count(self, role: str, event: str) -> int:
        """How many messages of ``role`` reported ``event``."""
        return int(self.client.llen(f"{self.namespace}{role}:{event}"))

    def end(self, message_ids: list[str]) -> None:
        """Abort ``message_ids`` and wait until the worker has recorded an
        outcome for each (a message that ends otherwise than through its
        ``except Abort`` has one too)."""
        self.sender.abort_many(message_ids)
        common.wait_for(
            lambda: all(self.sender.outcome(m) is not None for m in message_ids),
            300,
            "the held messages to end",
        )

    def start_target(self) -> tuple[str, str]:
        """Send a target and wait until it runs; its token and message id."""
        token, message_id = self.start("target")
        if self.wait("target", "started", token, 30) is None:
            raise TimeoutError("the target did not start")
        return token, message_id

    def abort_target(self, token: str, message_id: str) -> float | None:
        """Milliseconds from ``abort()`` to the target's ``except Abort``; None if it never came."""
        sent_at = time.monotonic()
        abort(message_id, middleware=self.sender)
        landed = self.wait("target", "aborted", token, ABORT_TIMEOUT)
        return None if landed is None else (float(landed[1]) - sent_at) * 1000

    def close(self) -> None:
        self.client.close()


def cpu_rates(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, float]:
    """Milliseconds of CPU per second of each entry of two ``cpu`` answers."""
    return {kind: (used - before.get(kind, 0.0)) / seconds * 1000 for kind, used in after.items()}


def scale_case(args: argparse.Namespace, running: int) -> dict[str, Any]:
    """The figures of a worker process running ``running`` abortable messages."""
    rng = random.Random(args.seed)
    with common.namespace_on(args.redis_url, f"scale-{running}") as namespace:
        case = Case(args, namespace)
        with common.worker_process(__file__, worker_args(args, namespace, running)) as worker:
            holders = [case.start("holder")[1] for _ in range(running - 1)]
            try:
                common.wait_for(
                    lambda: case.count("holder", "started") >= len(holders),
                    300,
                    "the held messages to start",
                )
                # The target runs too, so that ``running`` messages do.
                first_target = case.start_target()
                time.sleep(SETTLE)
                before = ask(worker, "cpu")
                started = time.monotonic()
                time.sleep(args.idle_window)
                after = ask(worker, "cpu")
                idle = cpu_rates(before, after, time.monotonic() - started)
                # Also a warm-up: the watcher's first abort is not sampled.
                case.abort_target(*first_target)

                latencies: list[float] = []
                before = ask(worker, "cpu")
                for _ in range(args.samples):
                    target = case.start_target()
                    time.sleep(rng.uniform(0, 0.2))
                    latency = case.abort_target(*target)
                    if latency is not None:
                        latencies.append(latency)
                after = ask(worker, "cpu")
            finally:
                # They would hold the worker's shutdown for an hour.
                case.end(holders)
        unreached = len(holders) - case.count("holder", "aborted")
        case.close()
    return {
        "missed": args.samples - len(latencies),
        "p50_ms": common.percentile(latencies, 50),
        "p99_ms": common.percentile(latencies, 99),
        "watcher_us_per_abort": (after["watcher"] - before["watcher"]) / args.samples * 1e6,
        "idle_watcher_ms_per_s": idle["watcher"],
        "idle_process_ms_per_s": idle["process"],
        "idle_ms_per_s_by_thread": idle,
        "held": len(holders),
        "unreached": unreached,
    }


# Printing.


def print_bulk(found: dict[str, dict[str, list[float | None]]], ids: int, runs: int) -> None:
    rows = {
        "returns, no worker subscribed": "alone",
        "returns, one worker subscribed": "subscribed",
        "that worker knows every request": "known",
    }
    print(
        f"{f'{ids:,} ids, median of {runs} runs':<36} {'abort_many':>11} "
        f"{f'{ids:,} x abort()':>17} {'ratio':>7}"
    )
    for label, column in rows.items():
        many = median_ms(found["many"][column])
        single = median_ms(found["single"][column])
        print(f"{label:<36} {many:>8.1f} ms {single:>14.1f} ms {single / many:>7.1f}")
    missed = sum(value is None for way in found.values() for value in way["known"])
    if missed:
        print(
            f"(the worker did not know every request within {KNOW_TIMEOUT:.0f} s in {missed} runs)"
        )


def median_ms(values: list[float | None]) -> float:
    known = [value for value in values if value is not None]
    return statistics.median(known) * 1000 if known else float("nan")


def print_scale(cases: dict[int, dict[str, Any]], samples: int) -> None:
    counts = list(cases)
    rows = {
        "abort latency p50, ms": ("p50_ms", 1),
        "abort latency p99, ms": ("p99_ms", 1),
        "watcher CPU per abort, us": ("watcher_us_per_abort", 0),
        "watcher CPU while idle, ms/s": ("idle_watcher_ms_per_s", 3),
        "process CPU while idle, ms/s": ("idle_process_ms_per_s", 2),
    }
    base = counts[0]
    ratios = counts[1:]
    header = f"{'abortable messages running':<30}"
    header += "".join(f"{count:>10,}" for count in counts)
    header += "".join(f"{f'{count:,} / {base:,}':>13}" for count in ratios)
    print(header)
    for label, (figure, digits) in rows.items():
        line = f"{label:<30}"
        line += "".join(f"{cases[count][figure]:>10.{digits}f}" for count in counts)
        for count in ratios:
            reference = cases[base][figure]
            ratio = cases[count][figure] / reference if reference else None
            line += f"{'-' if ratio is None else f'{ratio:.2f}':>13}"
        print(line)
    missed = {count: case["missed"] for count, case in cases.items() if case["missed"]}
    print(
        f"{samples} aborts per column; missed (not landed in {ABORT_TIMEOUT:.0f} s): "
        f"{missed or 'none'}"
    )
    for count, case in cases.items():
        if case["unreached"]:
            print(
                f"{case['unreached']} of the {case['held']:,} held messages aborted at the end"
                f" of the {count:,} case ended without reaching their except Abort"
            )
    for count, case in cases.items():
        by_thread = case["idle_ms_per_s_by_thread"]
        spent = ", ".join(
            f"{kind} {by_thread[kind]:.2f}" for kind in sorted(by_thread) if kind != "process"
        )
        print(f"idle CPU by thread, ms/s, {count:,} running: {spent}")


def main() -> None:
    parser = common.parser(__doc__ or "")
    option = parser.add_argument
    option("--ids", type=int, help="ids per bulk abort (default 10,000; 1,000 with --quick)")
    option("--runs", type=int, help="runs per bulk figure (default 5; 2 with --quick)")
    option(
        "--running",
        type=int,
        nargs="+",
        default=[1, 100, 1000],
        help="messages running in the worker, one case each (default %(default)s)",
    )
    option("--samples", type=int, help="aborts per case (default 100; 10 with --quick)")
    option("--idle-window", type=float, help="seconds of idle CPU (default 5; 1 with --quick)")
    option("--only", choices=("bulk", "scale"), help="run one half only")
    option("--worker", action="store_true", help=argparse.SUPPRESS)
    option("--namespace", help=argparse.SUPPRESS)
    option("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        work(args)
        return
    if not hasattr(time, "pthread_getcpuclockid"):
        parser.error("this benchmark reads per-thread CPU clocks: Linux only")
    args.ids = args.ids or (1_000 if args.quick else 10_000)
    args.runs = args.runs or (2 if args.quick else 5)
    args.samples = args.samples or (10 if args.quick else 100)
    args.idle_window = args.idle_window or (1.0 if args.quick else 5.0)
    load_before = os.getloadavg()
    if args.only != "scale":
        print_bulk(bulk_abort(args), args.ids, args.runs)
        print()
    if args.only != "bulk":
        cases = {running: scale_case(args, running) for running in sorted(args.running)}
        print_scale(cases, args.samples)
    load_after = os.getloadavg()
    print(
        f"load average (1 min) at start / end: {load_before[0]:.2f} / {load_after[0]:.2f}, "
        f"{os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
