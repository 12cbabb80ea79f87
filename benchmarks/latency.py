"""Abort latency: from just before ``abort()`` is called in one process to
the moment the aborted actor's ``except Abort`` runs in a worker process.

The actor is a pure-Python busy loop. Each abort is sent a random delay
after the actor reported that it started, so that no internal loop of
either version lines up with the samples. Both ends read
``time.monotonic()``, which is CLOCK_MONOTONIC on Linux: one clock for
every process of the machine. Measured three times: with the target alone
in the worker, with 20 more abortable actors beside it that wait on I/O
(sleeping in short slices, as most tasks spend their time), and with 20
more that busy-loop in Python like the target.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid
from typing import Any

import common
import dramatiq
import redis

from dramatiq_abort import Abort, Abortable, abort

QUEUE = "bench-latency"
#: Actors that run beside the target in the busy cases.
BUSY = 20
#: How the busy actors keep busy: waiting on I/O, or computing in Python.
BUSY_KINDS = ("io", "cpu")
#: Seconds the target loops at most when no abort reaches it.
TARGET_LIMIT = 30.0
#: Seconds the busy actors loop at most: they must outlast every sample.
BUSY_LIMIT = 3600.0

_reporter: redis.Redis | None = None
_namespace = ""


def spin(role: str, token: str, limit: float, kind: str = "cpu") -> None:
    """Loop in Python (``kind`` "cpu") or sleep in 5 ms slices ("io") until
    aborted or ``limit`` seconds have passed; report when it started and
    when the Abort landed."""
    assert _reporter is not None
    deadline = time.monotonic() + limit
    try:
        _reporter.rpush(f"{_namespace}{role}:started", json.dumps([token]))
        while time.monotonic() < deadline:
            if kind == "io":
                time.sleep(0.005)
                continue
            for _ in range(10_000):
                pass
    except Abort:
        aborted_at = time.monotonic()
        _reporter.rpush(f"{_namespace}{role}:aborted", json.dumps([token, aborted_at]))


def declare(broker: dramatiq.Broker) -> dramatiq.Actor[[str, str, float, str], None]:
    return common.actor(broker, "bench_spin", QUEUE)(spin)


def work(args: argparse.Namespace) -> None:
    """The worker process: runs ``spin`` with the Abortable middleware."""
    global _reporter, _namespace
    _reporter = redis.Redis.from_url(args.redis_url)
    _namespace = args.namespace
    broker, _ = common.make_broker(args.redis_url, args.namespace, abortable=True)
    declare(broker)
    common.serve_worker(broker, args.threads, args.worker_timeout)


class Sampler:
    """The process that sends the messages and the aborts."""

    def __init__(self, args: argparse.Namespace, namespace: str) -> None:
        self.client = redis.Redis.from_url(args.redis_url)
        self.namespace = namespace
        broker, _ = common.make_broker(args.redis_url, namespace, abortable=False)
        self.actor = declare(broker)
        self.middleware: Abortable = common.make_abortable(args.redis_url, namespace)
        self.random = random.Random(args.seed)
        self.max_delay: float = args.max_delay
        self.timeout: float = args.timeout

    def start(self, role: str, limit: float, kind: str = "cpu") -> tuple[str, str]:
        """Send one ``spin``; its token and message id."""
        token = uuid.uuid4().hex
        return token, self.actor.send(role, token, limit, kind).message_id

    def wait(self, role: str, event: str, token: str, timeout: float) -> list[Any] | None:
        """What the actor ``token`` reported as ``event``, or None after ``timeout``."""
        return common.wait_report(self.client, f"{self.namespace}{role}:{event}", token, timeout)

    def sample(self) -> float | None:
        """Seconds from calling ``abort()`` to ``except Abort``; None when it never came."""
        token, message_id = self.start("target", TARGET_LIMIT)
        if self.wait("target", "started", token, 30) is None:
            raise TimeoutError("the target actor did not start")
        time.sleep(self.random.uniform(0, self.max_delay))
        sent_at = time.monotonic()
        abort(message_id, middleware=self.middleware)
        reported = self.wait("target", "aborted", token, self.timeout)
        return None if reported is None else float(reported[1]) - sent_at

    def series(self, count: int) -> dict[str, Any]:
        latencies: list[float] = []
        missed = 0
        for _ in range(count):
            latency = self.sample()
            if latency is None:
                missed += 1
            else:
                latencies.append(latency * 1000)
        return {
            "n": len(latencies),
            "missed": missed,
            "p50": common.percentile(latencies, 50),
            "p99": common.percentile(latencies, 99),
            "max": max(latencies, default=float("nan")),
        }

    def busy_series(self, kind: str, count: int) -> dict[str, Any]:
        """``series`` with ``BUSY`` actors of ``kind`` running beside the target."""
        role = f"busy-{kind}"
        busy_ids = [self.start(role, BUSY_LIMIT, kind)[1] for _ in range(BUSY)]
        self.wait_all(role, "started", BUSY)
        try:
            return self.series(count)
        finally:
            for message_id in busy_ids:
                abort(message_id, middleware=self.middleware)
            self.wait_all(role, "aborted", BUSY)

    def wait_all(self, role: str, event: str, count: int) -> None:
        """Wait for ``count`` actors of ``role`` to report ``event``."""
        key = f"{self.namespace}{role}:{event}"
        common.wait_for(lambda: self.client.llen(key) >= count, 60, f"{role} actors: {event}")


def main() -> None:
    parser = common.parser(__doc__ or "")
    option = parser.add_argument
    option("--samples", type=int, help="aborts per case (default 100; 10 with --quick)")
    option("--max-delay", type=float, default=1.0, help="longest delay from start to abort, s")
    option("--timeout", type=float, default=5.0, help="seconds after which an abort is a miss")
    option(
        "--threads",
        type=int,
        default=BUSY + 2,
        help=f"worker threads (default %(default)s; {BUSY} or fewer: the idle case only)",
    )
    option("--worker-timeout", type=int, default=1000, help="ms (default %(default)s, dramatiq's)")
    option("--worker", action="store_true", help=argparse.SUPPRESS)
    option("--namespace", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        work(args)
        return
    samples = args.samples or (10 if args.quick else 100)
    with common.namespace_on(args.redis_url, "latency") as namespace:
        sampler = Sampler(args, namespace)
        worker_args = ["--worker", "--redis-url", args.redis_url, "--namespace", namespace]
        worker_args += ["--threads", str(args.threads)]
        worker_args += ["--worker-timeout", str(args.worker_timeout)]
        with common.worker_process(__file__, worker_args):
            cases = {"idle": sampler.series(samples)}
            # The busy cases need a thread for each busy actor and the target.
            if args.threads > BUSY:
                for kind in BUSY_KINDS:
                    cases[f"busy_{kind}"] = sampler.busy_series(kind, samples)
    figures: dict[str, float | None] = {}
    for case in ("idle", *(f"busy_{kind}" for kind in BUSY_KINDS)):
        for percent in (50, 99):
            found = cases.get(case)
            figures[f"{case}_p{percent}_ms"] = None if found is None else found[f"p{percent}"]
    common.emit(
        figures,
        {
            **cases,
            "max_delay_s": args.max_delay,
            "busy_actors": BUSY,
            "threads": args.threads,
            "worker_timeout_ms": args.worker_timeout,
        },
    )


if __name__ == "__main__":
    main()
