"""Cost of one ``abort_requested()`` call inside a running actor, while no
abort is requested: timed as timeit does, over many calls. For scale, it
also times a Redis ``GET`` round trip from the same actor, which is what a
check that asks the server each time costs.
"""

from __future__ import annotations

import statistics
import threading
import time
import timeit
from typing import Any

import common
import redis

from dramatiq_abort import Abortable, abort_requested

QUEUE = "bench-abort-requested"


class Measure:
    """The actor's work, and where it leaves its result."""

    def __init__(self, url: str, key: str, middleware: Abortable, calls: int, repeat: int) -> None:
        self.url = url
        self.key = key
        self.middleware = middleware
        self.calls = calls
        self.repeat = repeat
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self.result = {
                "default_us": self.per_call("abort_requested()"),
                "explicit_us": self.per_call("abort_requested(middleware=middleware)"),
                "returned": repr(abort_requested()),
                **self.round_trips(),
            }
        except BaseException as e:
            self.error = e
        finally:
            self.done.set()

    def per_call(self, statement: str) -> float:
        """Median over ``repeat`` rounds of the microseconds per call."""
        timer = timeit.Timer(
            statement, globals={"abort_requested": abort_requested, "middleware": self.middleware}
        )
        rounds = timer.repeat(repeat=self.repeat, number=self.calls)
        return statistics.median(rounds) / self.calls * 1e6

    def round_trips(self) -> dict[str, float]:
        client = redis.Redis.from_url(self.url)
        try:
            client.set(self.key, b"0")
            times = []
            for _ in range(max(200, self.calls // 100)):
                start = time.perf_counter()
                client.get(self.key)
                times.append((time.perf_counter() - start) * 1e6)
        finally:
            client.close()
        return {f"get_p{q}_us": common.percentile(times, q) for q in (50, 99)}


def main() -> None:
    parser = common.parser(__doc__ or "")
    parser.add_argument("--calls", type=int, help="calls per round (default 200000; 20000 --quick)")
    args = parser.parse_args()
    calls = args.calls or (20_000 if args.quick else 200_000)
    with common.namespace_on(args.redis_url, "abort-requested") as namespace:
        broker, middleware = common.make_broker(args.redis_url, namespace, abortable=True)
        assert middleware is not None
        try:
            measure = Measure(args.redis_url, namespace + "get", middleware, calls, repeat=7)
            actor = common.actor(broker, "bench_measure", QUEUE)(measure.run)
            with common.running_worker(broker, threads=1):
                actor.send()
                if not measure.done.wait(600):
                    raise TimeoutError("the measuring actor did not finish")
        finally:
            broker.close()
    if measure.error is not None:
        raise measure.error
    assert measure.result is not None
    result = measure.result
    common.emit(
        {key: result[key] for key in ("default_us", "explicit_us", "get_p50_us", "get_p99_us")},
        {"calls": calls, "repeat": measure.repeat, "returned": result["returned"]},
    )


if __name__ == "__main__":
    main()
