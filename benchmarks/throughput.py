"""Per-message cost: throughput of a RedisBroker worker (8 threads) running
a no-op actor, with the Abortable middleware and without.

Runs alternate between the two set-ups (which one goes first alternates
too); each run enqueues its messages first, then times the worker from
the first to the last message it processes, so that enqueuing and booting
are left out. The figure is the ratio of the medians; the median of the
ratios of each pair of runs is given too.
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from typing import Any

import common

QUEUE = "bench-throughput"
THREADS = 8


class Run:
    """Counts the calls of the no-op actor and times the first and last."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.calls = itertools.count()
        self.first = 0.0
        self.last = 0.0
        self.done = threading.Event()

    def noop(self) -> None:
        call = next(self.calls)
        if call == 0:
            self.first = time.perf_counter()
        elif call == self.count - 1:
            self.last = time.perf_counter()
            self.done.set()


def messages_per_second(url: str, count: int, abortable: bool) -> float:
    with common.namespace_on(url, "throughput") as namespace:
        broker, _ = common.make_broker(url, namespace, abortable=abortable)
        try:
            run = Run(count)
            actor = common.actor(broker, "bench_noop", QUEUE)(run.noop)
            for _ in range(count):
                actor.send()
            with common.running_worker(broker, THREADS, worker_timeout=100):
                if not run.done.wait(max(60, count / 50)):
                    raise TimeoutError(f"the worker did not process {count} messages")
            return (count - 1) / (run.last - run.first)
        finally:
            broker.close()


def main() -> None:
    parser = common.parser(__doc__ or "")
    option = parser.add_argument
    option("--messages", type=int, help="messages per run (default 3000; 1000 with --quick)")
    option("--pairs", type=int, help="runs of each set-up (default 7; 2 with --quick)")
    args = parser.parse_args()
    count = args.messages or (1000 if args.quick else 3000)
    pairs = args.pairs or (2 if args.quick else 7)
    rates: dict[bool, list[float]] = {False: [], True: []}
    for pair in range(pairs):
        for abortable in (False, True) if pair % 2 == 0 else (True, False):
            rates[abortable].append(messages_per_second(args.redis_url, count, abortable))
    without, with_ = statistics.median(rates[False]), statistics.median(rates[True])
    pair_ratios = [w / wo for w, wo in zip(rates[True], rates[False], strict=False)]
    figures: dict[str, float | None] = {
        "rate_without": without,
        "rate_with": with_,
        "ratio": with_ / without,
        "pair_ratio_median": statistics.median(pair_ratios),
        "pair_ratio_spread": max(pair_ratios) - min(pair_ratios),
    }
    details: dict[str, Any] = {
        "messages": count,
        "threads": THREADS,
        "rates_without": rates[False],
        "rates_with": rates[True],
    }
    common.emit(figures, details)


if __name__ == "__main__":
    main()
