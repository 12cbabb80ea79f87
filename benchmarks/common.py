"""Helpers shared by the benchmarks.

Each benchmark is a program that uses only the API that this repository's
dramatiq-abort and the published 1.2.1 share (``Abort``, ``Abortable``,
``abort``, ``abort_requested`` and ``backends.RedisBackend``), so that the
same file runs under either interpreter. It prints one JSON object on
stdout; ``run.py`` runs it under both and prints the comparison.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

import dramatiq_abort
from dramatiq_abort import Abortable
from dramatiq_abort.backends import RedisBackend

if TYPE_CHECKING:
    from dramatiq.actor import ActorDecorator

#: The prefix of every key the benchmarks create.
KEY_PREFIX = "dramatiq-abort-bench:"
#: Where the benchmarks run when neither ``--redis-url`` nor ``BENCH_REDIS_URL`` says.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
#: Set in a worker process started by :func:`serve_worker` when it is told to stop.
STOP = threading.Event()


def parser(description: str) -> argparse.ArgumentParser:
    """The command line every benchmark accepts."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL),
        help="Redis to run against; every key is under a namespace of its own, "
        "deleted afterwards (default: %(default)s)",
    )
    result.add_argument("--quick", action="store_true", help="few samples: a smoke run")
    result.add_argument("--seed", type=int, default=1, help="seed of the random delays")
    return result


def package_info() -> dict[str, str]:
    """Which dramatiq-abort (and dependencies) this interpreter runs."""
    return {
        "dramatiq_abort": str(getattr(dramatiq_abort, "__version__", "?")),
        "dramatiq_abort_file": os.path.dirname(os.path.abspath(dramatiq_abort.__file__)),
        "dramatiq": dramatiq.__version__,
        "redis": redis.__version__,
        "python": platform.python_version(),
    }


def emit(figures: dict[str, float | None], details: dict[str, Any]) -> None:
    """Print the result of a benchmark: the one line ``run.py`` reads."""
    print(json.dumps({"package": package_info(), "figures": figures, "details": details}))


def unique_namespace(label: str) -> str:
    return f"{KEY_PREFIX}{label}:{uuid.uuid4().hex[:12]}:"


def delete_namespace(url: str, namespace: str) -> None:
    """Delete every key under ``namespace``, and only those."""
    if not namespace.startswith(KEY_PREFIX):
        raise ValueError(f"refusing to delete keys outside {KEY_PREFIX!r}: {namespace!r}")
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=namespace + "*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


@contextlib.contextmanager
def namespace_on(url: str, label: str) -> Iterator[str]:
    """A fresh key namespace on ``url``, emptied on exit."""
    namespace = unique_namespace(label)
    try:
        yield namespace
    finally:
        delete_namespace(url, namespace)


def make_abortable(url: str, namespace: str) -> Abortable:
    """An ``Abortable`` over a ``RedisBackend`` whose keys are under
    ``namespace``; for a ``postgresql://`` URL (this package only), over a
    ``PostgresBackend`` whose tables are named after it."""
    if url.startswith(("postgresql://", "postgres://")):
        from dramatiq_abort.backends.postgres import PostgresBackend

        return Abortable(backend=PostgresBackend.from_url(url, namespace=sql_namespace(namespace)))
    return Abortable(backend=RedisBackend.from_url(url, namespace=namespace + "aborts:"))


def sql_namespace(namespace: str) -> str:
    """The namespace of a ``PostgresBackend`` for the key namespace
    ``namespace``: a SQL name, unique as the key namespace is."""
    return "dramatiq_abort_bench_" + namespace.rstrip(":").rsplit(":", 1)[-1]


def make_broker(
    url: str,
    namespace: str,
    *,
    abortable: bool,
    backend_url: str | None = None,
    client: redis.Redis | None = None,
) -> tuple[RedisBroker, Abortable | None]:
    """A RedisBroker under ``namespace`` (on ``client`` if given, else on
    ``url``), set as the default broker, with an ``Abortable`` (its backend
    on ``backend_url``, default ``url``) when asked."""
    if client is None:
        broker = RedisBroker(url=url, namespace=namespace + "broker")
    else:
        broker = RedisBroker(client=client, namespace=namespace + "broker")
    middleware = None
    if abortable:
        middleware = make_abortable(backend_url or url, namespace)
        broker.add_middleware(middleware)
    dramatiq.set_broker(broker)
    return broker, middleware


def pooled_client(url: str, connections: int) -> redis.Redis:
    """A client for ``url`` shared by many threads: past ``connections`` at
    once they wait for one, where redis-py's default pool (100 in redis-py 8)
    raises ``MaxConnectionsError``."""
    pool = redis.BlockingConnectionPool.from_url(url, max_connections=connections, timeout=60)
    return redis.Redis(connection_pool=pool)


def actor(broker: dramatiq.Broker, name: str, queue_name: str) -> ActorDecorator:
    """Declare an actor of a benchmark on ``broker``: never retried."""
    return dramatiq.actor(broker=broker, actor_name=name, queue_name=queue_name, max_retries=0)


@contextlib.contextmanager
def running_worker(
    broker: dramatiq.Broker, threads: int, worker_timeout: int = 1000
) -> Iterator[dramatiq.Worker]:
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=worker_timeout)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def serve_worker(broker: dramatiq.Broker, threads: int, worker_timeout: int = 1000) -> None:
    """Run a worker until stdin closes, in a process started by :func:`worker_process`."""
    with running_worker(broker, threads, worker_timeout):
        print("ready", flush=True)
        # select first: under gevent it yields to the worker's greenlets.
        select.select([sys.stdin], [], [])
        sys.stdin.read()
        STOP.set()


@contextlib.contextmanager
def worker_process(script: str, args: Sequence[str]) -> Iterator[subprocess.Popen[str]]:
    """Run ``script`` (its worker side) under this interpreter until the block ends."""
    process = subprocess.Popen(
        [sys.executable, script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"the worker process did not start: {line!r}")
        yield process
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of our own on a free loopback port, stopped on exit.

    Nothing else talks to it, so its command counts are ours alone.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not on PATH")
    with tempfile.TemporaryDirectory(prefix="dramatiq-abort-bench-") as directory:
        for _ in range(5):
            port = free_port()
            command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
            command += ["--appendonly", "no", "--dir", directory, "--loglevel", "warning"]
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
            try:
                url = f"redis://127.0.0.1:{port}/0"
                if _answers(url, process):
                    yield url
                    return
            finally:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        raise RuntimeError("could not start a private redis-server")


def _answers(url: str, process: subprocess.Popen[bytes]) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                time.sleep(0.05)
        return False
    finally:
        client.close()


def command_counts(client: redis.Redis) -> dict[str, int]:
    """Calls per command since the server started, from ``INFO commandstats``."""
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if isinstance(value, dict)
    }


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, interpolated linearly."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def wait_report(client: redis.Redis, key: str, token: str, timeout: float) -> list[Any] | None:
    """The report (a JSON list whose first item is ``token``) that a worker
    pushed on ``key``, or None after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        # Short blocks: redis-py 8 times reads out after 5 s by default.
        popped = client.blpop([key], min(max(left, 0.01), 2))
        if popped is None:
            continue
        report: list[Any] = json.loads(popped[1])
        if report[0] == token:
            return report
    return None


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.01)
