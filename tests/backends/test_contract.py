"""The event backend contract, for the in-memory and the Redis backend, and a
user's own backend that only implements the three documented methods."""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from collections.abc import Iterable

import dramatiq
import pytest
import redis
from dramatiq.brokers.stub import StubBroker
from redis.sentinel import Sentinel

from dramatiq_abort import Abortable, Event, EventBackend, abort
from dramatiq_abort.backend import Subscription
from dramatiq_abort.backends import RedisBackend, StubBackend
from dramatiq_abort.backends.redis import KEEPALIVE

from ..support import (
    QUEUED_FOR,
    SHORT_SOCKET_TIMEOUT,
    WAIT,
    assert_waits_outlast_the_socket_timeout,
    delete_namespace,
    free_port,
    spin_until_aborted,
)

pytestmark = pytest.mark.timeout(30)


def wait_for_events(subscription: Subscription) -> list[Event]:
    assert select.select([subscription.fileno()], [], [], WAIT)[0], "no event was pushed"
    return [timed.event for timed in subscription.receive()]


def test_poll_and_wait_many_see_notified_events_until_their_ttl(
    event_backend: EventBackend,
) -> None:
    assert event_backend.poll("abort:m1") is None
    event_backend.notify(
        [Event("cancel:m1", {}), Event("abort:m1", {"abort_timeout": 5})], ttl=60_000
    )
    assert event_backend.poll("abort:m1") == Event("abort:m1", {"abort_timeout": 5})
    assert event_backend.poll("abort:m1") == Event("abort:m1", {"abort_timeout": 5}), (
        "poll is not destructive"
    )
    assert event_backend.wait_many(["abort:other", "cancel:m1"], 1000) == Event("cancel:m1", {})

    event_backend.notify([Event("abort:short", {})], ttl=30)
    deadline = time.monotonic() + WAIT
    while event_backend.poll("abort:short") is not None:
        assert time.monotonic() < deadline, "the event outlived its TTL"
        time.sleep(0.01)


def test_wait_many_wakes_on_a_later_notify_and_times_out(event_backend: EventBackend) -> None:
    assert event_backend.wait_many(["abort:nothing"], 50) is None
    timer = threading.Timer(0.05, event_backend.notify, ([Event("abort:later", {})], 60_000))
    timer.start()
    try:
        assert event_backend.wait_many(["abort:later"], int(WAIT * 1000)) == Event(
            "abort:later", {}
        )
    finally:
        timer.cancel()
        # notify() may still be in its last command: the fixture closes its client next.
        timer.join(WAIT)


def test_a_subscription_gets_every_event_pushed_and_catches_up_on_recorded_ones(
    event_backend: EventBackend,
) -> None:
    event_backend.notify([Event("cancel:before", {})], ttl=60_000)
    subscription = event_backend.subscribe()
    assert subscription is not None
    try:
        recorded = {timed.event.key: timed for timed in subscription.recorded()}
        assert set(recorded) == {"cancel:before"}
        assert 0 < recorded["cancel:before"].ttl_left <= recorded["cancel:before"].ttl == 60_000

        event_backend.notify(
            [Event("cancel:after", {}), Event("abort:after", {"abort_timeout": 0})], ttl=1_000
        )
        assert wait_for_events(subscription) == [
            Event("cancel:after", {}),
            Event("abort:after", {"abort_timeout": 0}),
        ]
        assert subscription.receive() == []
    finally:
        subscription.close()
        subscription.close()


def test_ttl_must_be_positive(event_backend: EventBackend) -> None:
    with pytest.raises(ValueError, match="ttl must be greater than 0, not 0"):
        event_backend.notify([Event("abort:x", {})], ttl=0)
    if event_backend.records_outcomes:
        with pytest.raises(ValueError, match="ttl must be greater than 0, not -1"):
            event_backend.record_outcome("x", "aborted", ttl=-1)
        assert event_backend.records("x").outcome is None


def test_redis_namespaces_do_not_see_each_other(redis_client: redis.Redis, namespace: str) -> None:
    ours = RedisBackend(client=redis_client, namespace=namespace + "a:")
    theirs = RedisBackend(client=redis_client, namespace=namespace + "b:")
    subscription = theirs.subscribe()
    try:
        ours.notify([Event("abort:shared-id", {})], ttl=60_000)
        assert theirs.poll("abort:shared-id") is None
        assert theirs.recorded() == []
        assert not select.select([subscription.fileno()], [], [], 0.05)[0]
    finally:
        subscription.close()


def test_redis_channels_are_named_after_the_database_as_well_as_the_namespace() -> None:
    # Redis hands what is published to the subscribers of every database:
    # applications on databases 3 and 6 shared their channels, and each
    # heard the other's requests, rules and listings.
    def backend(client: redis.Redis, namespace: str = "app:") -> RedisBackend:
        return RedisBackend(client=client, namespace=namespace)

    on_3, on_6 = backend(redis.Redis(db=3)), backend(redis.Redis(db=6))
    assert (on_3.channel, on_3.outcomes_channel) == (
        "app:{aborts}:db3:events",
        "app:{aborts}:db3:outcomes",
    )
    assert (on_6.channel, on_6.outcomes_channel) == (
        "app:{aborts}:db6:events",
        "app:{aborts}:db6:outcomes",
    )
    assert backend(redis.Redis.from_url("redis://localhost/6")).channel == on_6.channel
    assert backend(redis.Redis.from_url("unix:///tmp/redis.sock?db=6")).channel == on_6.channel
    assert backend(redis.Redis()).channel == "app:{aborts}:db0:events"
    # Not connected until a command is sent: nothing listens on that port.
    sentinel = Sentinel([("127.0.0.1", free_port())])
    assert backend(sentinel.master_for("primary", db=6)).channel == on_6.channel
    # A namespace that ends like a database's name cannot meet another's channel.
    assert backend(redis.Redis(db=0), "app:{aborts}:db3:").channel != on_3.channel


@pytest.mark.slow
@pytest.mark.parametrize("plain_reads", [False, True], ids=["own-reads", "plain-reads"])
def test_redis_waits_longer_than_the_clients_socket_timeout_end_as_waits(
    redis_url: str, namespace: str, plain_reads: bool
) -> None:
    # redis-py fails a read that waits longer than its socket timeout: a
    # listing that waited longer for a paused worker process failed with
    # "Timeout reading from" instead of saying who answered.
    client = redis.Redis.from_url(redis_url, socket_timeout=SHORT_SOCKET_TIMEOUT)
    try:
        assert_waits_outlast_the_socket_timeout(
            RedisBackend(client=client, namespace=namespace, plain_reads=plain_reads)
        )
    finally:
        delete_namespace(client, namespace)
        client.close()


@pytest.mark.parametrize("message_id", ["a:b", "*", "with space", "ünïcødé-✓", "abort:nested"])
def test_redis_keys_hold_any_message_id(
    redis_client: redis.Redis, namespace: str, message_id: str
) -> None:
    backend = RedisBackend(client=redis_client, namespace=namespace)
    backend.notify([Event(f"abort:{message_id}", {})], ttl=60_000)
    assert backend.poll(f"abort:{message_id}") == Event(f"abort:{message_id}", {})
    assert backend.poll("abort:*") is None or message_id == "*"
    assert [timed.event.key for timed in backend.recorded()] == [f"abort:{message_id}"]


def test_malformed_redis_payloads_are_skipped_with_a_warning(
    redis_client: redis.Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = RedisBackend(client=redis_client, namespace=namespace)
    subscription = backend.subscribe()
    try:
        for junk in [
            b"not json",
            b"[1, 2]",
            b'{"ttl": -1, "events": []}',
            b'{"ttl": 5, "events": [[1, {}]]}',
        ]:
            redis_client.publish(backend.channel, junk)
        redis_client.set(backend.prefix + "abort:bad", b"\xff\xfe", px=60_000)
        redis_client.zadd(
            backend.index_key, {backend.prefix + "abort:bad": time.time() * 1000 + 60_000}
        )
        backend.notify([Event("abort:good", {})], ttl=60_000)
        with caplog.at_level(logging.WARNING):
            received: list[Event] = []
            while not received:
                received = wait_for_events(subscription)
            assert received == [Event("abort:good", {})]
            assert [timed.event.key for timed in backend.recorded()] == ["abort:good"]
            assert backend.poll("abort:bad") is None
        assert sum("malformed" in record.message for record in caplog.records) == 6
    finally:
        subscription.close()


class PollOnlyBackend(EventBackend):
    """A user's own backend: the three documented methods and nothing else."""

    def __init__(self) -> None:
        self.inner = StubBackend()

    def notify(self, events: Iterable[Event], ttl: int) -> None:
        self.inner.notify(events, ttl)

    def poll(self, key: str) -> Event | None:
        return self.inner.poll(key)

    def wait_many(self, keys: Iterable[str], timeout: int) -> Event | None:
        return self.inner.wait_many(keys, timeout)


def test_a_poll_only_backend_still_cancels_and_aborts(stub_broker: StubBroker) -> None:
    stub_broker.add_middleware(Abortable(backend=PollOnlyBackend()))
    started, interrupted = threading.Event(), threading.Event()
    ran: list[str] = []

    @dramatiq.actor
    def job(name: str) -> None:
        ran.append(name)
        spin_until_aborted(started.set, interrupted.set)

    worker = dramatiq.Worker(stub_broker, worker_timeout=100, worker_threads=2)
    worker.start()
    try:
        queued = job.send_with_options(args=("queued",), delay=QUEUED_FOR)
        abort(queued.message_id)
        running = job.send("running")
        assert started.wait(WAIT)
        abort(running.message_id)
        assert interrupted.wait(WAIT)
        stub_broker.join(job.queue_name)
        worker.join()
        assert ran == ["running"]
    finally:
        worker.stop()


def test_oversized_redis_payloads_are_refused_with_a_warning(
    redis_client: redis.Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = RedisBackend(client=redis_client, namespace=namespace, max_payload=1000)
    subscription = backend.subscribe()
    try:
        redis_client.set(backend.prefix + "abort:huge", b"x" * 2000, px=60_000)
        with caplog.at_level(logging.WARNING):
            assert backend.poll("abort:huge") is None
            redis_client.publish(backend.channel, b"y" * 2000)
            assert select.select([subscription.fileno()], [], [], WAIT)[0]
            with pytest.raises(redis.ConnectionError, match="2000 bytes"):
                subscription.receive()
        assert sum("too large" in record.message for record in caplog.records) == 2
    finally:
        subscription.close()
    with pytest.raises(ValueError, match="max_payload"):
        RedisBackend(client=redis_client, namespace=namespace, max_payload=0)


def test_a_subscription_probes_its_idle_connection(
    redis_client: redis.Redis, namespace: str
) -> None:
    # It sends no command while no abort comes: only TCP keepalive can tell
    # that the host has gone without closing the connection.
    subscription = RedisBackend(client=redis_client, namespace=namespace).subscribe()
    try:
        with socket.socket(fileno=os.dup(subscription.fileno())) as sock:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
            if hasattr(socket, "TCP_KEEPIDLE"):
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVE[0]
    finally:
        subscription.close()


def test_subscriptions_do_not_use_up_the_clients_pool(redis_url: str, namespace: str) -> None:
    client = redis.Redis.from_url(redis_url, max_connections=2)
    backend = RedisBackend(client=client, namespace=namespace)
    try:
        for _ in range(5):
            backend.subscribe().close()
            assert backend.wait_outcome("some-id", 0.001) is None
        assert client.ping()
    finally:
        client.close()


def test_threads_of_a_backend_from_a_url_wait_for_a_free_connection(
    redis_url: str, namespace: str
) -> None:
    backend = RedisBackend.from_url(redis_url + "?max_connections=2", namespace=namespace)
    threads = 8
    ready = threading.Barrier(threads)
    failures: list[BaseException] = []

    def hold_a_connection() -> None:
        ready.wait(WAIT)
        try:
            # Blocks its connection for 50 ms: more threads than connections.
            backend.client.blpop([namespace + "never-pushed"], timeout=0.05)
        except BaseException as e:
            failures.append(e)

    workers = [threading.Thread(target=hold_a_connection) for _ in range(threads)]
    try:
        for thread in workers:
            thread.start()
    finally:
        for thread in workers:
            thread.join(WAIT)
        backend.client.close()
    assert failures == []


def test_from_url_builds_the_backend_its_scheme_names(redis_url: str, namespace: str) -> None:
    from dramatiq_abort import backends

    assert isinstance(backends.from_url("memory://"), StubBackend)
    backend = backends.from_url(redis_url, namespace=namespace)
    assert isinstance(backend, RedisBackend)
    assert backend.namespace.startswith(namespace)
    backend.client.close()


def test_from_url_refuses_an_unknown_scheme_without_repeating_the_url() -> None:
    from dramatiq_abort import backends

    with pytest.raises(ValueError, match=r"one of redis://.*memory://, not mysql://") as error:
        backends.from_url("mysql://user:secret@db/x")
    assert "secret" not in str(error.value)
    with pytest.raises(TypeError, match="url must be a str"):
        backends.from_url(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="memory:// takes no options, not namespace"):
        backends.from_url("memory://", namespace="x:")
