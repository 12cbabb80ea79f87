"""Fixtures: brokers, backends and workers, each torn down after its test.

Redis tests run against ``DRAMATIQ_ABORT_TEST_REDIS`` (default
``redis://127.0.0.1:6379/15``), in a namespace of their own; PostgreSQL
tests against ``DRAMATIQ_ABORT_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``), in tables of their own.
They are skipped when the server does not answer, except under
``CI=true`` where that fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import dramatiq
import psycopg
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware.asyncio import AsyncIO
from dramatiq.results import Results
from dramatiq.results.backends import StubBackend as StubResultBackend

from dramatiq_abort import Abortable, EventBackend
from dramatiq_abort.backends import PostgresBackend, RedisBackend, StubBackend

from .support import (
    SLOW_KINDS,
    NamespacedResults,
    PrivateRedis,
    backend_in,
    delete_namespace,
    marks,
    start_private_redis,
    unavailable,
)

# test_migration_guide imports PrivateRedis from here.
__all__ = ["PrivateRedis"]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test marked with one of the costly kinds, before
    ``-m`` selects: ``-m "not slow"`` is then the quick suite."""
    for item in items:
        if any(item.get_closest_marker(kind) for kind in SLOW_KINDS):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Let the helpers that start costly things check the test's markers."""
    marks.current = item


REDIS_URL = os.environ.get("DRAMATIQ_ABORT_TEST_REDIS", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get(
    "DRAMATIQ_ABORT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


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


@pytest.fixture(scope="session")
def postgres_url() -> str:
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=2).close()
    except psycopg.Error as e:
        # Not the URL itself: it may hold a password.
        unavailable(f"no PostgreSQL answers (set DRAMATIQ_ABORT_TEST_POSTGRES): {e}")
    return POSTGRES_URL


@pytest.fixture
def postgres_namespace() -> str:
    return f"dramatiq_abort_test_{uuid.uuid4().hex[:16]}"


@pytest.fixture
def postgres_backend(postgres_url: str, postgres_namespace: str) -> Iterator[PostgresBackend]:
    """A PostgresBackend in tables of the test's own, dropped afterwards."""
    with backend_in(postgres_url, postgres_namespace) as backend:
        yield backend


@pytest.fixture
def namespace() -> str:
    return f"dramatiq-abort-test:{uuid.uuid4().hex}:"


@pytest.fixture
def redis_client(redis_url: str, namespace: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    delete_namespace(client, namespace)
    client.close()


@pytest.fixture(params=["stub", "redis", "redis-plain-reads", "postgres"])
def event_backend(request: pytest.FixtureRequest) -> EventBackend:
    """Each backend in turn: the in-memory one, Redis read through this
    package's own reads and through redis-py's, and PostgreSQL."""
    if request.param == "stub":
        return StubBackend()
    if request.param == "postgres":
        backend: PostgresBackend = request.getfixturevalue("postgres_backend")
        return backend
    client = request.getfixturevalue("redis_client")
    return RedisBackend(
        client=client,
        namespace=request.getfixturevalue("namespace"),
        plain_reads=request.param == "redis-plain-reads",
    )


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
    delete_namespace(broker.client, namespace)
    broker.close()


@pytest.fixture
def redis_worker(redis_broker: RedisBroker) -> Iterator[dramatiq.Worker]:
    worker = dramatiq.Worker(redis_broker, worker_timeout=100, worker_threads=4)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def private_redis(tmp_path: Any) -> Iterator[PrivateRedis]:
    server = start_private_redis(str(tmp_path))
    try:
        yield server
    finally:
        server.stop()
