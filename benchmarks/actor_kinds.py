"""Abort latency for actors that wait rather than compute: a thread in
``dramatiq_abort.sleep``, an ``async def`` actor awaiting
``asyncio.sleep``, and a greenlet of a gevent-patched worker in
``gevent.sleep``. From just before ``abort()`` in this process to the
actor's ``except Abort`` in the worker process; p50 and p99.

This package only: 1.2.1 has no abort-aware sleep, and reaches neither a
coroutine nor a greenlet as ``Abort``.
"""

from __future__ import annotations

import sys

if "--worker" in sys.argv and "gevent" in sys.argv:
    from gevent import monkey

    monkey.patch_all()

import argparse
import asyncio
import json
import logging
import random
import time
import uuid
from typing import Any

import common
import redis
from dramatiq.middleware.asyncio import AsyncIO

import dramatiq_abort
from dramatiq_abort import Abort, abort

QUEUE = "bench-kinds"
KINDS = ("sleep", "async", "gevent")
#: Seconds a target waits when no abort reaches it.
LIMIT = 30.0


def work(args: argparse.Namespace) -> None:
    """The worker process: one target actor of ``args.kind``."""
    # Aborted messages are logged as skipped; that is what is measured here.
    logging.getLogger("dramatiq.worker.WorkerThread").setLevel(logging.ERROR)
    reporter = redis.Redis.from_url(args.redis_url)
    namespace = args.namespace
    broker, _ = common.make_broker(args.redis_url, namespace, abortable=True)

    def report(event: str, token: str) -> None:
        reporter.rpush(f"{namespace}{event}", json.dumps([token, time.monotonic()]))

    if args.kind == "async":
        broker.add_middleware(AsyncIO())

        async def waits_async(token: str) -> None:
            try:
                report("started", token)
                await asyncio.sleep(LIMIT)
            except Abort:
                report("aborted", token)
                raise

        common.actor(broker, "bench_target", QUEUE)(waits_async)
    else:
        import gevent

        pause = gevent.sleep if args.kind == "gevent" else dramatiq_abort.sleep

        def waits(token: str) -> None:
            try:
                report("started", token)
                pause(LIMIT)
            except Abort:
                report("aborted", token)
                raise

        common.actor(broker, "bench_target", QUEUE)(waits)
    common.serve_worker(broker, threads=4)


def sample_kind(args: argparse.Namespace, kind: str, count: int) -> dict[str, Any]:
    client = redis.Redis.from_url(args.redis_url)
    rng = random.Random(args.seed)
    with common.namespace_on(args.redis_url, f"kinds-{kind}") as namespace:
        broker, _ = common.make_broker(args.redis_url, namespace, abortable=False)
        target = common.actor(broker, "bench_target", QUEUE)(lambda token: None)
        middleware = common.make_abortable(args.redis_url, namespace)
        worker_args = ["--worker", kind, "--redis-url", args.redis_url, "--namespace", namespace]
        latencies: list[float] = []
        missed = 0
        with common.worker_process(__file__, worker_args):
            for _ in range(count):
                token = uuid.uuid4().hex
                message = target.send(token)
                if common.wait_report(client, f"{namespace}started", token, 30) is None:
                    raise TimeoutError(f"the {kind} target did not start")
                time.sleep(rng.uniform(0, 0.2))
                sent_at = time.monotonic()
                abort(message.message_id, middleware=middleware)
                landed = common.wait_report(client, f"{namespace}aborted", token, 5)
                if landed is None:
                    missed += 1
                else:
                    latencies.append((float(landed[1]) - sent_at) * 1000)
    return {
        "n": len(latencies),
        "missed": missed,
        "p50": common.percentile(latencies, 50),
        "p99": common.percentile(latencies, 99),
    }


def main() -> None:
    parser = common.parser(__doc__ or "")
    option = parser.add_argument
    option("--samples", type=int, help="aborts per kind (default 100; 10 with --quick)")
    option("--worker", choices=KINDS, dest="kind", help=argparse.SUPPRESS)
    option("--namespace", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.kind:
        work(args)
        return
    count = args.samples or (10 if args.quick else 100)
    results = {kind: sample_kind(args, kind, count) for kind in KINDS}
    print(f"{'actor waiting in':<24} {'p50 ms':>8} {'p99 ms':>8} {'missed':>7}  target p99")
    for kind, found in results.items():
        print(
            f"{kind:<24} {found['p50']:>8.1f} {found['p99']:>8.1f} {found['missed']:>7}  <= 20 ms"
        )


if __name__ == "__main__":
    main()
