"""Fixtures: brokers, backends and workers, each torn down after its test.

Redis tests run against ``DRAMATIQ_ABORT_TEST_REDIS`` (default
``redis://127.0.0.1:6379/15``), in a namespace of their own; they are
skipped when no Redis answers, except under ``CI=true`` where that fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware.asyncio import AsyncIO
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend as RedisResultBackend
from dramatiq.results.backends import StubBackend as StubResultBackend

from dramatiq_abort import Abortable, EventBackend
from dramatiq_abort.backends import RedisBackend, StubBackend

from .support import unavailable

REDIS_URL = os.environ.get("DRAMATIQ_ABORT_TEST_REDIS", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as e:
        unavailable(f"no Redis answers at {REDIS_URL} (set DRAMATIQ_ABORT_TEST_REDIS): {e}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def namespace() -> str:
    return f"dramatiq-abort-test:{uuid.uuid4().hex}:"


@pytest.fixture
def redis_client(redis_url: str, namespace: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    keys = list(client.scan_iter(match=namespace + "*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(params=["stub", "redis"])
def event_backend(request: pytest.FixtureRequest) -> EventBackend:
    """Each backend in turn: the in-memory one and Redis."""
    if request.param == "stub":
        return StubBackend()
    client = request.getfixturevalue("redis_client")
    return RedisBackend(client=client, namespace=request.getfixturevalue("namespace"))


@pytest.fixture
def stub_broker() -> Iterator[StubBroker]:
    broker = StubBroker()
    broker.emit_after("process_boot")
    dramatiq.set_broker(broker)
    yield broker
    broker.flush_all()
    broker.close()


@pytest.fixture
def abortable(stub_broker: StubBroker, event_backend: EventBackend) -> Abortable:
    """An Abortable on a StubBroker with Results, over each event backend."""
    stub_broker.add_middleware(Results(backend=StubResultBackend()))
    middleware = Abortable(backend=event_backend)
    stub_broker.add_middleware(middleware)
    return middleware


@pytest.fixture
def worker(stub_broker: StubBroker, abortable: Abortable) -> Iterator[dramatiq.Worker]:
    worker = dramatiq.Worker(stub_broker, worker_timeout=100, worker_threads=4)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def async_worker(stub_broker: StubBroker, abortable: Abortable) -> Iterator[dramatiq.Worker]:
    stub_broker.add_middleware(AsyncIO())
    worker = dramatiq.Worker(stub_broker, worker_timeout=100, worker_threads=4)
    worker.start()
    yield worker
    worker.stop()


class NamespacedResults(RedisResultBackend):  # type: ignore[misc]
    """dramatiq's Redis result backend with its keys in the test's namespace:
    dramatiq names a result by a hash of its namespace and message, so the
    key would escape the namespace and the clean-up."""

    def build_message_key(self, message: Any) -> str:
        return f"{self.namespace}:{super().build_message_key(message)}"


@pytest.fixture
def redis_broker(redis_url: str, namespace: str) -> Iterator[RedisBroker]:
    """A RedisBroker in the test's namespace, with Results and Abortable."""
    broker = RedisBroker(url=redis_url, namespace=namespace + "broker")
    broker.add_middleware(
        Results(backend=NamespacedResults(url=redis_url, namespace=namespace + "results"))
    )
    broker.add_middleware(Abortable(backend=RedisBackend.from_url(redis_url, namespace=namespace)))
    broker.emit_after("process_boot")
    dramatiq.set_broker(broker)
    yield broker
    client: Any = broker.client
    keys = list(client.scan_iter(match=namespace + "*"))
    if keys:
        client.delete(*keys)
    broker.close()


@pytest.fixture
def redis_worker(redis_broker: RedisBroker) -> Iterator[dramatiq.Worker]:
    worker = dramatiq.Worker(redis_broker, worker_timeout=100, worker_threads=4)
    worker.start()
    yield worker
    worker.stop()


class PrivateRedis:
    """A redis-server of the test's own, on a free loopback port, that the
    test may stop and start again."""

    def __init__(self, directory: str, *options: str, config: str | None = None) -> None:
        """``options`` are extra ``redis-server`` arguments, such as
        ``"--cluster-enabled", "yes"``; ``config`` a configuration file."""
        self.options = options
        self.config = config
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                *([self.config] if self.config else []),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.directory,
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise RuntimeError(
                            f"redis-server did not start on port {self.port}"
                        ) from None
                    time.sleep(0.01)
                finally:
                    client.close()
        except BaseException:
            # Whatever stopped the wait (a test's timeout too), the server
            # must not outlive the test.
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


def start_private_redis(
    directory: str,
    *options: str,
    config: str | None = None,
    server_class: Callable[..., PrivateRedis] = PrivateRedis,
) -> PrivateRedis:
    """A started :class:`PrivateRedis` (or ``server_class``, called as it
    is); skips the test when no ``redis-server`` is installed, except under
    ``CI=true`` where that fails."""
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed: tests that restart Redis need their own")
    attempts_left = 3
    while True:
        server = server_class(directory, *options, config=config)
        try:
            server.start()
            return server
        except RuntimeError:
            # The free port found may have been taken meanwhile: try another.
            attempts_left -= 1
            if not attempts_left:
                raise


@pytest.fixture
def private_redis(tmp_path: Any) -> Iterator[PrivateRedis]:
    server = start_private_redis(str(tmp_path))
    try:
        yield server
    finally:
        server.stop()
