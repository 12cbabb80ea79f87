"""Propagation: with ``abort_children``, an abort of a message reaches the
messages it enqueued, the later steps of its pipelines and the callbacks
of its groups, and theirs, wherever they run, and nothing else."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import GroupCallbacks
from dramatiq.rate_limits.backends import StubBackend as StubRateLimiterBackend

from dramatiq_abort import Abortable, AbortMode, EventBackend, Outcome, abort, abort_many
from dramatiq_abort.backends import StubBackend
from dramatiq_abort.errors import ActorOptionError, MessageOptionError
from dramatiq_abort.worker.lineage import ANCESTRY, MAX_DEPTH, ancestry_of, give_ancestry

from ..support import (
    QUEUED_FOR,
    WAIT,
    GatedBackend,
    PrivateRedis,
    connected_watcher,
    spin_until_aborted,
    start_worker,
    wait_until,
    wait_until_cut_off,
)

pytestmark = pytest.mark.timeout(60)

ABORTABLE_LOGGER = "dramatiq_abort.middleware.Abortable"


class Family:
    """What the actors of a test report: the ids of the messages each
    parent sent, and the names of the messages that ran to their end."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.children: dict[str, list[str]] = {}
        self.completed: list[str] = []

    def sent(self, parent_id: str, child: dramatiq.Message[Any]) -> None:
        with self.lock:
            self.children.setdefault(parent_id, []).append(child.message_id)

    def done(self, name: str) -> None:
        with self.lock:
            self.completed.append(name)


def current_id() -> str:
    """The id of the message the calling worker thread runs (with
    dramatiq's CurrentMessage middleware)."""
    message = dramatiq.middleware.CurrentMessage.get_current_message()
    assert message is not None
    return message.message_id


def wait_stopped(abortable: Abortable, message_id: str, outcome: Outcome) -> None:
    assert abortable.wait_outcome(message_id, WAIT) is outcome


def abort_once_ended(
    parent: dramatiq.Message[Any], child_started: threading.Event, **options: Any
) -> None:
    """Let ``parent`` run to its end, wait until the child it left starts,
    then abort ``parent`` with ``options``."""
    parent.get_result(block=True, timeout=int(WAIT * 1000))
    assert child_started.wait(WAIT)
    abort(parent, **options)


def test_an_abort_of_a_parent_stops_its_running_child_with_the_parents_reason(
    stub_broker: StubBroker,
    abortable: Abortable,
    worker: dramatiq.Worker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    child_started, child_interrupted = threading.Event(), threading.Event()
    sent: list[dramatiq.Message[Any]] = []

    @dramatiq.actor(max_retries=0)
    def child() -> None:
        spin_until_aborted(child_started.set, child_interrupted.set)

    @dramatiq.actor(abort_children=True, max_retries=0)
    def parent() -> None:
        sent.append(child.send())
        spin_until_aborted(lambda: None, lambda: None)

    caplog.set_level(logging.INFO, logger="dramatiq_abort")
    message = parent.send()
    assert child_started.wait(WAIT)
    abort(message, reason="the import was cancelled", abort_timeout=0)

    assert child_interrupted.wait(WAIT)
    (child_message,) = sent
    wait_stopped(abortable, child_message.message_id, Outcome.ABORTED)
    wait_stopped(abortable, message.message_id, Outcome.ABORTED)
    assert abortable.outcome_reason(child_message) == "the import was cancelled"
    lines = [
        record.getMessage()
        for record in caplog.records
        if record.name == ABORTABLE_LOGGER and child_message.message_id in record.getMessage()
    ]
    assert lines == [
        f"Message {child_message.message_id!r} was aborted with its ancestor"
        f" {message.message_id!r} (reason: 'the import was cancelled')."
    ]


def test_a_cancel_of_a_running_parent_cancels_its_queued_child_and_lets_the_parent_finish(
    stub_broker: StubBroker, abortable: Abortable, worker: dramatiq.Worker
) -> None:
    sent, finish = threading.Event(), threading.Event()
    ran: list[str] = []
    children: list[dramatiq.Message[Any]] = []

    @dramatiq.actor(store_results=True)
    def child() -> None:
        ran.append("child")

    @dramatiq.actor(abort_children=True, store_results=True)
    def parent() -> str:
        children.append(child.send_with_options(delay=QUEUED_FOR))
        sent.set()
        assert finish.wait(WAIT)
        return "parent finished"

    message = parent.send()
    assert sent.wait(WAIT)
    abort(message, mode=AbortMode.CANCEL, reason="not needed")
    finish.set()

    assert message.get_result(block=True, timeout=int(WAIT * 1000)) == "parent finished"
    (queued,) = children
    wait_stopped(abortable, queued.message_id, Outcome.CANCELLED)
    assert abortable.outcome_reason(queued) == "not needed"
    stub_broker.join(child.queue_name)
    worker.join()
    assert ran == []


def test_the_children_of_a_parent_that_already_finished_are_still_stopped(
    stub_broker: StubBroker, abortable: Abortable, worker: dramatiq.Worker
) -> None:
    ran: list[str] = []
    children: list[dramatiq.Message[Any]] = []

    @dramatiq.actor
    def child() -> None:
        ran.append("child")

    @dramatiq.actor(abort_children=True, store_results=True)
    def parent() -> str:
        children.append(child.send_with_options(delay=QUEUED_FOR))
        return "done"

    message = parent.send()
    assert message.get_result(block=True, timeout=int(WAIT * 1000)) == "done"
    abort(message)

    (queued,) = children
    wait_stopped(abortable, queued.message_id, Outcome.CANCELLED)
    stub_broker.join(child.queue_name)
    worker.join()
    assert ran == []


def test_an_abort_reaches_grandchildren_through_children_that_pass_it_on(
    stub_broker: StubBroker, abortable: Abortable, worker: dramatiq.Worker
) -> None:
    started, interrupted = threading.Event(), threading.Event()
    sent: list[dramatiq.Message[Any]] = []

    @dramatiq.actor(max_retries=0)
    def grandchild() -> None:
        spin_until_aborted(started.set, interrupted.set)

    @dramatiq.actor(abort_children=True)
    def child() -> None:
        sent.append(grandchild.send())

    @dramatiq.actor(abort_children=True, store_results=True)
    def parent() -> None:
        child.send()

    message = parent.send()
    abort_once_ended(message, started)

    assert interrupted.wait(WAIT)
    (grand,) = sent
    wait_stopped(abortable, grand.message_id, Outcome.ABORTED)
    assert grand.options[ANCESTRY][1] == message.message_id


def test_a_cancel_of_one_ancestor_never_weakens_the_abort_of_another(
    stub_broker: StubBroker, abortable: Abortable, worker: dramatiq.Worker
) -> None:
    started, interrupted = threading.Event(), threading.Event()
    sent: dict[str, dramatiq.Message[Any]] = {}

    @dramatiq.actor(max_retries=0)
    def grandchild() -> None:
        spin_until_aborted(started.set, interrupted.set)

    @dramatiq.actor(abort_children=True)
    def child() -> None:
        sent["grandchild"] = grandchild.send()

    @dramatiq.actor(abort_children=True)
    def parent() -> None:
        sent["child"] = child.send()

    message = parent.send()
    assert started.wait(WAIT)
    abort(message, abort_timeout=200, reason="abort the parent")
    abort(sent["child"], mode=AbortMode.CANCEL, reason="cancel the child")

    assert interrupted.wait(WAIT)
    wait_stopped(abortable, sent["grandchild"].message_id, Outcome.ABORTED)
    assert abortable.outcome_reason(sent["grandchild"]) == "abort the parent"


def test_an_abort_of_a_parent_stops_every_later_step_of_a_pipeline_it_started(
    stub_broker: StubBroker, abortable: Abortable, worker: dramatiq.Worker
) -> None:
    started, interrupted = threading.Event(), threading.Event()
    steps: list[str] = []
    step_ids: dict[str, str] = {}

    @dramatiq.actor(max_retries=0)
    def step(name: str, previous: object = None) -> str:
        step_ids[name] = current_id()
        steps.append(name)
        if name == "second":
            spin_until_aborted(started.set, interrupted.set)
        return name

    @dramatiq.actor(abort_children=True, store_results=True)
    def parent() -> None:
        dramatiq.pipeline(
            [step.message("first"), step.message("second"), step.message("third")]
        ).run()

    stub_broker.add_middleware(dramatiq.middleware.CurrentMessage())
    message = parent.send()
    # The second step runs after the first, enqueued by the worker that ran it.
    abort_once_ended(message, started)

    assert interrupted.wait(WAIT)
    wait_stopped(abortable, step_ids["second"], Outcome.ABORTED)
    stub_broker.join(step.queue_name)
    worker.join()
    assert steps == ["first", "second"]


def test_a_queued_step_of_a_pipeline_is_cancelled_when_its_turn_comes(
    stub_broker: StubBroker, abortable: Abortable, worker: dramatiq.Worker
) -> None:
    first_started, finish_first = threading.Event(), threading.Event()
    steps: list[str] = []
    pipelines: list[dramatiq.pipeline] = []

    @dramatiq.actor(pipe_ignore=True)
    def step(name: str) -> None:
        steps.append(name)
        if name == "first":
            first_started.set()
            assert finish_first.wait(WAIT)

    @dramatiq.actor(abort_children=True, store_results=True)
    def parent() -> None:
        pipe = dramatiq.pipeline([step.message("first"), step.message("second")])
        pipelines.append(pipe)
        pipe.run()

    message = parent.send()
    assert first_started.wait(WAIT)
    # A cancel: the running first step goes on, and enqueues the second one.
    abort(message, mode=AbortMode.CANCEL)
    finish_first.set()

    (pipe,) = pipelines
    wait_stopped(abortable, pipe.messages[1].message_id, Outcome.CANCELLED)
    stub_broker.join(step.queue_name)
    worker.join()
    assert steps == ["first"]
    # The pipeline object itself is left as it was: it may be run again
    # elsewhere, outside any parent.
    assert ANCESTRY not in pipe.messages[1].options


def test_an_abort_of_a_parent_stops_the_messages_of_a_group_it_ran(
    stub_broker: StubBroker, abortable: Abortable, worker: dramatiq.Worker
) -> None:
    started = threading.Semaphore(0)
    interrupted: list[int] = []
    groups: list[dramatiq.group] = []

    @dramatiq.actor(max_retries=0)
    def member(number: int) -> None:
        spin_until_aborted(started.release, lambda: interrupted.append(number))

    @dramatiq.actor(abort_children=True, store_results=True)
    def parent() -> None:
        groups.append(dramatiq.group([member.message(1), member.message(2)]).run())

    message = parent.send()
    message.get_result(block=True, timeout=int(WAIT * 1000))
    for _ in range(2):
        assert started.acquire(timeout=WAIT)
    abort(message)

    (tasks,) = groups
    for child in tasks.children:
        wait_stopped(abortable, child.message_id, Outcome.ABORTED)
    assert sorted(interrupted) == [1, 2]


def test_an_abort_of_a_parent_stops_the_completion_callback_of_its_group(
    stub_broker: StubBroker, abortable: Abortable, worker: dramatiq.Worker
) -> None:
    stub_broker.add_middleware(GroupCallbacks(StubRateLimiterBackend()))
    started, interrupted = threading.Event(), threading.Event()
    callbacks: list[dramatiq.Message[Any]] = []

    @dramatiq.actor
    def member(number: int) -> int:
        return number

    @dramatiq.actor(max_retries=0)
    def finished() -> None:
        spin_until_aborted(started.set, interrupted.set)

    @dramatiq.actor(abort_children=True, store_results=True)
    def parent() -> None:
        callback = finished.message()
        callbacks.append(callback)
        group = dramatiq.group([member.message(1), member.message(2)])
        group.add_completion_callback(callback)
        group.run()

    message = parent.send()
    # Enqueued by the worker that ran the last member of the group.
    abort_once_ended(message, started)

    assert interrupted.wait(WAIT)
    (callback,) = callbacks
    wait_stopped(abortable, callback.message_id, Outcome.ABORTED)


def test_the_children_of_an_actor_without_the_option_keep_running_when_it_is_aborted(
    stub_broker: StubBroker, abortable: Abortable, worker: dramatiq.Worker
) -> None:
    child_started, release = threading.Event(), threading.Event()
    sent: list[dramatiq.Message[Any]] = []

    @dramatiq.actor(store_results=True)
    def child() -> str:
        child_started.set()
        deadline = time.monotonic() + WAIT
        # Pure Python, where an Abort that hit it would land at once.
        while not release.is_set() and time.monotonic() < deadline:
            pass
        return "child finished"

    @dramatiq.actor(max_retries=0)
    def parent() -> None:
        sent.append(child.send())
        spin_until_aborted(lambda: None, lambda: None)

    message = parent.send()
    assert child_started.wait(WAIT)
    abort(message)
    wait_stopped(abortable, message.message_id, Outcome.ABORTED)
    release.set()

    (running,) = sent
    assert ANCESTRY not in running.options
    assert running.get_result(block=True, timeout=int(WAIT * 1000)) == "child finished"
    assert abortable.outcome(running) is None


@pytest.mark.parametrize(("actor_option", "message_option"), [(False, True), (True, False)])
def test_the_option_given_to_send_with_options_wins_over_the_actors(
    stub_broker: StubBroker,
    abortable: Abortable,
    worker: dramatiq.Worker,
    actor_option: bool,
    message_option: bool,
) -> None:
    sent: list[dramatiq.Message[Any]] = []

    @dramatiq.actor
    def child() -> None:
        pass

    @dramatiq.actor(abort_children=actor_option, store_results=True)
    def parent() -> None:
        sent.append(child.send_with_options(delay=QUEUED_FOR))

    message = parent.send_with_options(abort_children=message_option)
    message.get_result(block=True, timeout=int(WAIT * 1000))
    abort(message)

    (queued,) = sent
    if message_option:
        wait_stopped(abortable, queued.message_id, Outcome.CANCELLED)
    else:
        stub_broker.join(child.queue_name)
        worker.join()
        assert abortable.outcome(queued) is None


def test_the_middlewares_default_applies_to_actors_that_say_nothing(
    stub_broker: StubBroker, event_backend: EventBackend
) -> None:
    middleware = Abortable(backend=event_backend, abort_children=True)
    worker = start_worker(stub_broker, middleware)
    try:
        sent: list[dramatiq.Message[Any]] = []

        @dramatiq.actor
        def child() -> None:
            pass

        @dramatiq.actor
        def parent() -> None:
            sent.append(child.send_with_options(delay=QUEUED_FOR))

        message = parent.send()
        wait_until(lambda: sent, "the parent sent its child")
        abort(message, middleware=middleware)
        (queued,) = sent
        assert middleware.wait_outcome(queued, WAIT) is Outcome.CANCELLED
    finally:
        worker.stop()


def test_an_async_parent_passes_its_abort_on_to_the_child_its_coroutine_sent(
    stub_broker: StubBroker, abortable: Abortable, async_worker: dramatiq.Worker
) -> None:
    started, interrupted = threading.Event(), threading.Event()
    sent: list[dramatiq.Message[Any]] = []

    @dramatiq.actor(max_retries=0)
    def child() -> None:
        spin_until_aborted(started.set, interrupted.set)

    @dramatiq.actor(abort_children=True, store_results=True)
    async def parent() -> None:
        sent.append(child.send())

    message = parent.send()
    abort_once_ended(message, started)

    assert interrupted.wait(WAIT)
    (running,) = sent
    wait_stopped(abortable, running.message_id, Outcome.ABORTED)


def test_on_a_redis_broker_an_abort_of_a_parent_stops_its_running_child(
    redis_broker: RedisBroker, redis_worker: dramatiq.Worker
) -> None:
    started = threading.Event()
    sent: list[dramatiq.Message[Any]] = []

    @dramatiq.actor(max_retries=0)
    def child() -> None:
        spin_until_aborted(started.set, lambda: None)

    @dramatiq.actor(abort_children=True, store_results=True)
    def parent() -> None:
        sent.append(child.send())

    message = parent.send()
    abort_once_ended(message, started, reason="redis")

    (running,) = sent
    middleware = next(m for m in redis_broker.middleware if isinstance(m, Abortable))
    assert middleware.wait_outcome(running, WAIT) is Outcome.ABORTED
    assert middleware.outcome_reason(running) == "redis"


@pytest.mark.servers
def test_a_child_that_starts_while_the_watcher_is_cut_off_asks_the_backend_about_its_parent(
    stub_broker: StubBroker, private_redis: PrivateRedis
) -> None:
    backend = GatedBackend(
        client=redis.Redis.from_url(private_redis.url), namespace="propagation-test:"
    )
    middleware = Abortable(backend=backend)
    ran: list[str] = []
    sent: list[dramatiq.Message[Any]] = []
    worker = start_worker(stub_broker, middleware)
    observer = redis.Redis.from_url(private_redis.url)
    try:

        @dramatiq.actor
        def child() -> None:
            ran.append("child")

        @dramatiq.actor(abort_children=True)
        def parent() -> None:
            sent.append(child.send_with_options(delay=3 * QUEUED_FOR))

        watcher = connected_watcher(middleware)
        message = parent.send()
        wait_until(lambda: sent, "the parent sent its child")
        backend.subscriptions_allowed.clear()
        observer.client_kill_filter(_type="pubsub")
        wait_until_cut_off(watcher)
        # Pushed to no watcher of this worker: the child learns of it by asking.
        middleware.abort(message, mode=AbortMode.CANCEL)
        (queued,) = sent
        assert time.time() * 1000 < queued.options["eta"], "the child started before the abort"

        assert middleware.wait_outcome(queued, WAIT) is Outcome.CANCELLED
        stub_broker.join(child.queue_name)
        worker.join()
        assert ran == []
    finally:
        backend.subscriptions_allowed.set()
        worker.stop()
        observer.close()
        backend.client.close()


def test_on_a_redis_broker_an_abort_of_a_parent_stops_the_later_step_of_its_pipeline(
    redis_broker: RedisBroker, redis_worker: dramatiq.Worker
) -> None:
    started = threading.Event()
    pipelines: list[dramatiq.pipeline] = []
    steps: list[str] = []

    @dramatiq.actor(max_retries=0, pipe_ignore=True)
    def step(name: str) -> None:
        steps.append(name)
        if name == "second":
            spin_until_aborted(started.set, lambda: None)

    @dramatiq.actor(abort_children=True, store_results=True)
    def parent() -> None:
        pipe = dramatiq.pipeline([step.message("first"), step.message("second")])
        pipelines.append(pipe)
        pipe.run()

    message = parent.send()
    abort_once_ended(message, started)

    (pipe,) = pipelines
    middleware = next(m for m in redis_broker.middleware if isinstance(m, Abortable))
    assert middleware.wait_outcome(pipe.messages[1], WAIT) is Outcome.ABORTED
    assert steps == ["first", "second"]


def test_a_bad_abort_children_value_is_refused_where_it_is_given(
    stub_broker: StubBroker, abortable: Abortable
) -> None:
    def undecided() -> None:
        pass

    with pytest.raises(ActorOptionError, match=r"abort_children='yes'.*True or False"):
        dramatiq.actor(abort_children="yes")(undecided)
    with pytest.raises(ActorOptionError, match="abort_children=True and abortable=False"):
        dramatiq.actor(abort_children=True, abortable=False)(undecided)

    @dramatiq.actor
    def job() -> None:
        pass

    with pytest.raises(MessageOptionError, match="abort_children must be True or False, not 1"):
        job.send_with_options(abort_children=1)
    assert ANCESTRY == "abort_ancestors"
    with pytest.raises(MessageOptionError, match="abort_ancestors must be a list"):
        job.send_with_options(abort_ancestors="someone")
    assert stub_broker.queues[job.queue_name].qsize() == 0
    with pytest.raises(TypeError, match="abort_children"):
        Abortable(backend=StubBackend(), abort_children="no")  # type: ignore[arg-type]


def test_an_ancestry_holds_the_nearest_ancestors_up_to_its_bound_and_never_the_message() -> None:
    deep = tuple(f"ancestor-{n}" for n in range(MAX_DEPTH))
    assert ancestry_of("parent", deep) == ("parent", *deep[:-1])

    options: dict[str, Any] = {ANCESTRY: ["older", "child"]}
    give_ancestry(options, ("parent", "grandparent"), "child")
    assert options[ANCESTRY] == ["parent", "grandparent", "older"]


def test_aborting_some_parents_among_many_stops_their_children_and_no_others(
    stub_broker: StubBroker, abortable: Abortable, worker: dramatiq.Worker
) -> None:
    parents, children_each = 30, 3
    family = Family()
    release = threading.Event()
    some_started = threading.Semaphore(0)

    @dramatiq.actor(max_retries=0)
    def child(name: str) -> None:
        some_started.release()
        deadline = time.monotonic() + WAIT
        # Pure Python: an Abort lands at once. Released only once every
        # abort was sent, so none of the aborted parents' children ends first.
        while not release.is_set() and time.monotonic() < deadline:
            pass
        family.done(name)

    @dramatiq.actor(abort_children=True, max_retries=0)
    def parent(number: int) -> None:
        for n in range(children_each):
            message = child.send(f"{number}.{n}")
            family.sent(current_id(), message)

    stub_broker.add_middleware(dramatiq.middleware.CurrentMessage())
    messages = [parent.send(number) for number in range(parents)]
    targets = messages[::3]
    # Aborted while parents and children are in every state: queued,
    # sending, running, done.
    for _ in range(worker.worker_threads):
        assert some_started.acquire(timeout=WAIT)
    abort_many(targets)
    release.set()
    stub_broker.join(parent.queue_name)
    stub_broker.join(child.queue_name)
    worker.join()

    target_ids = {message.message_id for message in targets}
    stopped = [
        child_id
        for parent_id, child_ids in family.children.items()
        if parent_id in target_ids
        for child_id in child_ids
    ]
    spared = [
        child_id
        for parent_id, child_ids in family.children.items()
        if parent_id not in target_ids
        for child_id in child_ids
    ]
    # Every parent not aborted sent all its children, which all ran to their end.
    assert len(spared) == (parents - len(targets)) * children_each
    assert len(family.completed) == len(spared)
    for child_id in spared:
        assert abortable.outcome(child_id) is None
    for child_id in stopped:
        assert abortable.wait_outcome(child_id, WAIT) in (Outcome.ABORTED, Outcome.CANCELLED)
    # Every child left the index by ancestor as it ended: nothing is held for ever.
    assert abortable.executions.families.ancestor_ids() == []
