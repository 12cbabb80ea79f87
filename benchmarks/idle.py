"""Idle cost: Redis commands per second that the Abortable middleware of a
booted worker sends while nothing is aborted.

Each measurement starts two private redis-servers: one for the broker and
one for the middleware's backend, so that every command the second one
counts (``INFO commandstats``, less our own ``INFO``) comes from the
middleware. A worker without the middleware is measured the same way, and
its counts are subtracted. Two cases: no message at all, and 8 messages
running (sleeping) for the whole window.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import common
import dramatiq
import redis

QUEUE = "bench-idle"
THREADS = 8
#: Seconds the worker is left alone after booting and before counting.
SETTLE = 1.0
CASES = {"no_messages": 0, "running": THREADS}


def hold() -> None:
    """A running message that asks nothing of anyone until the worker stops."""
    common.STOP.wait(600)


def declare(broker: dramatiq.Broker) -> dramatiq.Actor[[], None]:
    return common.actor(broker, "bench_hold", QUEUE)(hold)


def work(args: argparse.Namespace) -> None:
    broker, _ = common.make_broker(
        args.redis_url, args.namespace, abortable=args.abortable, backend_url=args.backend_url
    )
    declare(broker)
    common.serve_worker(broker, THREADS)


def rate(before: dict[str, int], after: dict[str, int], seconds: float) -> dict[str, float]:
    """Calls per second of each command, but our own INFO."""
    return {
        name: (calls - before.get(name, 0)) / seconds
        for name, calls in after.items()
        if name != "info" and calls != before.get(name, 0)
    }


def measure(script: str, window: float, running: int, abortable: bool) -> dict[str, Any]:
    """Commands per second on the broker's server and on the backend's."""
    with common.private_redis() as broker_url, common.private_redis() as backend_url:
        namespace = common.unique_namespace("idle")
        broker, _ = common.make_broker(broker_url, namespace, abortable=False)
        actor = declare(broker)
        urls = {"broker": broker_url, "backend": backend_url}
        clients = {name: redis.Redis.from_url(url) for name, url in urls.items()}
        args = ["--worker", "--redis-url", broker_url, "--backend-url", backend_url]
        args += ["--namespace", namespace, *(["--abortable"] if abortable else [])]
        with common.worker_process(script, args):
            for _ in range(running):
                actor.send()
            queue_key = f"{namespace}broker:{QUEUE}"
            client = clients["broker"]
            common.wait_for(lambda: client.llen(queue_key) == 0, 30, "the messages to start")
            time.sleep(SETTLE)
            before = {name: common.command_counts(c) for name, c in clients.items()}
            start = time.monotonic()
            time.sleep(window)
            after = {name: common.command_counts(c) for name, c in clients.items()}
            seconds = time.monotonic() - start
        broker.close()
        for c in clients.values():
            c.close()
    return {name: rate(before[name], after[name], seconds) for name in clients}


def main() -> None:
    parser = common.parser(__doc__ or "")
    option = parser.add_argument
    option("--window", type=float, help="seconds counted per case (default 6; 3 with --quick)")
    option("--worker", action="store_true", help=argparse.SUPPRESS)
    option("--abortable", action="store_true", help=argparse.SUPPRESS)
    option("--backend-url", help=argparse.SUPPRESS)
    option("--namespace", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        work(args)
        return
    window = args.window or (3.0 if args.quick else 6.0)
    figures: dict[str, float | None] = {}
    details: dict[str, Any] = {"window_s": window}
    for case, running in CASES.items():
        without, with_ = (measure(__file__, window, running, flag) for flag in (False, True))
        figures[case] = sum(with_["backend"].values()) - sum(without["backend"].values())
        details[case] = {"with": with_, "without": without}
    common.emit(figures, details)


if __name__ == "__main__":
    main()
