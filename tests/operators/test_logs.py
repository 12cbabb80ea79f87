"""What an operator reads: one INFO line per aborted message, and one line
per failed attempt to reach the backend."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

import dramatiq
import pytest
import redis
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware, SkipMessage

from dramatiq_abort import Abortable, AbortMode, Event, EventBackend, abort, abort_many
from dramatiq_abort.backends import RedisBackend, StubBackend

from ..support import WAIT, PrivateRedis, spin_until_aborted, start_worker, wait_until

pytestmark = pytest.mark.timeout(60)


def test_an_abort_or_a_cancel_logs_one_info_line_per_message_and_no_warning(
    stub_broker: StubBroker, worker: dramatiq.Worker, caplog: pytest.LogCaptureFixture
) -> None:
    started, interrupted = threading.Event(), threading.Event()

    @dramatiq.actor(max_retries=0)
    def job(number: int) -> None: ...

    @dramatiq.actor(max_retries=0)
    def crunch() -> None:
        spin_until_aborted(started.set, interrupted.set)

    with caplog.at_level(logging.DEBUG):
        queued = [job.message(number) for number in range(50)]
        abort_many(queued, mode=AbortMode.CANCEL)
        for message in queued:
            stub_broker.enqueue(message)
        running = crunch.send()
        assert started.wait(WAIT)
        abort(running)
        assert interrupted.wait(WAIT)
        stub_broker.join(job.queue_name)
        worker.join()

    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    for message, outcome in [*((m, "cancelled") for m in queued), (running, "aborted")]:
        lines = [
            r
            for r in caplog.records
            if r.levelno == logging.INFO and message.message_id in r.getMessage()
        ]
        assert [r.getMessage() for r in lines] == [f"Message {message.message_id!r} was {outcome}."]


def test_a_skip_that_is_not_an_abort_still_warns(
    stub_broker: StubBroker, worker: dramatiq.Worker, caplog: pytest.LogCaptureFixture
) -> None:
    class SkipAll(Middleware):
        def before_process_message(self, broker: dramatiq.Broker, message: object) -> None:
            raise SkipMessage("skipped by the application")

    @dramatiq.actor(queue_name="skipped")
    def job() -> None: ...

    stub_broker.add_middleware(SkipAll())
    with caplog.at_level(logging.WARNING):
        message = job.send()
        stub_broker.join(job.queue_name)
        worker.join()
    assert [r.getMessage() for r in caplog.records] == [f"Message {message} was skipped."]


@pytest.mark.servers
def test_a_worker_whose_backend_is_down_boots_in_boot_timeout_and_logs_one_line_per_attempt(
    stub_broker: StubBroker, private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    backend = RedisBackend(
        client=redis.Redis.from_url(private_redis.url, socket_connect_timeout=1),
        namespace="logs-test:",
    )
    middleware = Abortable(backend=backend, boot_timeout=0.1)
    private_redis.stop()
    caplog.set_level(logging.DEBUG, logger=middleware.logger.name)
    worker = start_worker(stub_broker, middleware)
    try:
        watcher = middleware._watcher
        assert watcher is not None and not watcher.connected.is_set()

        def attempts() -> list[logging.LogRecord]:
            return [
                r
                for r in caplog.records
                if r.levelno == logging.WARNING and "cannot reach its backend" in r.getMessage()
            ]

        wait_until(lambda: len(attempts()) >= 4, "the watcher has tried four times")
        private_redis.start()
        assert watcher.connected.wait(WAIT)
        wait_until(
            lambda: any("again after" in r.getMessage() for r in caplog.records),
            "the watcher says it is back",
        )
    finally:
        worker.stop()
        backend.client.close()

    boot = [r for r in caplog.records if "within 0.1 s (boot_timeout)" in r.getMessage()]
    assert len(boot) == 1 and boot[0].levelno == logging.WARNING
    failed = attempts()
    for number, record in enumerate(failed, 1):
        text = record.getMessage()
        assert f"(attempt {number}, ConnectionError: " in text
        assert "\n" not in text and record.exc_info is None
    delays = [float(re.findall(r"retrying in ([\d.]+) s", r.getMessage())[0]) for r in failed]
    assert delays == sorted(delays) and delays[-1] > delays[0]
    tracebacks = [r for r in caplog.records if r.levelno == logging.DEBUG and r.exc_info]
    assert len(tracebacks) == len(failed)
    back = [r for r in caplog.records if "again after" in r.getMessage()]
    assert [(r.levelno, r.getMessage()) for r in back] == [
        (
            logging.INFO,
            f"Abort watcher reached its backend again after {len(failed)} failed attempt(s).",
        )
    ]


@pytest.mark.parametrize("boot_timeout", [-1, float("nan"), "2"])
def test_a_bad_boot_timeout_is_refused(boot_timeout: object) -> None:
    with pytest.raises((TypeError, ValueError), match="boot_timeout"):
        Abortable(backend=StubBackend(), boot_timeout=boot_timeout)  # type: ignore[arg-type]


class FlakyPolls(EventBackend):
    """A backend that can only be polled, as in dramatiq-abort 1.x, and
    fails its first polls."""

    def __init__(self, failures: int) -> None:
        self.store = StubBackend()
        self.failures_left = failures

    def notify(self, events: Iterable[Event], ttl: int) -> None:
        self.store.notify(events, ttl)

    def poll(self, key: str) -> Event | None:
        return self.store.poll(key)

    def wait_many(self, keys: Iterable[str], timeout: int) -> Event | None:
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionError("the backend is down for this test")
        return self.store.wait_many(keys, timeout)


def test_a_polled_backend_that_fails_logs_one_line_per_attempt_then_one_when_back(
    stub_broker: StubBroker, caplog: pytest.LogCaptureFixture
) -> None:
    backend = FlakyPolls(failures=2)
    middleware = Abortable(backend=backend)
    started, interrupted = threading.Event(), threading.Event()

    @dramatiq.actor(max_retries=0)
    def crunch() -> None:
        spin_until_aborted(started.set, interrupted.set)

    caplog.set_level(logging.DEBUG, logger=middleware.logger.name)
    worker = start_worker(stub_broker, middleware)
    try:
        message = crunch.send()
        assert started.wait(WAIT)
        abort(message, middleware=middleware)
        assert interrupted.wait(WAIT)
    finally:
        worker.stop()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage().split(";")[0] for r in warnings] == [
        f"Abort watcher cannot poll its backend (attempt {n}, ConnectionError: the backend is"
        " down for this test)"
        for n in (1, 2)
    ]
    assert all(r.exc_info is None for r in warnings)
    assert [r.getMessage() for r in caplog.records if "again after" in r.getMessage()] == [
        "Abort watcher polled its backend again after 2 failed attempt(s)."
    ]
