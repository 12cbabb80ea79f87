"""Per-message cost of the middleware's hooks, without a broker's noise.

Each thread calls what a worker thread calls for every message, in a
loop: the broker's ``before_process_message`` hooks, the actor's function
(a no-op) and the ``after_process_message`` hooks, with ``Abortable`` on a
subscribed ``RedisBackend`` and nothing aborted. The same loop on a broker
without the middleware is the baseline. The figure is the difference of
wall time per message (every thread's messages counted), with 1 thread and
with 8 threads looping at once; rounds alternate between the two set-ups,
and the figure is the median of the per-round differences, with their
spread (largest minus smallest). The same differences in CPU time (this
process's), which a loaded machine blurs less, are among the details.
"""

from __future__ import annotations

import gc
import statistics
import threading
import time
from typing import Any

import common
import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.brokers.stub import StubBroker

THREADS = (1, 8)


def looping(
    broker: dramatiq.Broker, actor: Any, threads: int, messages: int
) -> tuple[float, float]:
    """Seconds of wall time and of CPU time (this process's) per message,
    ``threads`` threads processing ``messages`` messages each."""
    proxies = [[MessageProxy(actor.message()) for _ in range(messages)] for _ in range(threads)]
    # Out of the collector's sight, as a worker's few messages would be:
    # otherwise every collection that the middleware's objects trigger
    # walks all of them.
    gc.freeze()
    ready = threading.Barrier(threads + 1)

    def loop(batch: list[MessageProxy]) -> None:
        emit_before, emit_after, fn = broker.emit_before, broker.emit_after, actor.fn
        ready.wait()
        for message in batch:
            emit_before("process_message", message)
            result = fn()
            emit_after("process_message", message, result=result)

    workers = [threading.Thread(target=loop, args=(batch,)) for batch in proxies]
    for worker in workers:
        worker.start()
    ready.wait()
    start, start_cpu = time.perf_counter(), time.process_time()
    for worker in workers:
        worker.join()
    gc.unfreeze()
    count = threads * messages
    return (time.perf_counter() - start) / count, (time.process_time() - start_cpu) / count


def setup(url: str, namespace: str | None) -> tuple[dramatiq.Broker, Any, Any]:
    """A broker without middleware, with Abortable when ``namespace`` is
    given (booted: its watcher subscribed), and a no-op actor on it."""
    broker = StubBroker(middleware=[])
    middleware = None
    if namespace is not None:
        middleware = common.make_abortable(url, namespace)
        broker.add_middleware(middleware)
    actor = dramatiq.actor(broker=broker, actor_name="bench_hooks_noop")(_noop)
    broker.emit_before("worker_boot", _Worker())
    return broker, actor, middleware


def _noop() -> None:
    pass


class _Worker:
    """What the middleware's boot hooks read of a worker."""

    worker_threads = 8


def main() -> None:
    parser = common.parser(__doc__ or "")
    option = parser.add_argument
    option("--messages", type=int, help="messages per thread and round (default 20000)")
    option("--rounds", type=int, help="rounds of each set-up (default 7; 2 with --quick)")
    args = parser.parse_args()
    messages = args.messages or (5000 if args.quick else 20000)
    rounds = args.rounds or (2 if args.quick else 7)
    with common.namespace_on(args.redis_url, "hooks") as namespace:
        plain = setup(args.redis_url, None)
        ours = setup(args.redis_url, namespace)
        time.sleep(0.5)  # let the watcher subscribe
        figures: dict[str, float | None] = {}
        details: dict[str, Any] = {"messages": messages, "rounds": rounds}
        for threads in THREADS:
            plain_seconds: list[float] = []
            added: dict[str, list[float]] = {"wall": [], "cpu": []}
            for round_ in range(rounds):
                order = (plain, ours) if round_ % 2 == 0 else (ours, plain)
                seconds = {id(s): looping(s[0], s[1], threads, messages) for s in order}
                plain_seconds.append(seconds[id(plain)][0] * 1e6)
                for i, clock in enumerate(added):
                    added[clock].append((seconds[id(ours)][i] - seconds[id(plain)][i]) * 1e6)
            figures[f"plain_us_{threads}"] = statistics.median(plain_seconds)
            for clock, values in added.items():
                name = f"added_us_{threads}" + ("" if clock == "wall" else "_cpu")
                target = figures if clock == "wall" else details
                target[name] = statistics.median(values)
                target[f"{name}_spread"] = max(values) - min(values)
                details[f"{name}_all"] = [round(value, 2) for value in values]
        ours[0].emit_after("worker_shutdown", _Worker())
        common.emit(figures, details)


if __name__ == "__main__":
    main()
