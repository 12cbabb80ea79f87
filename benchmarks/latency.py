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

``--postgres-url URL`` measures instead the same cases with the abort
backend on Redis and on PostgreSQL (this package only; the broker and the
reports stay on Redis), in ``--rounds`` alternating rounds (a fresh
worker process each): per backend and case, the median of the rounds'
p50 and their spread (largest minus smallest), and the p99 of all samples.

``--switch-interval S`` (repeatable) measures instead the trade-off of a
shorter ``sys.setswitchinterval()`` in the worker: the case with 20
CPU-bound actors only, once per interval given, in ``--rounds``
alternating rounds (a fresh worker process each), and beside its latency
how much Python work the 20 busy actors got done per second, as a ratio
to the first interval's in the same round.

    python benchmarks/latency.py --samples 40
    python benchmarks/latency.py --samples 20 --rounds 5 \\
        --switch-interval 0.005 --switch-interval 0.001
    python benchmarks/latency.py --samples 20 --rounds 5 \\
        --postgres-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
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
    when the Abort landed, with how many loops of 10,000 it ran meanwhile."""
    assert _reporter is not None
    started_at = time.monotonic()
    deadline = started_at + limit
    loops = 0
    try:
        _reporter.rpush(f"{_namespace}{role}:started", json.dumps([token]))
        while time.monotonic() < deadline:
            if kind == "io":
                time.sleep(0.005)
                continue
            for _ in range(10_000):
                pass
            loops += 1
    except Abort:
        aborted_at = time.monotonic()
        report = [token, aborted_at, loops, started_at]
        _reporter.rpush(f"{_namespace}{role}:aborted", json.dumps(report))


def declare(broker: dramatiq.Broker) -> dramatiq.Actor[[str, str, float, str], None]:
    return common.actor(broker, "bench_spin", QUEUE)(spin)


def work(args: argparse.Namespace) -> None:
    """The worker process: runs ``spin`` with the Abortable middleware."""
    global _reporter, _namespace
    _reporter = redis.Redis.from_url(args.redis_url)
    _namespace = args.namespace
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval[0])
    broker, _ = common.make_broker(
        args.redis_url, args.namespace, abortable=True, backend_url=args.abort_url
    )
    declare(broker)
    common.serve_worker(broker, args.threads, args.worker_timeout)


class Sampler:
    """The process that sends the messages and the aborts."""

    def __init__(
        self, args: argparse.Namespace, namespace: str, abort_url: str | None = None
    ) -> None:
        """``abort_url``: where the aborts go, by default the Redis of ``args``."""
        self.client = redis.Redis.from_url(args.redis_url)
        self.namespace = namespace
        broker, _ = common.make_broker(args.redis_url, namespace, abortable=False)
        self.actor = declare(broker)
        self.middleware: Abortable = common.make_abortable(abort_url or args.redis_url, namespace)
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
            "latencies_ms": latencies,
            "p50": common.percentile(latencies, 50),
            "p99": common.percentile(latencies, 99),
            "max": max(latencies, default=float("nan")),
        }

    def busy_series(self, kind: str, count: int) -> dict[str, Any]:
        """``series`` with ``BUSY`` actors of ``kind`` running beside the
        target, and the loops per second the busy actors ran, summed."""
        role = f"busy-{kind}"
        busy = dict(self.start(role, BUSY_LIMIT, kind) for _ in range(BUSY))
        self.wait_all(role, "started", BUSY)
        try:
            found = self.series(count)
        finally:
            for message_id in busy.values():
                abort(message_id, middleware=self.middleware)
            self.wait_all(role, "aborted", BUSY)
        key = f"{self.namespace}{role}:aborted"
        reports = [json.loads(item) for item in self.client.lrange(key, 0, -1)]
        self.client.delete(key, f"{self.namespace}{role}:started")
        found["busy_loops_per_s"] = sum(
            loops / (aborted_at - started_at)
            for token, aborted_at, loops, started_at in reports
            if token in busy
        )
        return found

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
    option(
        "--switch-interval",
        type=float,
        action="append",
        help="s: measure the CPU-bound case with this switch interval (repeatable)",
    )
    option(
        "--postgres-url",
        help="measure with the abort backend on Redis and on this PostgreSQL, in turn",
    )
    option(
        "--rounds",
        type=int,
        default=5,
        help="rounds with --switch-interval or --postgres-url (default 5)",
    )
    option("--worker", action="store_true", help=argparse.SUPPRESS)
    option("--namespace", help=argparse.SUPPRESS)
    option("--abort-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        work(args)
        return
    samples = args.samples or (10 if args.quick else 100)
    if args.switch_interval:
        compare_switch_intervals(args, samples)
        return
    if args.postgres_url:
        compare_backends(args, samples)
        return
    with common.namespace_on(args.redis_url, "latency") as namespace:
        sampler = Sampler(args, namespace)
        with common.worker_process(__file__, worker_arguments(args, namespace)):
            cases = {"idle": sampler.series(samples)}
            # The busy cases need a thread for each busy actor and the target.
            if args.threads > BUSY:
                for kind in BUSY_KINDS:
                    cases[f"busy_{kind}"] = sampler.busy_series(kind, samples)
    for series in cases.values():
        del series["latencies_ms"]
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


def worker_arguments(
    args: argparse.Namespace,
    namespace: str,
    switch_interval: float | None = None,
    abort_url: str | None = None,
) -> list[str]:
    """The command line of a worker process for ``args``."""
    arguments = ["--worker", "--redis-url", args.redis_url, "--namespace", namespace]
    arguments += ["--threads", str(args.threads), "--worker-timeout", str(args.worker_timeout)]
    if switch_interval is not None:
        arguments += ["--switch-interval", str(switch_interval)]
    if abort_url is not None:
        arguments += ["--abort-url", abort_url]
    return arguments


def compare_backends(args: argparse.Namespace, samples: int) -> None:
    """Each case with the aborts on Redis and on PostgreSQL, in alternating rounds."""
    from dramatiq_abort.backends.postgres import PostgresBackend

    urls = {"redis": args.redis_url, "postgres": args.postgres_url}
    cases = ("idle", "busy_cpu") if args.threads > BUSY else ("idle",)
    round_p50s: dict[str, list[float]] = {f"{name}_{case}": [] for name in urls for case in cases}
    latencies: dict[str, list[float]] = {label: [] for label in round_p50s}
    missed = 0
    with common.namespace_on(args.redis_url, "latency") as namespace:
        samplers = {name: Sampler(args, namespace, url) for name, url in urls.items()}
        try:
            for _ in range(args.rounds):
                for name, url in urls.items():
                    arguments = worker_arguments(args, namespace, abort_url=url)
                    with common.worker_process(__file__, arguments):
                        for case in cases:
                            sampler = samplers[name]
                            found = (
                                sampler.series(samples)
                                if case == "idle"
                                else sampler.busy_series("cpu", samples)
                            )
                            round_p50s[f"{name}_{case}"].append(found["p50"])
                            latencies[f"{name}_{case}"] += found["latencies_ms"]
                            missed += found["missed"]
        finally:
            backend = samplers["postgres"].middleware.backend
            assert isinstance(backend, PostgresBackend)
            backend.drop()
            backend.close()
    figures: dict[str, float | None] = {}
    for label, p50s in round_p50s.items():
        figures[f"{label}_p50_ms"] = statistics.median(p50s)
        figures[f"{label}_p50_spread_ms"] = max(p50s) - min(p50s)
        figures[f"{label}_p99_ms"] = common.percentile(latencies[label], 99)
    details: dict[str, Any] = {"rounds": args.rounds, "samples_per_round": samples}
    details["round_p50s_ms"] = {
        label: [round(p, 2) for p in p50s] for label, p50s in round_p50s.items()
    }
    details["missed"] = missed
    common.emit(figures, details)


def compare_switch_intervals(args: argparse.Namespace, samples: int) -> None:
    """The CPU-bound case under each switch interval, in alternating rounds."""
    if args.threads <= BUSY:
        raise SystemExit(f"--switch-interval needs more than {BUSY} --threads")
    intervals: list[float] = args.switch_interval
    latencies: dict[float, list[float]] = {interval: [] for interval in intervals}
    work: dict[float, list[float]] = {interval: [] for interval in intervals}
    missed = 0
    with common.namespace_on(args.redis_url, "latency") as namespace:
        sampler = Sampler(args, namespace)
        for _ in range(args.rounds):
            for interval in intervals:
                arguments = worker_arguments(args, namespace, interval)
                with common.worker_process(__file__, arguments):
                    found = sampler.busy_series("cpu", samples)
                latencies[interval] += found["latencies_ms"]
                work[interval].append(found["busy_loops_per_s"])
                missed += found["missed"]
    figures: dict[str, float | None] = {}
    details: dict[str, Any] = {"rounds": args.rounds, "samples_per_round": samples}
    for interval in intervals:
        ratios = [
            mine / first for mine, first in zip(work[interval], work[intervals[0]], strict=False)
        ]
        label = f"{interval * 1000:g}ms"
        figures[f"busy_cpu_p50_ms_at_{label}"] = common.percentile(latencies[interval], 50)
        figures[f"busy_cpu_p99_ms_at_{label}"] = common.percentile(latencies[interval], 99)
        figures[f"busy_work_ratio_at_{label}"] = statistics.median(ratios)
        figures[f"busy_work_ratio_spread_at_{label}"] = max(ratios) - min(ratios)
        details[f"busy_loops_per_s_at_{label}"] = [round(rate) for rate in work[interval]]
    details["missed"] = missed
    common.emit(figures, details)


if __name__ == "__main__":
    main()
