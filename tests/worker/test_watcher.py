"""The watcher against a Redis of the test's own: what it costs per message,
catching up, and surviving the server going away."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.stub import StubBroker

from dramatiq_abort import Abortable, AbortMode, abort
from dramatiq_abort.backends import RedisBackend
from dramatiq_abort.wire import Inquiry, inquiry_event

from ..support import (
    WAIT,
    GatedBackend,
    PrivateRedis,
    assert_a_cancelled_message_never_runs,
    connected_watcher,
    spin_until_aborted,
    start_worker,
    wait_until_cut_off,
)

pytestmark = [pytest.mark.timeout(60), pytest.mark.servers]


def commands_served(client: redis.Redis) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return sum(int(value["calls"]) for name, value in stats.items() if name != "cmdstat_info")


@pytest.fixture(params=[False, True], ids=["own-reads", "plain-reads"])
def backend(private_redis: PrivateRedis, request: pytest.FixtureRequest) -> Iterator[RedisBackend]:
    """A backend on the test's own Redis, its subscription read either way."""
    backend = RedisBackend.from_url(
        private_redis.url, namespace="watcher-test:", plain_reads=request.param
    )
    yield backend
    backend.client.close()


def test_processing_messages_sends_no_command_to_the_backend(
    stub_broker: StubBroker, backend: RedisBackend, private_redis: PrivateRedis
) -> None:
    middleware = Abortable(backend=backend)
    done = threading.Semaphore(0)

    @dramatiq.actor
    def noop() -> None:
        done.release()

    worker = start_worker(stub_broker, middleware)
    observer = redis.Redis.from_url(private_redis.url)
    try:
        noop.send()
        assert done.acquire(timeout=WAIT)
        before = commands_served(observer)
        for _ in range(100):
            noop.send()
        for _ in range(100):
            assert done.acquire(timeout=WAIT)
        assert commands_served(observer) == before
        abort("someone-else")
        assert commands_served(observer) > before, "the count would see a command"
    finally:
        worker.stop()
        observer.close()


def test_a_cancel_recorded_before_the_worker_boots_is_honoured(
    stub_broker: StubBroker, backend: RedisBackend
) -> None:
    ran = threading.Event()

    @dramatiq.actor
    def late() -> None:
        ran.set()

    @dramatiq.actor
    def marker() -> None:
        pass

    middleware = Abortable(backend=backend)
    message = late.send()
    middleware.abort(message.message_id, mode=AbortMode.CANCEL)
    marker.send()
    worker = start_worker(stub_broker, middleware)
    try:
        stub_broker.join(late.queue_name)
        worker.join()
        assert not ran.is_set()
    finally:
        worker.stop()


def test_the_watcher_survives_redis_restarts_and_aborts_again_after(
    stub_broker: StubBroker, backend: RedisBackend, private_redis: PrivateRedis
) -> None:
    middleware = Abortable(backend=backend)
    started, interrupted = threading.Semaphore(0), threading.Semaphore(0)

    @dramatiq.actor(max_retries=0)
    def crunch() -> None:
        spin_until_aborted(started.release, interrupted.release)

    worker = start_worker(stub_broker, middleware)
    try:
        watcher = connected_watcher(middleware)
        for _ in range(2):
            private_redis.stop()
            wait_until_cut_off(watcher)
            with pytest.raises(redis.ConnectionError):
                abort("while-down")

            message = crunch.send()
            assert started.acquire(timeout=WAIT)
            private_redis.start()
            # Sent at once: depending on the backoff, the watcher learns it
            # by catching up when it reconnects or through its subscription.
            abort(message.message_id)
            assert interrupted.acquire(timeout=WAIT)
            assert watcher.connected.wait(WAIT)
        assert watcher.is_alive()
    finally:
        worker.stop()


def test_a_cancel_sent_while_the_watcher_reconnects_is_honoured(
    stub_broker: StubBroker, private_redis: PrivateRedis
) -> None:
    backend = GatedBackend(
        client=redis.Redis.from_url(private_redis.url), namespace="watcher-test:"
    )
    middleware = Abortable(backend=backend)
    ran: list[str] = []

    @dramatiq.actor
    def job(name: str) -> None:
        ran.append(name)

    worker = start_worker(stub_broker, middleware)
    observer = redis.Redis.from_url(private_redis.url)
    try:
        watcher = connected_watcher(middleware)
        backend.subscriptions_allowed.clear()
        observer.client_kill_filter(_type="pubsub")
        wait_until_cut_off(watcher)

        assert_a_cancelled_message_never_runs(stub_broker, worker, job, ran)

        backend.subscriptions_allowed.set()
        assert watcher.connected.wait(WAIT)
    finally:
        backend.subscriptions_allowed.set()
        worker.stop()
        observer.close()
        backend.client.close()


def test_messages_run_while_the_backend_is_unreachable_and_the_log_says_so_once(
    stub_broker: StubBroker,
    backend: RedisBackend,
    private_redis: PrivateRedis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    middleware = Abortable(backend=backend)
    ran: list[int] = []

    @dramatiq.actor
    def job(number: int) -> None:
        ran.append(number)

    worker = start_worker(stub_broker, middleware)
    try:
        watcher = connected_watcher(middleware)
        private_redis.stop()
        wait_until_cut_off(watcher)
        with caplog.at_level(logging.WARNING, logger=middleware.logger.name):
            for number in range(20):
                job.send(number)
            stub_broker.join(job.queue_name)
            worker.join()
        assert sorted(ran) == list(range(20))
        unpolled = [r for r in caplog.records if "Could not ask the backend" in r.getMessage()]
        assert len(unpolled) == 1
        assert "ConnectionError" in unpolled[0].getMessage()
    finally:
        worker.stop()


def test_a_watcher_that_reconnects_during_a_listing_answers_it_once(
    stub_broker: StubBroker, backend: RedisBackend, private_redis: PrivateRedis
) -> None:
    # The inquiry lives while its asker waits, and a reconnecting watcher
    # catches up on it: a second answer would count as a second process.
    middleware = Abortable(backend=backend)
    worker = start_worker(stub_broker, middleware)
    observer = redis.Redis.from_url(private_redis.url)
    try:
        watcher = connected_watcher(middleware)
        inquiry = Inquiry(uuid.uuid4().hex, None, None, None, False)
        backend.notify([inquiry_event(inquiry)], ttl=int(WAIT * 1000))
        assert len(backend.collect_answers(inquiry.reply_to, 1, WAIT)) == 1

        observer.client_kill_filter(_type="pubsub")
        wait_until_cut_off(watcher)
        assert watcher.connected.wait(WAIT)

        assert backend.collect_answers(inquiry.reply_to, 1, 0.5) == []
    finally:
        worker.stop()
        observer.close()
