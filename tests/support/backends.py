"""Backends made for tests: gated, namespaced, and the checks of what they hold."""

from __future__ import annotations

import contextlib
import select
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import redis
from dramatiq.results.backends import RedisBackend as RedisResultBackend

from dramatiq_abort import Abortable, Event, EventBackend
from dramatiq_abort.backends import PostgresBackend, RedisBackend
from dramatiq_abort.wire import is_inquiry

from .waiting import WAIT


def recorded(backend: EventBackend) -> list[Event]:
    """Every event ``backend`` holds, as a watcher catching up reads them."""
    subscription = backend.subscribe()
    try:
        return [timed.event for timed in subscription.recorded()]
    finally:
        subscription.close()


class _Gated(EventBackend):
    """A backend whose push channel can be kept from reconnecting: while
    :attr:`subscriptions_allowed` is clear, ``subscribe()`` fails as its
    client does when the server cannot be reached."""

    #: What ``subscribe()`` raises while held back: the client's own error.
    held_back_error: type[Exception] = ConnectionError

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.subscriptions_allowed = threading.Event()
        self.subscriptions_allowed.set()

    def subscribe(self) -> Any:
        if not self.subscriptions_allowed.is_set():
            raise self.held_back_error("subscriptions are held back by the test")
        return super().subscribe()


class GatedBackend(_Gated, RedisBackend):
    """A RedisBackend whose push channel can be kept from reconnecting."""

    held_back_error = redis.ConnectionError


class GatedPostgresBackend(_Gated, PostgresBackend):
    """A PostgresBackend whose push channel can be kept from reconnecting."""

    held_back_error = psycopg.OperationalError


class NamespacedResults(RedisResultBackend):  # type: ignore[misc]
    """dramatiq's Redis result backend with its keys in the test's namespace:
    dramatiq names a result by a hash of its namespace and message, so the
    key would escape the namespace and the clean-up."""

    def build_message_key(self, message: Any) -> str:
        return f"{self.namespace}:{super().build_message_key(message)}"


def postgres_tables(backend: PostgresBackend) -> list[str]:
    """The tables of ``backend``'s namespace that exist."""
    with backend.pool.connection() as connection:
        rows = connection.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE %s ORDER BY tablename",
            [backend.namespace.replace("_", "\\_") + "\\_%"],
        ).fetchall()
    return [name for (name,) in rows]


def assert_nothing_written(backend: EventBackend) -> None:
    """``backend`` holds nothing: no table of a PostgreSQL backend's
    namespace, no key under a Redis backend's, no event in any other."""
    if isinstance(backend, PostgresBackend):
        assert postgres_tables(backend) == []
    elif isinstance(backend, RedisBackend):
        assert list(backend.client.scan_iter(match=backend.namespace + "*")) == []
    else:
        assert recorded(backend) == []


def delete_namespace(client: Any, namespace: str) -> None:
    """Delete every key of ``client``'s database under ``namespace``, and only those."""
    keys = list(client.scan_iter(match=namespace + "*"))
    if keys:
        client.delete(*keys)


@contextlib.contextmanager
def backend_in(url: str, namespace: str, kind: Any = PostgresBackend) -> Iterator[Any]:
    """A PostgreSQL backend of class ``kind`` on ``namespace``, its tables
    dropped and its connections closed afterwards."""
    backend = kind.from_url(url, namespace=namespace)
    with contextlib.ExitStack() as steps:
        steps.callback(backend.close)
        steps.callback(backend.drop)
        yield backend


#: A socket timeout for a client, in seconds, shorter than the waits of
#: :func:`assert_waits_outlast_the_socket_timeout`.
SHORT_SOCKET_TIMEOUT = 1.0
#: Those waits, in seconds: over twice the socket timeout.
LONG_WAIT = 2.5


def assert_waits_outlast_the_socket_timeout(backend: RedisBackend) -> None:
    """Check that each wait of ``backend``, whose client gives up a read
    after ``SHORT_SOCKET_TIMEOUT``, lasts the ``LONG_WAIT`` asked and ends
    as a wait ends rather than with the client's timeout: a listing with a
    worker process that never answers, an outcome, an event; and that a
    subscription idle all that time still receives."""
    # A subscription nobody reads: a worker process that is stuck.
    silent = backend.subscribe()
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(1) as pool:
            # At once, but not with wait_many(), which the listing would
            # count as one more worker process.
            outcome = pool.submit(backend.wait_outcome, "no-such-message", LONG_WAIT)
            listing = Abortable(backend=backend).running_messages(timeout=LONG_WAIT)
            assert outcome.result(WAIT) is None
        assert listing.answered == 0
        # Unknown on a cluster, whose nodes count only their own subscribers.
        assert listing.expected in (1, None)
        assert time.monotonic() - started >= LONG_WAIT
        started = time.monotonic()
        assert backend.wait_many(["abort:no-such-message"], int(LONG_WAIT * 1000)) is None
        assert time.monotonic() - started >= LONG_WAIT
        # The listing's inquiry came long ago: received, it leaves nothing.
        assert all(is_inquiry(timed.event) for timed in silent.receive())
        backend.notify([Event("abort:idle-listener", {})], ttl=60_000)
        assert select.select([silent.fileno()], [], [], WAIT)[0]
        assert [timed.event.key for timed in silent.receive()] == ["abort:idle-listener"]
    finally:
        silent.close()
