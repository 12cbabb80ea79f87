"""Listing: how long ``Abortable.running_messages()`` takes to answer with
1, 4 and 16 worker processes (``--processes``).

Each worker process runs 2 threads and one abortable message that waits
in ``dramatiq_abort.sleep()`` for as long as the case lasts, so every
answer lists one message. The asking process (this one, which runs no
worker) calls ``running_messages()`` 50 times in a row (``--samples``),
timed from the call to its return: it returns once every listening worker
process answered, which it knows from Redis (``PUBSUB NUMSUB``). Reported
as p50, p99 and max in ms, with how many listings missed a worker or a
message. Workers prefetch one message each, so that the messages spread
over the processes. This package only: 1.2.1 cannot list what runs.

``--busy N`` runs one worker process with N more actors that compute in
Python until the case ends: its watcher then waits its turn for the GIL
behind them before it answers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Sequence

import common
import dramatiq

import dramatiq_abort
from dramatiq_abort import Abortable

QUEUE = "bench-listing"
#: Seconds a message waits at most when no abort reaches it.
HOLD_LIMIT = 3600.0
#: Longest a listing waits for answers, in seconds: far above any figure
#: measured, so that a slow answer shows as slow, not as missing.
LISTING_WAIT = 10.0
#: Seconds the messages have to start in every worker process.
START_TIMEOUT = 120.0
#: Worker threads of each process: one runs the held message.
THREADS = 2

_middleware: Abortable | None = None


def hold() -> None:
    """Wait until aborted, at the end of the case."""
    dramatiq_abort.sleep(HOLD_LIMIT, middleware=_middleware)


def spin() -> None:
    """Compute in Python until aborted, at the end of the case."""
    deadline = time.monotonic() + HOLD_LIMIT
    while time.monotonic() < deadline:
        pass


def declare(broker: dramatiq.Broker) -> tuple[dramatiq.Actor[[], None], dramatiq.Actor[[], None]]:
    return (
        common.actor(broker, "bench_list_hold", QUEUE)(hold),
        common.actor(broker, "bench_list_spin", QUEUE)(spin),
    )


def work(args: argparse.Namespace) -> None:
    """Serve ``hold`` with the Abortable middleware until stdin closes."""
    global _middleware
    broker, _middleware = common.make_broker(args.redis_url, args.namespace, abortable=True)
    declare(broker)
    common.serve_worker(broker, THREADS + args.busy)


def measure(args: argparse.Namespace, processes: int) -> dict[str, float]:
    """The figures of one case: ``processes`` worker processes."""
    with contextlib.ExitStack() as stack:
        namespace = stack.enter_context(common.namespace_on(args.redis_url, "listing"))
        worker_args = ["--work", "--redis-url", args.redis_url, "--namespace", namespace]
        worker_args += ["--busy", str(args.busy)]
        for _ in range(processes):
            stack.enter_context(common.worker_process(__file__, worker_args))
        broker, asker = common.make_broker(args.redis_url, namespace, abortable=True)
        stack.callback(broker.close)
        assert asker is not None
        actor, spinner = declare(broker)
        held = [actor.send().message_id for _ in range(processes)]
        held += [spinner.send().message_id for _ in range(args.busy)]
        # Ended first on the way out: a worker stops once its message is aborted.
        stack.callback(asker.abort_many, held)

        def all_listed() -> bool:
            listed = asker.running_messages(timeout=LISTING_WAIT)
            return listed.answered == processes and len(listed.messages) == len(held)

        common.wait_for(all_listed, START_TIMEOUT, "every held message to run")
        timings, missed = [], 0
        for _ in range(args.samples):
            started = time.perf_counter()
            listed = asker.running_messages(timeout=LISTING_WAIT)
            timings.append((time.perf_counter() - started) * 1000)
            if listed.answered != processes or len(listed.messages) != len(held):
                missed += 1
        return {
            "p50_ms": common.percentile(timings, 50),
            "p99_ms": common.percentile(timings, 99),
            "max_ms": max(timings),
            "missed": missed,
        }


def run(args: argparse.Namespace, counts: Sequence[int]) -> None:
    # Read by dramatiq, in lower case, as each worker process imports it:
    # one message per process, or every message in the one busy process.
    os.environ["dramatiq_queue_prefetch"] = str(1 + args.busy)  # noqa: SIM112
    figures: dict[str, float | None] = {}
    details: dict[str, object] = {"samples": args.samples, "threads": THREADS, "busy": args.busy}
    for processes in counts:
        case = measure(args, processes)
        name = f"list_{processes}" + (f"_busy_{args.busy}" if args.busy else "")
        figures[f"{name}_p50_ms"] = case["p50_ms"]
        figures[f"{name}_p99_ms"] = case["p99_ms"]
        details[str(processes)] = case
    common.emit(figures, details)


def main() -> None:
    parser = common.parser(__doc__ or "")
    parser.add_argument("--work", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--namespace", help=argparse.SUPPRESS)
    parser.add_argument(
        "--processes",
        type=int,
        nargs="+",
        default=[1, 4, 16],
        help="worker process counts to measure (default: 1 4 16)",
    )
    parser.add_argument(
        "--samples", type=int, default=None, help="listings per case (default 50; 5 with --quick)"
    )
    parser.add_argument(
        "--busy",
        type=int,
        default=0,
        metavar="N",
        help="run N actors that compute in Python beside the held one, in one worker process",
    )
    args = parser.parse_args()
    if args.busy and not args.work:
        args.processes = [1]
    if args.work:
        work(args)
        return
    if args.samples is None:
        args.samples = 5 if args.quick else 50
    run(args, args.processes)


if __name__ == "__main__":
    main()
