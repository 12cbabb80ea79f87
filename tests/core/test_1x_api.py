"""The calls that dramatiq-abort 1.x's documentation and its own tests make,
made the same way: each public name takes what 1.x took, a plain
``Message`` wherever it took one."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import SkipMessage

from dramatiq_abort import Abortable, AbortMode, Event, EventBackend, abort, abort_requested
from dramatiq_abort.backends import RedisBackend, StubBackend
from dramatiq_abort.dramatiq_internals import AnyMessage
from dramatiq_abort.worker.lineage import ANCESTRY

from ..support import WAIT, spin_until_aborted

pytestmark = pytest.mark.timeout(60)

#: Whether a message may be aborted, by the ``abortable`` of the middleware,
#: the actor and the message, ``None`` meaning not given: the message's wins
#: over the actor's, which wins over the middleware's, which is ``True``
#: unless given. 1.x's own table holds the rows without ``None`` on the middleware.
ABORTABLE = [
    # middleware, actor, message: abortable
    (None, None, None, True),
    (None, None, True, True),
    (None, None, False, False),
    (None, True, None, True),
    (None, True, True, True),
    (None, True, False, False),
    (None, False, None, False),
    (None, False, True, True),
    (None, False, False, False),
    (True, None, None, True),
    (True, None, True, True),
    (True, None, False, False),
    (True, True, None, True),
    (True, True, True, True),
    (True, True, False, False),
    (True, False, None, False),
    (True, False, True, True),
    (True, False, False, False),
    (False, None, None, False),
    (False, None, True, True),
    (False, None, False, False),
    (False, True, None, True),
    (False, True, True, True),
    (False, True, False, False),
    (False, False, None, False),
    (False, False, True, True),
    (False, False, False, False),
]

#: What the hooks are handed: the plain ``Message`` that 1.x's callers
#: pass, or the ``MessageProxy`` that a worker passes.
WRAPS: list[Callable[[dramatiq.Message[Any]], AnyMessage]] = [lambda m: m, MessageProxy]
WRAP_IDS = ["Message", "MessageProxy"]


def declare(abortable: bool | None) -> dramatiq.Actor[Any, Any]:
    """An actor declared with ``abortable``, ``None`` included, as 1.x's tests declare it."""

    def job() -> None:
        pass

    return dramatiq.actor(abortable=abortable, actor_name=f"job_{abortable}")(job)


def message_for(actor: dramatiq.Actor[Any, Any], abortable: bool | None) -> dramatiq.Message[Any]:
    """A message of ``actor`` with the option ``abortable``, ``None``
    included, as 1.x's tests build it."""
    return dramatiq.Message(
        queue_name=actor.queue_name,
        actor_name=actor.actor_name,
        args=(),
        kwargs={},
        options={"abortable": abortable},
    )


@contextlib.contextmanager
def booted_by_hand(broker: dramatiq.Broker, middleware: Abortable) -> Iterator[None]:
    """``middleware`` on ``broker``, booted by hand for a worker that is not
    started, as 1.x's tests boot it; shut down when the block ends."""
    broker.add_middleware(middleware)
    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=1)
    middleware.before_worker_boot(broker, worker)
    try:
        yield
    finally:
        middleware.after_worker_shutdown(broker, worker)


@pytest.mark.parametrize("wrap", WRAPS, ids=WRAP_IDS)
@pytest.mark.parametrize(
    "middleware_abortable,actor_abortable,message_abortable,expected", ABORTABLE
)
def test_is_abortable_takes_the_message_option_then_the_actor_option_then_the_middleware_default(
    stub_broker: StubBroker,
    wrap: Callable[[dramatiq.Message[Any]], AnyMessage],
    middleware_abortable: bool | None,
    actor_abortable: bool | None,
    message_abortable: bool | None,
    expected: bool,
) -> None:
    # No call reaches the backend.
    middleware = Abortable(backend=StubBackend(), abortable=middleware_abortable)
    stub_broker.add_middleware(middleware)
    actor = declare(actor_abortable)
    message = wrap(message_for(actor, message_abortable))
    assert middleware.is_abortable(actor, message) is expected


@pytest.mark.parametrize("wrap", WRAPS, ids=WRAP_IDS)
@pytest.mark.parametrize("middleware_abortable", [None, True, False])
def test_the_hooks_called_by_hand_stop_only_abortable_messages(
    stub_broker: StubBroker,
    event_backend: EventBackend,
    wrap: Callable[[dramatiq.Message[Any]], AnyMessage],
    middleware_abortable: bool | None,
) -> None:
    middleware = Abortable(backend=event_backend, abortable=middleware_abortable)
    with booted_by_hand(stub_broker, middleware):
        actors = {option: declare(option) for option in (None, True, False)}
        for default, actor_abortable, message_abortable, expected in ABORTABLE:
            if default is not middleware_abortable:
                continue
            case = f"actor {actor_abortable}, message {message_abortable}"
            actor = actors[actor_abortable]

            # Cancelled before it starts: skipped if abortable, else let through.
            cancelled = wrap(message_for(actor, message_abortable))
            abort(cancelled.message_id, middleware=middleware, mode=AbortMode.CANCEL)
            if expected:
                with pytest.raises(SkipMessage):
                    middleware.before_process_message(stub_broker, cancelled)
                middleware.after_skip_message(stub_broker, cancelled)
            else:
                middleware.before_process_message(stub_broker, cancelled)
                middleware.after_process_message(stub_broker, cancelled, result=None)

            # Aborted once started: told in its thread if abortable.
            started = wrap(message_for(actor, message_abortable))
            middleware.before_process_message(stub_broker, started)
            abort(started.message_id, middleware, 60_000, AbortMode.ABORT, 60_000)
            left = abort_requested(middleware=middleware)
            if expected:
                assert left is not None and 0 < left <= 60_000, case
                asked = abort_requested(started.message_id, middleware)
                assert asked is not None and 0 < asked <= 60_000, case
            else:
                assert left is None, case
            middleware.after_process_message(stub_broker, started, result=None)
            assert abort_requested(middleware=middleware) is None, case


def test_a_middleware_booted_by_hand_after_its_worker_started_aborts_its_running_messages(
    stub_broker: StubBroker, event_backend: EventBackend
) -> None:
    # As 1.x's tests do: the worker starts before the middleware joins the broker.
    worker = dramatiq.Worker(stub_broker, worker_timeout=100, worker_threads=2)
    worker.start()
    try:
        middleware = Abortable(backend=event_backend)
        stub_broker.add_middleware(middleware)
        middleware.before_worker_boot(stub_broker, worker)
        started, interrupted = threading.Event(), threading.Event()
        aborted: list[str] = []

        def spin(name: str) -> None:
            def stopped() -> None:
                aborted.append(name)
                interrupted.set()

            spin_until_aborted(started.set, stopped)

        @dramatiq.actor(abortable=None, max_retries=0)
        def unset() -> None:
            spin("unset")

        @dramatiq.actor(abortable=True, max_retries=0)
        def opted_in() -> None:
            spin("opted_in")

        # The middleware's method, as 1.x's test_abort_polling calls it, and the function.
        senders: list[tuple[dramatiq.Actor[Any, Any], Callable[[str], None]]] = [
            (unset, middleware.abort),
            (opted_in, abort),
        ]
        for actor, send_abort in senders:
            started.clear()
            interrupted.clear()
            message = actor.send()
            assert started.wait(WAIT)
            send_abort(message.message_id)
            assert interrupted.wait(WAIT), f"{actor.actor_name} was not aborted"
        stub_broker.join(unset.queue_name)
        worker.join()
        assert aborted == ["unset", "opted_in"]
    finally:
        worker.stop()


@pytest.mark.parametrize("wrap", WRAPS, ids=WRAP_IDS)
def test_an_actor_option_of_none_leaves_abort_children_to_the_middleware(
    stub_broker: StubBroker, wrap: Callable[[dramatiq.Message[Any]], AnyMessage]
) -> None:
    # The same rule for the option that 2.0 adds beside abortable.
    middleware = Abortable(backend=StubBackend(), abort_children=True)
    stub_broker.add_middleware(middleware)

    @dramatiq.actor(abort_children=None)
    def parent() -> None:
        pass

    @dramatiq.actor
    def child() -> None:
        pass

    running = wrap(message_for(parent, None))
    middleware.before_process_message(stub_broker, running)
    try:
        sent = child.send()
    finally:
        middleware.after_process_message(stub_broker, running, result=None)
    assert sent.options[ANCESTRY] == [running.message_id]


def test_id_to_key_names_the_key_under_which_the_backend_holds_a_request(
    stub_broker: StubBroker, event_backend: EventBackend
) -> None:
    middleware = Abortable(backend=event_backend)
    stub_broker.add_middleware(middleware)
    abort("some-message", middleware=middleware, mode=AbortMode.CANCEL)

    cancel = Abortable.id_to_key("some-message", AbortMode.CANCEL)
    assert cancel == "cancel:some-message"
    assert event_backend.poll(cancel) == Event(cancel, {})
    assert middleware.key_to_id(cancel) == "some-message"
    # A cancel is no abort: nothing under the key of one, the default mode.
    assert middleware.id_to_key("some-message") == "abort:some-message"
    assert event_backend.poll(middleware.id_to_key("some-message")) is None


def test_a_redis_namespace_set_after_construction_holds_every_key(
    redis_client: redis.Redis, namespace: str
) -> None:
    backend = RedisBackend(client=redis_client, namespace=namespace + "first:")
    # As 1.x's tests set it.
    backend.namespace = namespace + "second:"
    event = Event(key="test_key", params={})
    backend.notify([event], 60_000)
    assert backend.wait_many([event.key], timeout=1000) == event

    second = RedisBackend(client=redis_client, namespace=namespace + "second:")
    first = RedisBackend(client=redis_client, namespace=namespace + "first:")
    assert second.poll("test_key") == event
    assert first.poll("test_key") is None
    # Its workers subscribe where the other processes of the namespace publish.
    assert (backend.channel, backend.outcomes_channel) == (second.channel, second.outcomes_channel)
    with pytest.raises(ValueError, match="namespace must be a non-empty str, not ''"):
        backend.namespace = ""
    assert backend.namespace == namespace + "second:"
