"""An abort racing dramatiq's TimeLimit or a worker shutdown on one message:
only one of them raises in it."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware.shutdown import Shutdown
from dramatiq.middleware.time_limit import TimeLimit, TimeLimitExceeded
from dramatiq.results import ResultFailure

from dramatiq_abort import Abort, Abortable, abort
from dramatiq_abort.backends import StubBackend

from ..support import WAIT, start_worker, wait_until

pytestmark = pytest.mark.timeout(60)

#: The actors' time limit, in seconds. Long enough for a message to reach
#: its actor's body before it fires on a loaded machine: an async actor's
#: coroutine first waits for its turn on the event loop, and a limit fired
#: before that never reaches the coroutine at all.
LIMIT = 1.0


@pytest.fixture
def fast_time_limit(stub_broker: StubBroker) -> Iterator[None]:
    """dramatiq's TimeLimit, checking every 10 ms instead of every second."""
    index = next(i for i, m in enumerate(stub_broker.middleware) if isinstance(m, TimeLimit))
    stub_broker.middleware[index] = TimeLimit(interval=10)
    stub_broker.middleware[index].after_process_boot(stub_broker)
    yield


def spin(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


def failure_type(message: dramatiq.Message[None]) -> str:
    with pytest.raises(ResultFailure) as info:
        message.get_result(block=True, timeout=int(WAIT * 1000))
    return str(info.value.orig_exc_type)


def abort_and_wait_for_the_refusal(
    message: dramatiq.Message[None], caplog: pytest.LogCaptureFixture
) -> None:
    """Abort ``message``, then wait until the watcher has decided not to
    raise the abort, which it logs."""
    with caplog.at_level(logging.INFO, logger="dramatiq_abort"):
        abort(message.message_id)
        wait_until(
            lambda: any("Not aborting message" in r.message for r in caplog.records),
            "the watcher decides not to raise the abort",
        )


def assert_an_abort_spares_the_cleanup(
    message: dramatiq.Message[Any],
    cleaning: threading.Event,
    proceed: threading.Event,
    raised_in_cleanup: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Abort ``message`` once its time limit fired and its cleanup runs:
    the abort is refused, and the message fails with its time limit only."""
    assert cleaning.wait(WAIT)
    abort_and_wait_for_the_refusal(message, caplog)
    proceed.set()
    assert failure_type(message) == "TimeLimitExceeded"
    assert raised_in_cleanup == []


def test_an_abort_after_the_time_limit_fired_is_not_raised_into_the_cleanup(
    fast_time_limit: None,
    stub_broker: StubBroker,
    worker: dramatiq.Worker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cleaning, proceed = threading.Event(), threading.Event()
    raised_in_cleanup: list[str] = []

    @dramatiq.actor(time_limit=int(LIMIT * 1000), max_retries=0, store_results=True)
    def slow() -> None:
        try:
            spin(WAIT)
        except TimeLimitExceeded:
            cleaning.set()
            try:
                while not proceed.is_set():
                    pass
            except Abort:
                raised_in_cleanup.append("Abort")
            raise

    assert_an_abort_spares_the_cleanup(slow.send(), cleaning, proceed, raised_in_cleanup, caplog)


@pytest.mark.slow
def test_a_time_limit_reached_after_an_abort_does_not_raise_into_the_cleanup(
    fast_time_limit: None, stub_broker: StubBroker, worker: dramatiq.Worker
) -> None:
    started = threading.Event()
    raised_in_cleanup: list[str] = []

    @dramatiq.actor(time_limit=int(LIMIT * 1000), max_retries=0, store_results=True)
    def slow() -> None:
        try:
            started.set()
            spin(WAIT)
        except Abort:
            try:
                spin(LIMIT + 0.5)  # well past the time limit
            except TimeLimitExceeded:
                raised_in_cleanup.append("TimeLimitExceeded")
            raise

    message = slow.send()
    assert started.wait(WAIT)
    abort(message.message_id)
    assert failure_type(message) == "MessageAborted"
    assert raised_in_cleanup == []


def test_a_shutdown_after_an_abort_does_not_raise_into_the_cleanup(
    stub_broker: StubBroker, abortable: Abortable
) -> None:
    started, cleaning, notified = threading.Event(), threading.Event(), threading.Event()
    raised_in_cleanup: list[str] = []

    class Notified(dramatiq.Middleware):
        # Added after ShutdownNotifications: it runs once Shutdown was raised.
        def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
            notified.set()

    stub_broker.add_middleware(Notified())

    @dramatiq.actor(notify_shutdown=True, max_retries=0, store_results=True)
    def slow() -> None:
        try:
            started.set()
            spin(WAIT)
        except Abort:
            cleaning.set()
            try:
                deadline = time.monotonic() + WAIT
                while not notified.is_set() and time.monotonic() < deadline:
                    pass
                spin(0.05)  # bytecode for a Shutdown set in this thread to land in
            except Shutdown:
                raised_in_cleanup.append("Shutdown")
            raise

    worker = dramatiq.Worker(stub_broker, worker_timeout=100, worker_threads=2)
    worker.start()
    try:
        message = slow.send()
        assert started.wait(WAIT)
        abort(message.message_id)
        assert cleaning.wait(WAIT)
    finally:
        worker.stop()
    assert notified.is_set()
    assert failure_type(message) == "MessageAborted"
    assert raised_in_cleanup == []


def test_an_async_actor_whose_time_limit_fired_is_not_aborted_in_its_cleanup(
    fast_time_limit: None,
    stub_broker: StubBroker,
    async_worker: dramatiq.Worker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cleaning, proceed = threading.Event(), threading.Event()
    raised_in_cleanup: list[str] = []

    @dramatiq.actor(time_limit=int(LIMIT * 1000), max_retries=0, store_results=True)
    async def slow() -> None:
        try:
            await asyncio.sleep(WAIT)
        except asyncio.CancelledError:  # how the time limit reaches a coroutine
            cleaning.set()
            try:
                # Short: dramatiq waits 1 s for a cancelled coroutine to end.
                while not proceed.is_set():
                    await asyncio.sleep(0.001)
            except Abort:
                raised_in_cleanup.append("Abort")
            raise

    assert_an_abort_spares_the_cleanup(slow.send(), cleaning, proceed, raised_in_cleanup, caplog)


@pytest.mark.slow
def test_a_time_limit_reached_after_an_abort_does_not_cancel_an_async_cleanup(
    fast_time_limit: None, stub_broker: StubBroker, async_worker: dramatiq.Worker
) -> None:
    started = threading.Event()
    raised_in_cleanup: list[str] = []

    @dramatiq.actor(time_limit=int(LIMIT * 1000), max_retries=0, store_results=True)
    async def slow() -> None:
        try:
            started.set()
            await asyncio.sleep(WAIT)
        except Abort:
            try:
                await asyncio.sleep(LIMIT + 0.5)  # well past the time limit
            except asyncio.CancelledError:
                raised_in_cleanup.append("CancelledError")
            raise

    message = slow.send()
    assert started.wait(WAIT)
    abort(message.message_id)
    assert failure_type(message) == "MessageAborted"
    assert raised_in_cleanup == []


def test_a_worker_warns_once_at_boot_naming_what_of_dramatiq_is_not_as_expected(
    stub_broker: StubBroker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    time_limit = next(m for m in stub_broker.middleware if isinstance(m, TimeLimit))
    monkeypatch.setattr(time_limit, "manager", object())
    middleware = Abortable(backend=StubBackend())
    with caplog.at_level(logging.WARNING, logger="dramatiq_abort"):
        worker = start_worker(stub_broker, middleware)
        worker.stop()
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("dramatiq_abort")]
    assert len(warnings) == 1
    assert "TimeLimit.manager has neither 'deadlines' and 'mu' nor 'timers'" in warnings[0]
    # Degraded, not broken: an abort goes ahead as it did before the check.
    assert middleware.internals.claim_thread(threading.get_ident())
