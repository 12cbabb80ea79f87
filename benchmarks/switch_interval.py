"""What a shorter switch interval costs threads busy in Python: the other
side of the faster aborts it buys (see ``latency.py --switch-interval``).

20 threads loop in pure Python for a few seconds, as the CPU-bound actors
of ``latency.py`` do, and the loops they ran are counted; runs alternate
between the intervals given, in ``--pairs`` rounds. The figure is the
work done per second under each interval as a ratio to the first
interval's in the same round: the median of the rounds and their spread.
Nothing of this package runs: it measures CPython on this machine.

    python benchmarks/switch_interval.py --switch-interval 0.005 --switch-interval 0.001
"""

from __future__ import annotations

import statistics
import sys
import threading
import time

import common

#: Threads busy at once, as the CPU-bound actors beside the target in ``latency.py``.
THREADS = 20


def loops_per_second(interval: float, seconds: float) -> float:
    """Loops of 10,000 that ``THREADS`` busy threads run per second in all,
    under the switch interval ``interval``."""
    counts = [0] * THREADS
    go = threading.Event()
    deadline = 0.0

    def busy(index: int) -> None:
        go.wait()
        loops = 0
        while time.monotonic() < deadline:
            for _ in range(10_000):
                pass
            loops += 1
        counts[index] = loops

    threads = [threading.Thread(target=busy, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    previous = sys.getswitchinterval()
    sys.setswitchinterval(interval)
    try:
        started = time.monotonic()
        deadline = started + seconds
        go.set()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    finally:
        sys.setswitchinterval(previous)
    return sum(counts) / elapsed


def main() -> None:
    parser = common.parser(__doc__ or "")
    option = parser.add_argument
    option(
        "--switch-interval",
        type=float,
        action="append",
        required=True,
        help="seconds (repeatable; the first is the reference)",
    )
    option("--pairs", type=int, help="rounds of every interval (default 7; 2 with --quick)")
    option("--seconds", type=float, default=3.0, help="length of one run (default %(default)s)")
    args = parser.parse_args()
    intervals: list[float] = args.switch_interval
    pairs = args.pairs or (2 if args.quick else 7)
    rates: dict[float, list[float]] = {interval: [] for interval in intervals}
    for _ in range(pairs):
        for interval in intervals:
            rates[interval].append(loops_per_second(interval, args.seconds))
    figures: dict[str, float | None] = {}
    details: dict[str, object] = {"threads": THREADS, "pairs": pairs, "seconds": args.seconds}
    for interval in intervals:
        label = f"{interval * 1000:g}ms"
        ratios = [
            mine / first for mine, first in zip(rates[interval], rates[intervals[0]], strict=False)
        ]
        figures[f"work_ratio_at_{label}"] = statistics.median(ratios)
        figures[f"work_ratio_spread_at_{label}"] = max(ratios) - min(ratios)
        details[f"loops_per_s_at_{label}"] = [round(rate) for rate in rates[interval]]
    common.emit(figures, details)


if __name__ == "__main__":
    main()
