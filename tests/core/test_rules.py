"""Rules (``abort_where``): stopping messages by actor, queue and the time
they were sent, on the in-memory backend and on Redis."""

from __future__ import annotations

import datetime
import logging
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.stub import StubBroker

from dramatiq_abort import Abort, Abortable, AbortMode, Event, Outcome, abort_where
from dramatiq_abort.backend import TimedEvent
from dramatiq_abort.backends import RedisBackend, StubBackend
from dramatiq_abort.wire import rule_event
from dramatiq_abort.worker.requests import EXPIRY_GRACE
from dramatiq_abort.worker.rules import AbortRules

from ..support import (
    QUEUED_FOR,
    WAIT,
    PrivateRedis,
    connected_watcher,
    recorded,
    spin_until_aborted,
    start_worker,
    wait_until,
    wait_until_cut_off,
)

pytestmark = pytest.mark.timeout(60)


def after_the_clock_ticks(*messages: dramatiq.Message[Any]) -> None:
    """Wait until the clock is past the millisecond in which ``messages``
    were sent, so that what comes next is stamped later."""
    latest = max(message.message_timestamp for message in messages)
    wait_until(lambda: time.time() * 1000 > latest + 1, "the clock ticks")


@pytest.fixture
def booted(stub_broker: StubBroker, abortable: Abortable) -> Iterator[dramatiq.Worker]:
    """A worker that the test starts when it wants, stopped after it."""
    worker = dramatiq.Worker(stub_broker, worker_timeout=100, worker_threads=4)
    yield worker
    worker.stop()


def test_a_rule_recorded_before_a_worker_boots_cancels_queued_and_delayed_messages_sent_before_it(
    stub_broker: StubBroker, abortable: Abortable, booted: dramatiq.Worker
) -> None:
    ran: list[str] = []

    @dramatiq.actor(max_retries=0)
    def job(name: str) -> None:
        ran.append(name)

    @dramatiq.actor(max_retries=0)
    def other(name: str) -> None:
        ran.append(name)

    queued = job.send("queued")
    delayed = job.send_with_options(args=("delayed",), delay=200)
    other.send("of another actor")
    after_the_clock_ticks(queued, delayed)
    abort_where(actor="job", reason="bad deploy")
    job.send("sent after the rule")

    # Its watcher learns the rule by catching up as it boots.
    booted.start()
    stub_broker.join(job.queue_name)
    booted.join()

    assert sorted(ran) == ["of another actor", "sent after the rule"]
    for message in (queued, delayed):
        assert abortable.wait_outcome(message, WAIT) is Outcome.CANCELLED
        assert abortable.outcome_reason(message) == "bad deploy"


def test_a_rule_never_cancels_a_message_sent_after_its_sent_before(
    stub_broker: StubBroker, abortable: Abortable, worker: dramatiq.Worker
) -> None:
    ran: list[str] = []

    @dramatiq.actor(max_retries=0)
    def job(name: str) -> None:
        ran.append(name)

    early = job.send_with_options(args=("early",), delay=QUEUED_FOR)
    after_the_clock_ticks(early)
    # Naive: local time, as datetime.timestamp() reads it.
    moment = datetime.datetime.now()
    wait_until(lambda: time.time() > moment.timestamp() + 0.002, "the clock ticks")
    late = job.send_with_options(args=("late",), delay=300)
    abort_where(actor="job", sent_before=moment)

    stub_broker.join(job.queue_name)
    worker.join()
    assert ran == ["late"]
    assert abortable.outcome(early) is Outcome.CANCELLED
    assert abortable.outcome(late) is None


def test_a_rule_on_a_queue_cancels_its_messages_and_none_of_another_queue(
    stub_broker: StubBroker, abortable: Abortable, booted: dramatiq.Worker
) -> None:
    ran: list[str] = []

    @dramatiq.actor(max_retries=0, queue_name="rules-first")
    def first(name: str) -> None:
        ran.append(name)

    @dramatiq.actor(max_retries=0, queue_name="rules-second")
    def second(name: str) -> None:
        ran.append(name)

    sent = [
        first.send("first"),
        first.send_with_options(args=("first, delayed",), delay=100),
        second.send("second"),
        second.send_with_options(args=("second, delayed",), delay=100),
    ]
    after_the_clock_ticks(*sent)
    # The delay queue's name stands for its queue.
    abort_where(queue="rules-first.DQ")
    # Both given, both must match: second's messages are not on rules-first.
    abort_where(actor="second", queue="rules-first")

    booted.start()
    for queue_name in ("rules-first", "rules-second"):
        stub_broker.join(queue_name)
    booted.join()
    assert sorted(ran) == ["second", "second, delayed"]


def test_a_cancel_rule_does_not_withdraw_an_abort_whose_grace_is_running(
    stub_broker: StubBroker, abortable: Abortable, worker: dramatiq.Worker
) -> None:
    started = threading.Event()

    @dramatiq.actor(max_retries=0, store_results=True)
    def graced() -> None:
        started.set()
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            pass

    message = graced.send()
    assert started.wait(WAIT)
    abortable.abort(message, abort_timeout=300, reason="graced")
    abort_where(actor="graced", mode=AbortMode.CANCEL, reason="cancel rule")

    assert abortable.wait_outcome(message, WAIT) is Outcome.ABORTED
    assert abortable.outcome_reason(message) == "graced"


def test_a_rule_aborts_the_running_messages_it_matches_and_a_cancel_rule_leaves_them_running(
    stub_broker: StubBroker, abortable: Abortable, worker: dramatiq.Worker
) -> None:
    started = threading.Semaphore(0)
    caught: list[Abort] = []

    @dramatiq.actor(max_retries=0, store_results=True)
    def crunch(spin: bool) -> str:
        started.release()
        try:
            deadline = time.monotonic() + WAIT
            while spin and time.monotonic() < deadline:
                pass
        except Abort as e:
            caught.append(e)
            raise
        return "done"

    running = [crunch.send(True) for _ in range(2)]
    for _ in running:
        assert started.acquire(timeout=WAIT)
    abort_where(actor="crunch", mode=AbortMode.CANCEL, reason="first")
    abort_where(actor="crunch", reason="second")

    for message in running:
        assert abortable.wait_outcome(message, WAIT) is Outcome.ABORTED
        assert abortable.outcome_reason(message) == "second"
    # Had the cancel rule interrupted them, their Abort would say "first".
    assert sorted(e.reason or "" for e in caught) == ["second", "second"]
    assert all(str(e).endswith("was aborted: second") for e in caught)

    sent_after = crunch.send(False)
    assert sent_after.get_result(block=True, timeout=int(WAIT * 1000)) == "done"


def test_a_rule_gives_running_messages_their_grace(
    stub_broker: StubBroker, abortable: Abortable, worker: dramatiq.Worker
) -> None:
    told: list[float | None] = []

    @dramatiq.actor(max_retries=0)
    def polite() -> None:
        from dramatiq_abort import abort_requested

        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            left = abort_requested()
            if left is not None:
                told.append(left)
                return

    message = polite.send()
    wait_until(lambda: abortable.executions.running_ids(), "the message runs")
    abort_where(actor="polite", abort_timeout=60_000)
    assert abortable.wait_outcome(message, WAIT) is Outcome.STOPPED
    assert told and 0 < (told[0] or 0) <= 60_000


@pytest.mark.slow
def test_a_rule_expires_with_its_ttl(
    stub_broker: StubBroker, abortable: Abortable, worker: dramatiq.Worker
) -> None:
    ran: list[str] = []

    @dramatiq.actor(max_retries=0)
    def job(name: str) -> None:
        ran.append(name)

    # Due long after the rule is gone.
    delayed = job.send_with_options(args=("delayed",), delay=1500)
    after_the_clock_ticks(delayed)
    abort_where(actor="job", abort_ttl=300)
    assert abortable.rules.in_force
    wait_until(lambda: not abortable.rules.in_force, "the worker forgets the expired rule")
    assert not any(event.key.startswith("rule:") for event in recorded(abortable.backend))

    stub_broker.join(job.queue_name)
    worker.join()
    assert ran == ["delayed"]


@pytest.mark.parametrize(
    ("arguments", "error", "says"),
    [
        ({}, ValueError, "needs actor or queue"),
        ({"actor": ""}, ValueError, "actor must not be empty"),
        ({"queue": 7}, TypeError, "queue must be a str or None, not 7"),
        # A day ahead: these moments are taken when the tests are collected,
        # long before this one runs in a suite on a busy machine.
        ({"actor": "job", "sent_before": time.time() + 86_400}, ValueError, "in the future"),
        (
            {
                "actor": "job",
                "sent_before": datetime.datetime.now(datetime.timezone.utc)
                + datetime.timedelta(days=1),
            },
            ValueError,
            "must not be in the future",
        ),
        ({"actor": "job", "sent_before": "yesterday"}, TypeError, "datetime or seconds"),
        ({"actor": "job", "sent_before": math.nan}, ValueError, "finite"),
        ({"actor": "job", "reason": "  "}, ValueError, "reason must not be empty"),
        ({"actor": "job", "mode": "stop"}, ValueError, "unknown abort mode 'stop'"),
        ({"actor": "job", "abort_ttl": 0}, ValueError, "abort_ttl must be greater than 0"),
        ({"actor": "job", "abort_timeout": -1}, ValueError, "abort_timeout must be 0 or more"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_recorded(
    abortable: Abortable, arguments: dict[str, Any], error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says):
        abortable.abort_where(**arguments)
    assert recorded(abortable.backend) == []


def test_an_actor_no_declared_actor_has_is_recorded_with_a_warning(
    abortable: Abortable, caplog: pytest.LogCaptureFixture
) -> None:
    @dramatiq.actor
    def declared() -> None:
        pass

    with caplog.at_level(logging.WARNING, logger="dramatiq_abort"):
        rule_id = abortable.abort_where(actor="undeclared")
        abortable.abort_where(actor="declared")
    warned = [record.getMessage() for record in caplog.records]
    assert len(warned) == 1 and "'undeclared', which matches no actor declared" in warned[0]
    assert f"rule:{rule_id}" in {event.key for event in recorded(abortable.backend)}


def test_a_backend_that_does_not_push_refuses_rules_at_once() -> None:
    class Polled(StubBackend):
        pushes = False

    backend = Polled()
    with pytest.raises(NotImplementedError, match="does not push events"):
        Abortable(backend=backend).abort_where(actor="job")
    assert backend.recorded() == []


@pytest.mark.servers
def test_a_rule_recorded_while_the_watcher_is_cut_off_applies_once_it_reconnects(
    stub_broker: StubBroker, private_redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = RedisBackend.from_url(private_redis.url, namespace="rules-test:")
    middleware = Abortable(backend=backend)
    started, interrupted = threading.Event(), threading.Event()

    @dramatiq.actor(max_retries=0)
    def crunch() -> None:
        spin_until_aborted(started.set, interrupted.set)

    worker = start_worker(stub_broker, middleware)
    try:
        watcher = connected_watcher(middleware)
        # The watcher waits out its backoff until the rule is recorded: it
        # can only learn of the rule by catching up as it reconnects.
        backing_off, release = threading.Event(), threading.Event()

        def held(seconds: float) -> None:
            backing_off.set()
            release.wait(WAIT)

        monkeypatch.setattr(watcher, "_sleep", held)
        message = crunch.send()
        assert started.wait(WAIT)
        private_redis.stop()
        wait_until_cut_off(watcher)
        with pytest.raises(redis.ConnectionError):
            middleware.abort_where(actor="crunch")
        assert backing_off.wait(WAIT)

        private_redis.start()
        middleware.abort_where(actor="crunch", reason="after the restart")
        assert not interrupted.is_set()
        release.set()
        assert interrupted.wait(WAIT)
        assert middleware.wait_outcome(message, WAIT) is Outcome.ABORTED
        assert middleware.outcome_reason(message) == "after the restart"
        assert watcher.connected.wait(WAIT)
    finally:
        worker.stop()
        backend.client.close()


def test_the_table_finds_the_rule_in_force_that_a_message_was_sent_before() -> None:
    rules = AbortRules(logging.getLogger(__name__))

    def rule(rule_id: str, sent_before: int, ttl_left: int, **names: str | None) -> TimedEvent:
        params = {"actor": None, "queue": None, **names}
        event = rule_event(
            rule_id,
            actor=params["actor"],
            queue=params["queue"],
            sent_before=sent_before,
            mode=AbortMode.ABORT,
            abort_timeout=0,
            reason=rule_id,
        )
        return TimedEvent(event, ttl_left, 60_000)

    def match(timestamp: int, actor: str = "job", queue: str = "default") -> str | None:
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue, actor, (), {}, {}, message_timestamp=timestamp
        )
        rule = rules.match(message)
        return None if rule is None else rule.rule_id

    assert not rules.in_force
    events = [
        rule("latest, expired", 3000, 1, actor="job"),
        rule("older", 2000, 60_000, actor="job"),
        rule("on the queue", 1000, 60_000, queue="default"),
        *(rule(f"other {n}", 9000, 60_000, actor=f"other-{n}") for n in range(1000)),
        TimedEvent(Event("rule:malformed", {"actor": "job"}), 60_000, 60_000),
    ]
    # In force for the grace past its TTL: see EXPIRY_GRACE.
    expired_at = time.monotonic() + 0.001 + EXPIRY_GRACE
    assert len(rules.record(events, time.monotonic())) == 1003
    assert rules.in_force
    wait_until(lambda: time.monotonic() > expired_at, "the first rule expires")

    assert match(2500) is None  # Only the expired rule was sent after it.
    assert match(1500) == "older"
    assert match(500, actor="unrelated") == "on the queue"
    assert match(500, actor="unrelated", queue="default.DQ") == "on the queue"
    assert match(500, actor="unrelated", queue="elsewhere") is None
    assert len(rules) == 1003
    rules.forget_expired(time.monotonic())
    assert len(rules) == 1002
