"""The documented API: names, signatures, defaults and clear errors on bad input."""

from __future__ import annotations

import inspect
import logging
import re
import threading
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware.threading import Interrupt
from dramatiq.results import ResultFailure, Results
from dramatiq.results.backends import StubBackend as StubResultBackend

import dramatiq_abort
from dramatiq_abort import (
    Abort,
    Abortable,
    AbortMode,
    Event,
    EventBackend,
    Outcome,
    abort,
    abort_many,
    abort_requested,
    wait_outcome,
)
from dramatiq_abort import middleware as middleware_module
from dramatiq_abort.backends import RedisBackend, StubBackend
from dramatiq_abort.checks import MAX_MESSAGE_ID_LENGTH

from ..support import (
    QUEUED_FOR,
    WAIT,
    assert_nothing_written,
    start_worker,
)


def test_public_names_match_the_documentation() -> None:
    for name in (
        "Abortable",
        "Abort",
        "AbortMode",
        "Event",
        "EventBackend",
        "abort",
        "abort_requested",
    ):
        assert hasattr(dramatiq_abort, name)
    assert middleware_module.AbortMode is AbortMode
    assert issubclass(Abort, Interrupt) and not issubclass(Abort, Exception)
    assert inspect.signature(abort).parameters.keys() == {
        "message_id",
        "middleware",
        "abort_ttl",
        "mode",
        "abort_timeout",
        "reason",
    }
    assert list(inspect.signature(abort_requested).parameters) == ["message_id", "middleware"]
    assert list(inspect.signature(Abortable.abort).parameters) == [
        "self",
        "message_id",
        "abort_ttl",
        "mode",
        "abort_timeout",
        "reason",
    ]
    # Added after the 1.x parameters, by keyword only: positional calls keep working.
    assert inspect.signature(abort).parameters["reason"].kind is inspect.Parameter.KEYWORD_ONLY
    assert Event("abort:x", {"abort_timeout": 1}) == ("abort:x", {"abort_timeout": 1})
    assert {m.value for m in AbortMode} == {"abort", "cancel"}


def test_abortable_defaults() -> None:
    middleware = Abortable(backend=StubBackend())
    assert middleware.abortable is True
    assert middleware.abort_children is False
    assert middleware.abort_ttl == 90_000
    assert middleware.actor_options == {"abortable", "abort_children"}


def test_abort_without_middleware_on_the_broker_raises_runtime_error() -> None:
    dramatiq.set_broker(StubBroker())
    with pytest.raises(RuntimeError, match="has no Abortable middleware"):
        abort("some-id")
    with pytest.raises(RuntimeError):
        abort_requested()


def test_a_backend_with_only_the_three_documented_methods_is_accepted() -> None:
    class Minimal(EventBackend):
        def notify(self, events: Any, ttl: int) -> None: ...
        def poll(self, key: str) -> None: ...
        def wait_many(self, keys: Any, timeout: int) -> None: ...

    backend = Abortable(backend=Minimal()).backend
    assert not backend.pushes and not backend.records_outcomes
    with pytest.raises(TypeError, match="must be an EventBackend"):
        Abortable(backend=object())  # type: ignore[arg-type]


class NoOutcomes(StubBackend):
    """A pushing backend that states it records no outcome, and fails if asked to."""

    records_outcomes = False

    def record_outcome(self, message_id: str, outcome: str, ttl: int, **_: Any) -> None:
        raise AssertionError("record_outcome called on a backend that records none")

    def wait_outcome(self, message_id: str, timeout: float | None, **_: Any) -> str | None:
        raise AssertionError("wait_outcome called on a backend that records none")


def test_a_backend_that_records_no_outcomes_is_never_asked_for_one(
    stub_broker: StubBroker,
) -> None:
    stub_broker.add_middleware(Results(backend=StubResultBackend()))
    middleware = Abortable(backend=NoOutcomes())
    assert middleware.outcome("some-id") is None
    with pytest.raises(NotImplementedError, match="NoOutcomes does not record outcomes"):
        middleware.wait_outcome("some-id", 1)

    worker = start_worker(stub_broker, middleware)

    @dramatiq.actor(store_results=True)
    def job() -> None:
        pass

    try:
        cancelled = job.send_with_options(delay=QUEUED_FOR)
        abort(cancelled.message_id)
        with pytest.raises(ResultFailure, match="MessageAborted"):
            cancelled.get_result(block=True, timeout=int(WAIT * 1000))
        job.send().get_result(block=True, timeout=int(WAIT * 1000))
    finally:
        worker.stop()


@pytest.mark.parametrize(
    ("arguments", "error", "names"),
    [
        ({"message_id": ""}, ValueError, "''"),
        ({"message_id": None}, TypeError, "None"),
        ({"message_id": 123}, TypeError, "123"),
        ({"message_id": b"bytes"}, TypeError, "b'bytes'"),
        ({"abort_timeout": -1}, ValueError, "-1"),
        ({"abort_timeout": "10"}, TypeError, "'10'"),
        ({"abort_timeout": float("nan")}, ValueError, "nan"),
        ({"abort_ttl": -5}, ValueError, "-5"),
        ({"abort_ttl": 0}, ValueError, "0"),
        ({"abort_ttl": True}, TypeError, "True"),
        ({"mode": "stop"}, ValueError, "'stop'"),
        ({"mode": 3}, ValueError, "3"),
    ],
)
def test_bad_input_names_the_value_and_writes_nothing(
    abortable: Abortable, arguments: dict[str, Any], error: type[Exception], names: str
) -> None:
    call: dict[str, Any] = {"message_id": "a-message", **arguments}
    with pytest.raises(error, match=names.replace("(", r"\(").replace("[", r"\[")):
        abort(**call)
    assert_nothing_written(abortable.backend)


def test_mode_accepts_its_string_value(abortable: Abortable) -> None:
    abort("by-value", mode="cancel")  # type: ignore[arg-type]
    assert abortable.backend.poll("cancel:by-value") is not None
    assert abortable.backend.poll("abort:by-value") is None


def test_abortable_rejects_a_bad_default_ttl() -> None:
    with pytest.raises(ValueError, match="abort_ttl must be greater than 0, not -1"):
        Abortable(backend=StubBackend(), abort_ttl=-1)


def test_redis_backend_defaults_and_urls(redis_url: str) -> None:
    backend = RedisBackend()
    assert backend.namespace == "dramatiq:aborts:"
    assert isinstance(backend.client, redis.Redis)
    from_url = RedisBackend.from_url(redis_url, namespace="elsewhere:")
    assert from_url.namespace == "elsewhere:"
    assert from_url.client.ping()
    with pytest.raises(ValueError, match="namespace"):
        RedisBackend(namespace="")


def test_a_mode_passed_by_position_is_refused_with_a_hint(abortable: Abortable) -> None:
    with pytest.raises(TypeError, match=r"middleware must be an Abortable.*mode=AbortMode.CANCEL"):
        abort("a-message", AbortMode.CANCEL)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="middleware must be an Abortable"):
        abort_requested("a-message", "cancel")  # type: ignore[arg-type]
    assert abortable.backend.poll("cancel:a-message") is None


def test_message_ids_longer_than_the_maximum_are_refused_before_anything_is_written(
    abortable: Abortable,
) -> None:
    longest = "x" * MAX_MESSAGE_ID_LENGTH
    with pytest.raises(
        ValueError, match=f"at most {MAX_MESSAGE_ID_LENGTH} characters, not 10,000,000"
    ):
        abort("x" * 10_000_000)
    with pytest.raises(ValueError, match="at most"):
        abort_many(["fine", longest + "x"])
    with pytest.raises(ValueError, match="at most"):
        wait_outcome(longest + "x", timeout=0)
    assert abortable.backend.poll("cancel:fine") is None
    abort(longest)
    assert abortable.backend.poll(f"cancel:{longest}") is not None


def test_abort_many_and_wait_outcome_work_at_module_level_like_abort(
    abortable: Abortable, worker: dramatiq.Worker
) -> None:
    ran: list[str] = []

    @dramatiq.actor
    def job(name: str) -> None:
        ran.append(name)

    cancelled = [job.message(name) for name in ("a", "b")]
    abort_many(cancelled, mode=AbortMode.CANCEL)
    for message in cancelled:
        dramatiq.get_broker().enqueue(message)
    assert wait_outcome(cancelled[0], timeout=WAIT) is Outcome.CANCELLED
    assert wait_outcome(cancelled[1].message_id, timeout=WAIT) is Outcome.CANCELLED
    assert abortable.wait_outcome(cancelled[1], timeout=0) is Outcome.CANCELLED
    assert wait_outcome("never-sent", timeout=0) is None
    assert ran == []


@pytest.mark.parametrize(
    ("timeout", "error", "says"),
    [
        ("1", TypeError, "timeout must be a number of seconds, not '1'"),
        (-1, ValueError, "timeout must be 0 or more, or None for no limit, not -1"),
        (float("nan"), ValueError, "timeout must be 0 or more"),
    ],
)
def test_wait_outcome_names_a_bad_timeout(
    abortable: Abortable, timeout: object, error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=re.escape(says)):
        wait_outcome("a-message", timeout)  # type: ignore[arg-type]


def test_redis_backend_names_a_bad_url_or_client() -> None:
    with pytest.raises(TypeError, match=r"url must be a Redis URL, a str .* not a NoneType"):
        RedisBackend.from_url(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="url must start with redis://, rediss:// or unix://"):
        RedisBackend.from_url("localhost:6379")
    with pytest.raises(ValueError, match="not http://") as refused:
        RedisBackend.from_url("http://user:secret@localhost:6379")
    assert "secret" not in str(refused.value)
    # redis-py would connect to database 0, where the workers may not listen.
    with pytest.raises(ValueError, match="database 'cache' is not a number") as refused:
        RedisBackend.from_url("redis://user:secret@localhost:6379/cache")
    assert "secret" not in str(refused.value)
    with pytest.raises(TypeError, match=r"client must be a redis-py client.*from_url\(url\)"):
        RedisBackend(client="redis://x")
    with pytest.raises(TypeError, match="a URL") as not_a_client:
        RedisBackend(client="redis://user:secret@x")
    assert "secret" not in str(not_a_client.value)


def test_abortable_options_must_be_booleans(stub_broker: StubBroker) -> None:
    with pytest.raises(TypeError, match="abortable must be True or False, not 'yes'"):
        Abortable(backend=StubBackend(), abortable="yes")  # type: ignore[arg-type]
    stub_broker.add_middleware(Abortable(backend=StubBackend()))

    @dramatiq.actor
    def job() -> None: ...

    with pytest.raises(TypeError, match="abortable must be True or False, not 'false'"):
        job.send_with_options(abortable="false")
    assert stub_broker.queues[job.queue_name].qsize() == 0
    job.send_with_options(abortable=False)
    assert stub_broker.queues[job.queue_name].qsize() == 1
    with pytest.raises(ValueError, match="sets abortable='no'"):

        @dramatiq.actor(abortable="no")
        def undecided() -> None: ...


def test_a_message_sent_with_a_non_boolean_abortable_is_logged_and_follows_its_actor(
    stub_broker: StubBroker,
    abortable: Abortable,
    worker: dramatiq.Worker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran = threading.Event()

    @dramatiq.actor(abortable=False)
    def job() -> None:
        ran.set()

    message = job.message_with_options(abortable="false")
    abort(message, mode=AbortMode.CANCEL)
    with caplog.at_level(logging.WARNING):
        # As a process without the middleware sends it: nothing refuses it there.
        stub_broker.queues[job.queue_name].put(message.encode())
        stub_broker.join(job.queue_name)
        worker.join()
    assert ran.is_set(), "abortable='false' counted as true: the cancel stopped it"
    assert [r.getMessage() for r in caplog.records] == [
        f"Message {message.message_id!r} has abortable='false', which is neither True nor"
        " False: ignored, the actor's setting applies."
    ]


def test_abort_takes_the_message_a_worker_runs_and_names_a_bad_list(
    stub_broker: StubBroker, abortable: Abortable
) -> None:
    @dramatiq.actor
    def job() -> None: ...

    proxy = MessageProxy(job.message())
    abort(proxy, mode=AbortMode.CANCEL)
    assert abortable.backend.poll(f"cancel:{proxy.message_id}") is not None
    with pytest.raises(
        TypeError, match="message_ids must be an iterable of ids or messages, not None"
    ):
        abort_many(None)  # type: ignore[arg-type]


def test_without_an_abortable_the_error_says_how_to_add_one(stub_broker: StubBroker) -> None:
    with pytest.raises(RuntimeError, match=r"broker.add_middleware\(Abortable\(backend=...\)\)"):
        abort("some-id")


def test_marks_are_kept_with_the_request_and_reserved_names_are_refused(
    abortable: Abortable,
) -> None:
    abortable.abort_many(["marked"], mode=AbortMode.ABORT, marks={"revoked": True, "by": "ops"})
    records = abortable.backend.records("marked")
    assert records.abort is not None and records.cancel is not None
    for event in (records.abort, records.cancel):
        assert (event.params["revoked"], event.params["by"]) == (True, "ops")
    assert records.abort.params["abort_timeout"] == 0
    with pytest.raises(ValueError, match="marks cannot use the name 'reason'"):
        abortable.abort_many(["other"], marks={"reason": "sneaked in"})
    with pytest.raises(TypeError, match=r"marks\['when'\] must be a bool, int or str"):
        abortable.abort_many(["other"], marks={"when": 1.5})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"marks\['note'\] must be at most 1,000 characters"):
        abortable.abort_many(["other"], marks={"note": "x" * 1001})
    with pytest.raises(ValueError, match="marks must be at most 16, not 17"):
        abortable.abort_many(["other"], marks={f"m{n}": n for n in range(17)})
    assert abortable.backend.records("other").abort is None
