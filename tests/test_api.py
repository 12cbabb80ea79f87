"""The documented API: names, signatures, defaults and clear errors on bad input."""

from __future__ import annotations

import inspect
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware.threading import Interrupt
from dramatiq.results import ResultFailure, Results
from dramatiq.results.backends import StubBackend as StubResultBackend

import dramatiq_abort
from dramatiq_abort import Abort, Abortable, AbortMode, Event, EventBackend, abort, abort_requested
from dramatiq_abort import middleware as middleware_module
from dramatiq_abort.backends import RedisBackend, StubBackend

from .support import WAIT, start_worker


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
    }
    assert list(inspect.signature(abort_requested).parameters) == ["message_id", "middleware"]
    assert list(inspect.signature(Abortable.abort).parameters) == [
        "self",
        "message_id",
        "abort_ttl",
        "mode",
        "abort_timeout",
    ]
    assert Event("abort:x", {"abort_timeout": 1}) == ("abort:x", {"abort_timeout": 1})
    assert {m.value for m in AbortMode} == {"abort", "cancel"}


def test_abortable_defaults() -> None:
    middleware = Abortable(backend=StubBackend())
    assert middleware.abortable is True
    assert middleware.abort_ttl == 90_000
    assert middleware.actor_options == {"abortable", "bind", "track_started"}


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

    def record_outcome(self, message_id: str, outcome: str, ttl: int) -> None:
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

    @dramatiq.actor(store_results=True, track_started=True)
    def job() -> None:
        pass

    try:
        cancelled = job.send_with_options(delay=200)
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
    backend = abortable.backend
    if isinstance(backend, StubBackend):
        assert backend.recorded() == []
    else:
        assert isinstance(backend, RedisBackend)
        assert backend.recorded() == []
        assert list(backend.client.scan_iter(match=backend.namespace + "*")) == []


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


def test_bind_on_a_plain_actor_is_refused_when_declared(stub_broker: StubBroker) -> None:
    stub_broker.add_middleware(Abortable(backend=StubBackend()))
    with pytest.raises(ValueError, match=r"needs_self.*actor_class=AbortableActor"):

        @dramatiq.actor(bind=True)
        def needs_self(self: Any) -> None: ...

    assert "needs_self" not in stub_broker.actors
