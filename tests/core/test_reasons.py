"""Reasons: the words given to ``abort(..., reason=...)`` reach the worker's
log line, the actor's Abort, the stored result and the recorded outcome."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.results import ResultFailure

from dramatiq_abort import (
    Abort,
    Abortable,
    AbortMode,
    EventBackend,
    Outcome,
    abort,
    abort_many,
)
from dramatiq_abort.checks import MAX_REASON_LENGTH
from dramatiq_abort.errors import AsyncAbort

from ..support import WAIT, recorded

pytestmark = pytest.mark.timeout(60)

ABORTABLE_LOGGER = "dramatiq_abort.middleware.Abortable"


def lines_about(caplog: pytest.LogCaptureFixture, message_id: str) -> list[tuple[int, str]]:
    """The level and text of every record that names ``message_id``."""
    return [
        (record.levelno, record.getMessage())
        for record in caplog.records
        if message_id in record.getMessage()
    ]


def test_a_reason_reaches_the_log_line_the_abort_the_result_and_the_outcome(
    stub_broker: StubBroker,
    abortable: Abortable,
    worker: dramatiq.Worker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = threading.Event()
    caught: list[Abort] = []

    @dramatiq.actor(max_retries=0, store_results=True)
    def crunch() -> None:
        started.set()
        try:
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                pass
        except Abort as e:
            caught.append(e)
            raise

    caplog.set_level(logging.INFO, logger="dramatiq_abort")
    message = crunch.send()
    assert started.wait(WAIT)
    abort(message, reason="  deploy 42 broke the export\n")

    assert abortable.wait_outcome(message, WAIT) is Outcome.ABORTED
    assert abortable.outcome_reason(message) == "deploy 42 broke the export"
    (abort_raised,) = caught
    assert abort_raised.reason == "deploy 42 broke the export"
    assert str(abort_raised) == (
        f"message {message.message_id!r} was aborted: deploy 42 broke the export"
    )
    with pytest.raises(ResultFailure) as failure:
        message.get_result(block=True, timeout=int(WAIT * 1000))
    assert failure.value.orig_exc_type == "MessageAborted"
    assert str(failure.value).endswith("was aborted: deploy 42 broke the export")
    assert lines_about(caplog, message.message_id) == [
        (
            logging.INFO,
            f"Message {message.message_id!r} was aborted (reason: 'deploy 42 broke the export').",
        )
    ]


def test_a_cancelled_message_logs_its_reason_on_one_line_and_one_without_logs_as_before(
    stub_broker: StubBroker,
    abortable: Abortable,
    worker: dramatiq.Worker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    @dramatiq.actor(max_retries=0)
    def job() -> None:
        pass

    caplog.set_level(logging.INFO, logger="dramatiq_abort")
    explained, silent = job.message(), job.message()
    abort_many([explained], mode=AbortMode.CANCEL, reason="two lines\nof reason")
    abort(silent, mode=AbortMode.CANCEL)
    stub_broker.enqueue(explained)
    stub_broker.enqueue(silent)
    stub_broker.join(job.queue_name)
    worker.join()

    assert lines_about(caplog, explained.message_id) == [
        (
            logging.INFO,
            f"Message {explained.message_id!r} was cancelled (reason: 'two lines\\nof reason').",
        )
    ]
    assert lines_about(caplog, silent.message_id) == [
        (logging.INFO, f"Message {silent.message_id!r} was cancelled.")
    ]
    assert abortable.outcome_reason(explained) == "two lines\nof reason"
    assert abortable.outcome_reason(silent) is None


def test_an_async_actor_sees_the_reason_on_its_abort(
    stub_broker: StubBroker, abortable: Abortable, async_worker: dramatiq.Worker
) -> None:
    started = threading.Event()
    caught: list[BaseException] = []

    @dramatiq.actor(max_retries=0)
    async def waits() -> None:
        started.set()
        try:
            await asyncio.sleep(WAIT)
        except AsyncAbort as e:
            caught.append(e)
            raise

    message = waits.send()
    assert started.wait(WAIT)
    abort(message, reason="stuck on a lock")
    assert abortable.wait_outcome(message, WAIT) is Outcome.ABORTED
    (raised,) = caught
    assert isinstance(raised, Abort) and raised.reason == "stuck on a lock"


@pytest.mark.parametrize(
    ("reason", "error", "says"),
    [
        ("", ValueError, "reason must not be empty"),
        (" \t\n", ValueError, "reason must not be empty"),
        ("x" * (MAX_REASON_LENGTH + 1), ValueError, "at most 1,000 characters, not 1,001"),
        (42, TypeError, "reason must be a str or None, not 42"),
    ],
)
def test_a_bad_reason_is_refused_and_nothing_is_sent(
    abortable: Abortable, reason: Any, error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says):
        abort("an-id", reason=reason)
    with pytest.raises(error, match=says):
        abortable.abort_many(["an-id", "another"], reason=reason)
    assert recorded(abortable.backend) == []


def test_an_outcome_recorded_without_a_reason_drops_the_earlier_reason(
    event_backend: EventBackend,
) -> None:
    event_backend.record_outcome("m", Outcome.ABORTED.value, 60_000, reason="first")
    assert event_backend.outcome_reason("m") == "first"
    event_backend.record_outcome("m", Outcome.FINISHED.value, 60_000)
    assert event_backend.outcome_reason("m") is None
    # The outcome itself reads as it always did.
    assert event_backend.wait_outcome("m", 0) == Outcome.FINISHED.value
    event_backend.forget("m")
