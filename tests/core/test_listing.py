"""Listing what runs: ``Abortable.running_messages`` asked in the worker's
own process, over each backend, and its checks of bad input."""

from __future__ import annotations

import datetime
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.stub import StubBroker

from dramatiq_abort import (
    Abortable,
    AbortMode,
    EventBackend,
    Listing,
    Outcome,
    abort,
    running_messages,
)
from dramatiq_abort.backends import StubBackend
from dramatiq_abort.listing import ARGS_LENGTH, DELAYED, RUNNING, WAITING

from ..support import WAIT, connected_watcher, start_worker, wait_until

pytestmark = pytest.mark.timeout(60)

#: Long enough for a worker in this process to answer, short enough that a
#: wait for one that never answers keeps the test quick.
LISTING_WAIT = 2.0


class Holding:
    """Actors whose messages run until the test releases them."""

    def __init__(self, broker: StubBroker) -> None:
        self.release = threading.Event()
        self.started: list[object] = []

        def hold(*args: Any, **kwargs: Any) -> None:
            self.started.append(args)
            self.release.wait(WAIT)

        self.export = dramatiq.actor(actor_name="export", queue_name="nightly")(hold)
        self.rebuild = dramatiq.actor(actor_name="rebuild_index", queue_name="default")(hold)

    def wait_started(self, count: int) -> None:
        wait_until(lambda: len(self.started) >= count, f"{count} message(s) started")


@pytest.fixture
def holding(stub_broker: StubBroker, worker: dramatiq.Worker) -> Iterator[Holding]:
    held = Holding(stub_broker)
    try:
        yield held
    finally:
        held.release.set()


def test_a_listing_says_what_runs_who_runs_it_and_since_when(
    stub_broker: StubBroker, holding: Holding
) -> None:
    before = time.time()
    export = holding.export.send("2024-01")
    rebuild = holding.rebuild.send()
    holding.wait_started(2)
    after = time.time()

    listed = running_messages(timeout=LISTING_WAIT)

    assert (listed.answered, listed.expected) == (1, 1)
    assert listed.complete
    by_id = {message.message_id: message for message in listed.messages}
    assert set(by_id) == {export.message_id, rebuild.message_id}
    shown = by_id[export.message_id]
    assert (shown.actor, shown.queue) == ("export", "nightly")
    assert by_id[rebuild.message_id].actor == "rebuild_index"
    assert shown.started_at is not None and before <= shown.started_at <= after
    assert shown.sent_at == export.message_timestamp / 1000
    assert (shown.host, shown.pid) == (socket.gethostname(), os.getpid())
    assert (shown.abort_requested, shown.grace_left) == (False, None)
    # Arguments only when asked.
    assert shown.args is None


def test_a_listing_keeps_only_the_messages_its_filters_match(
    stub_broker: StubBroker, holding: Holding
) -> None:
    first = holding.export.send("first")
    holding.wait_started(1)
    # Timestamps are milliseconds: the second is sent strictly later.
    wait_until(lambda: time.time() * 1000 > first.message_timestamp + 1, "a millisecond passes")
    second = holding.export.send("second")
    rebuild = holding.rebuild.send()
    holding.wait_started(3)

    def ids(**filters: Any) -> set[str]:
        listed = running_messages(timeout=LISTING_WAIT, **filters)
        assert listed.answered == 1
        return {message.message_id for message in listed.messages}

    assert ids(actor="export") == {first.message_id, second.message_id}
    assert ids(queue="default") == ids(queue="default.DQ") == {rebuild.message_id}
    assert ids(actor="export", queue="default") == set()
    assert ids(actor="no_such_actor") == set()
    assert ids(actor="export", sent_before=second.message_timestamp / 1000) == {first.message_id}
    as_datetime = datetime.datetime.fromtimestamp(
        second.message_timestamp / 1000, datetime.timezone.utc
    )
    assert ids(sent_before=as_datetime) == {first.message_id}


def test_arguments_are_listed_only_when_asked_and_shortened(
    stub_broker: StubBroker, holding: Holding
) -> None:
    short = holding.export.send(7, month="2024-01")
    long = holding.export.send("x" * 10_000, list(range(1000)))
    holding.wait_started(2)

    listed = running_messages(args=True, timeout=LISTING_WAIT)

    by_id = {message.message_id: message.args for message in listed.messages}
    assert by_id[short.message_id] == "7, month='2024-01'"
    shortened = by_id[long.message_id]
    assert shortened is not None and len(shortened) <= ARGS_LENGTH
    assert shortened.startswith("'xxx")
    assert all(message.args is None for message in running_messages(timeout=1).messages)


def test_a_grace_in_force_shows_with_the_time_it_has_left(
    stub_broker: StubBroker, holding: Holding
) -> None:
    graced = holding.export.send()
    asked = holding.export.send()
    left_alone = holding.export.send()
    holding.wait_started(3)
    abort(graced.message_id, abort_timeout=60_000, reason="bad deploy")
    abort(asked.message_id, abort_timeout=math.inf)

    listed = running_messages(timeout=LISTING_WAIT)

    by_id = {message.message_id: message for message in listed.messages}
    assert by_id[graced.message_id].abort_requested
    grace_left = by_id[graced.message_id].grace_left
    assert grace_left is not None and 0 < grace_left <= 60_000
    assert by_id[graced.message_id].reason == "bad deploy"
    assert by_id[asked.message_id].abort_requested
    assert by_id[asked.message_id].grace_left == math.inf
    assert by_id[asked.message_id].reason is None
    assert not by_id[left_alone.message_id].abort_requested
    # A cancel does not stop a running message: not an abort in force.
    abort(left_alone.message_id, mode=AbortMode.CANCEL)
    again = running_messages(timeout=LISTING_WAIT)
    assert not {m.message_id: m for m in again.messages}[left_alone.message_id].abort_requested


def test_a_listing_shows_the_messages_a_worker_holds_for_a_thread_or_for_their_eta(
    stub_broker: StubBroker, abortable: Abortable, holding: Holding
) -> None:
    # The worker has 4 threads and prefetches more messages than that.
    running = [holding.export.send(number) for number in range(4)]
    holding.wait_started(4)
    waiting = holding.export.send("waiting")
    delayed = holding.rebuild.send_with_options(args=("later",), delay=60_000)
    wait_until(
        lambda: all(stub_broker.queues[name].qsize() == 0 for name in ("nightly", "default.DQ")),
        "the worker fetches the waiting and the delayed message",
    )

    listed = abortable.running_messages(timeout=LISTING_WAIT)

    # The running ones first, in the order their threads began them, which
    # four threads need not keep; then the held ones.
    listed_ids = [message.message_id for message in listed.messages]
    assert sorted(listed_ids[:4]) == sorted(message.message_id for message in running)
    assert listed_ids[4:] == [waiting.message_id, delayed.message_id]
    starts = [message.started_at or 0.0 for message in listed.messages[:4]]
    assert starts == sorted(starts)
    states = [(message.state, message.started_at is None) for message in listed.messages]
    assert states == [(RUNNING, False)] * 4 + [(WAITING, True), (DELAYED, True)]
    shown = listed.messages[-1]
    assert (shown.queue, shown.eta) == ("default", delayed.options["eta"] / 1000)
    only_delayed = abortable.running_messages(actor="rebuild_index", timeout=LISTING_WAIT)
    assert [message.message_id for message in only_delayed.messages] == [delayed.message_id]

    # What is listed can be stopped: a held message is cancelled as it starts.
    abortable.abort(waiting.message_id, reason="listed")
    holding.release.set()
    assert abortable.wait_outcome(waiting.message_id, WAIT) is Outcome.CANCELLED
    assert len(holding.started) == 4
    assert set(holding.started) == {(number,) for number in range(4)}


def test_a_listing_leaves_out_held_messages_of_actors_that_are_not_abortable(
    stub_broker: StubBroker, abortable: Abortable, holding: Holding
) -> None:
    kept = dramatiq.actor(actor_name="kept", abortable=False)(lambda: None)
    for number in range(4):
        holding.export.send(number)
    holding.wait_started(4)
    kept.send()
    waiting = holding.export.send("waiting")
    wait_until(
        lambda: all(stub_broker.queues[name].qsize() == 0 for name in ("nightly", "default")),
        "the worker fetches both messages",
    )
    listed = abortable.running_messages(timeout=LISTING_WAIT)
    assert [m.message_id for m in listed.messages if m.state == WAITING] == [waiting.message_id]


@pytest.mark.slow
def test_a_process_that_does_not_answer_is_not_counted_as_running_nothing(
    abortable: Abortable, holding: Holding
) -> None:
    # A subscription nobody reads: a worker process that is stuck.
    silent = abortable.backend.subscribe()
    try:
        holding.export.send()
        holding.wait_started(1)
        listed = abortable.running_messages(timeout=LISTING_WAIT)
    finally:
        silent.close()
    assert (listed.answered, listed.expected) == (1, 2)
    assert not listed.complete
    assert len(listed.messages) == 1


def test_a_listing_with_no_worker_says_none_answered(stub_broker: StubBroker) -> None:
    middleware = Abortable(backend=StubBackend())
    stub_broker.add_middleware(middleware)
    assert middleware.running_messages(timeout=0.05) == Listing([], 0, 0)


def test_a_failing_answer_is_one_warning_and_the_watcher_keeps_working(
    stub_broker: StubBroker,
    holding: Holding,
    abortable: Abortable,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fail(reply_to: str, payload: str, ttl: int) -> None:
        raise ConnectionError("backend down")

    held = holding.export.send()
    holding.wait_started(1)
    with caplog.at_level(logging.DEBUG, logger="dramatiq_abort"):
        monkeypatch.setattr(abortable.backend, "answer", fail)
        listed = abortable.running_messages(timeout=0.3)
        monkeypatch.undo()
        assert (listed.answered, listed.messages) == (0, [])
        assert [m.message_id for m in abortable.running_messages(timeout=5).messages] == [
            held.message_id
        ]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "could not answer inquiry" in warnings[0].getMessage()
    assert "ConnectionError: backend down" in warnings[0].getMessage()
    assert warnings[0].exc_info is None
    assert any(r.levelno == logging.DEBUG and r.exc_info for r in caplog.records)


def test_a_watcher_answers_with_receiving_down_so_that_starting_messages_do_not_wait(
    holding: Holding, abortable: Abortable, monkeypatch: pytest.MonkeyPatch
) -> None:
    watcher = connected_watcher(abortable)
    receiving_while_answering = []
    answer = abortable.backend.answer

    def noting(reply_to: str, payload: str, ttl: int) -> None:
        receiving_while_answering.append(watcher.receiving)
        answer(reply_to, payload, ttl)

    monkeypatch.setattr(abortable.backend, "answer", noting)
    assert abortable.running_messages(timeout=5).answered == 1
    assert receiving_while_answering == [False]


def test_the_answers_of_a_listing_leave_no_key_in_redis(
    redis_url: str, redis_client: redis.Redis, namespace: str
) -> None:
    from dramatiq_abort.backends import RedisBackend

    backend = RedisBackend(client=redis_client, namespace=namespace)
    # An answer more than the asker waits for (a worker that answered late)
    # stays in the reply key: collecting deletes it all the same.
    for payload in ("first", "late"):
        backend.answer("reply-1", payload, 60_000)
    assert backend.collect_answers("reply-1", 1, WAIT) == ["first"]
    assert list(redis_client.scan_iter(match=f"{namespace}*answers*")) == []

    broker = StubBroker()
    try:
        middleware = Abortable(backend=backend)
        worker = start_worker(broker, middleware)
        try:
            listed = middleware.running_messages(timeout=LISTING_WAIT)
        finally:
            worker.stop()
    finally:
        broker.close()
    assert (listed.answered, listed.expected) == (1, 1)
    assert list(redis_client.scan_iter(match=f"{namespace}*answers*")) == []


@pytest.mark.parametrize(
    ("filters", "error", "says"),
    [
        ({"actor": ""}, ValueError, "actor must not be empty"),
        ({"actor": "x" * 256}, ValueError, "actor must be at most 255 characters"),
        ({"queue": 3}, TypeError, "queue must be a str or None, not 3"),
        ({"sent_before": "yesterday"}, TypeError, "sent_before must be a datetime or seconds"),
        ({"sent_before": math.nan}, ValueError, "sent_before must be a finite number of seconds"),
        ({"args": "yes"}, TypeError, "args must be True or False"),
        ({"timeout": 0}, ValueError, "timeout must be greater than 0"),
        ({"timeout": math.inf}, ValueError, "timeout must be finite"),
        ({"timeout": -1}, ValueError, "timeout must be finite and 0 or more, not -1"),
    ],
)
def test_a_bad_filter_is_refused_before_anything_is_sent(
    filters: dict[str, Any], error: type[Exception], says: str
) -> None:
    backend = StubBackend()
    subscription = backend.subscribe()
    try:
        with pytest.raises(error, match=says):
            Abortable(backend=backend).running_messages(**filters)
        assert subscription.receive() == [] and backend.recorded() == []
    finally:
        subscription.close()


def test_a_backend_that_cannot_carry_answers_is_refused_at_once() -> None:
    class PollOnly(EventBackend):
        def notify(self, events: Any, ttl: int) -> None:
            raise AssertionError("nothing may be sent")

        def poll(self, key: str) -> None:
            return None

        def wait_many(self, keys: Any, timeout: int) -> None:
            return None

    with pytest.raises(NotImplementedError, match="PollOnly cannot ask workers what they run"):
        Abortable(backend=PollOnly()).running_messages()


def test_answers_name_the_actors_a_worker_declares_only_when_the_inquiry_asks(
    stub_broker: StubBroker, abortable: Abortable, worker: dramatiq.Worker
) -> None:
    from dramatiq_abort.listing import ask, check_inquiry

    # Declared after the worker booted: named all the same.
    @dramatiq.actor(broker=stub_broker)
    def export() -> None:
        pass

    backend = abortable.backend
    asked = ask(backend, check_inquiry(None, None, None, False, actors=True), WAIT)
    assert (asked.answered, asked.actors) == (1, frozenset({"export"}))
    # A listing that does not ask carries no names: its answers stay small.
    plain = ask(backend, check_inquiry(None, None, None, False), WAIT)
    assert (plain.answered, plain.actors) == (1, None)
