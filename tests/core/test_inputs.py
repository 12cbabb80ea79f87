"""Input that passes the checks is input every backend stores: text holding
a NUL character or a lone surrogate, and numbers past what a backend or a
timer takes, are refused before anything is written, with an error naming
the value, the same on every backend, through the API and the command line."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from dramatiq_abort import Abortable, EventBackend
from dramatiq_abort.backends import RedisBackend, StubBackend
from dramatiq_abort.checks import MAX_MARK, MAX_MILLISECONDS, MIN_MARK

from ..support import assert_nothing_written, backend_in, status_of

pytestmark = pytest.mark.timeout(60)

#: Text that no backend stores, and what the error says of it.
UNSTORABLE = [
    pytest.param("a\x00b", "holds a NUL character", id="nul"),
    # What Python makes of a command line's byte 0xff, which is not UTF-8.
    pytest.param("a\udcffb", "holds the lone surrogate '\\udcff'", id="surrogate"),
]

#: Each call that hands text to a backend, with the name its error gives it.
TEXT_INPUTS: list[Any] = [
    pytest.param(lambda m, text: m.abort(text), "message_id", id="abort-id"),
    pytest.param(lambda m, text: m.abort("m", reason=text), "reason", id="abort-reason"),
    pytest.param(lambda m, text: m.abort_many(["m"], marks={"by": text}), "marks['by']", id="mark"),
    pytest.param(
        lambda m, text: m.abort_many(["m"], marks={text: 1}), "a name of marks", id="mark-name"
    ),
    pytest.param(lambda m, text: m.abort_where(actor=text), "actor", id="rule-actor"),
    pytest.param(lambda m, text: m.abort_where(queue=text), "queue", id="rule-queue"),
    pytest.param(
        lambda m, text: m.abort_where(actor="job", reason=text), "reason", id="rule-reason"
    ),
    pytest.param(lambda m, text: m.running_messages(actor=text), "actor", id="listing-actor"),
    pytest.param(lambda m, text: m.running_messages(queue=text), "queue", id="listing-queue"),
    pytest.param(lambda m, text: m.wait_outcome(text, 0), "message_id", id="outcome"),
    pytest.param(lambda m, text: m.outcome_reason(text), "message_id", id="outcome-reason"),
]


@pytest.mark.parametrize(("call", "name"), TEXT_INPUTS)
@pytest.mark.parametrize(("text", "says"), UNSTORABLE)
def test_text_that_a_backend_cannot_store_is_refused_before_anything_is_written(
    abortable: Abortable, call: Callable[[Abortable, str], Any], name: str, text: str, says: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(f"{name} {says}")):
        call(abortable, text)
    assert_nothing_written(abortable.backend)


#: Each number past what some backend stores or some timer takes, and the
#: call that is given it.
NUMBERS: list[Any] = [
    pytest.param(lambda m: m.abort("m", abort_ttl=1e30), "abort_ttl", id="ttl-float"),
    pytest.param(lambda m: m.abort("m", abort_ttl=2**63), "abort_ttl", id="ttl-bigint"),
    pytest.param(lambda m: m.abort("m", abort_ttl=MAX_MILLISECONDS + 1), "abort_ttl", id="ttl-max"),
    pytest.param(lambda m: m.abort("m", abort_timeout=1e30), "abort_timeout", id="timeout"),
    pytest.param(lambda m: m.abort("m", abort_timeout=10**400), "abort_timeout", id="timeout-int"),
    pytest.param(lambda m: m.abort_where(actor="job", abort_ttl=2**63), "abort_ttl", id="rule-ttl"),
    pytest.param(
        lambda m: m.abort_where(actor="job", sent_before=datetime.datetime.min),
        "sent_before",
        id="rule-sent-before",
    ),
    pytest.param(lambda m: m.abort_many(["m"], marks={"n": 2**63}), "marks['n']", id="mark"),
    pytest.param(lambda m: m.wait_outcome("m", 1e12), "timeout", id="outcome-wait"),
    pytest.param(lambda m: m.running_messages(timeout=1e300), "timeout", id="listing-wait"),
    pytest.param(
        lambda m: m.running_messages(sent_before=1e308), "sent_before", id="listing-moment"
    ),
]


@pytest.mark.parametrize(("call", "name"), NUMBERS)
def test_a_number_past_what_every_backend_stores_is_refused_before_anything_is_written(
    abortable: Abortable, call: Callable[[Abortable], Any], name: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(name)):
        call(abortable)
    assert_nothing_written(abortable.backend)


def test_the_largest_values_accepted_are_stored_by_every_backend(abortable: Abortable) -> None:
    with pytest.raises(ValueError, match=f"abort_ttl must be at most {MAX_MILLISECONDS:,} ms"):
        abortable.abort("longest", abort_ttl=MAX_MILLISECONDS + 1)
    marks: dict[str, bool | int | str] = {"low": MIN_MARK, "high": MAX_MARK}
    abortable.abort_many(
        ["longest"], abort_ttl=MAX_MILLISECONDS, abort_timeout=MAX_MILLISECONDS, marks=marks
    )
    stored = abortable.backend.records("longest").abort
    assert stored is not None
    assert (stored.params["abort_timeout"], stored.params["low"], stored.params["high"]) == (
        MAX_MILLISECONDS,
        MIN_MARK,
        MAX_MARK,
    )
    abortable.abort_where(
        actor="job", sent_before=0, abort_timeout=MAX_MILLISECONDS, abort_ttl=MAX_MILLISECONDS
    )


@pytest.mark.parametrize(
    ("parameters", "says"),
    [
        ({"abort_ttl": 2**63}, "abort_ttl must be at most"),
        ({"boot_timeout": 1e300}, "boot_timeout must be at most"),
    ],
)
def test_a_setting_past_what_every_backend_stores_is_refused(
    parameters: dict[str, Any], says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        Abortable(backend=StubBackend(), **parameters)


def test_a_redis_namespace_that_redis_cannot_be_sent_is_refused(redis_url: str) -> None:
    with pytest.raises(ValueError, match=re.escape("namespace holds the lone surrogate")):
        RedisBackend.from_url(redis_url, namespace="tenant-\udcff:")


@pytest.fixture(params=["redis", "postgres"])
def command_backend(
    request: pytest.FixtureRequest, redis_url: str, redis_client: redis.Redis, namespace: str
) -> Iterator[tuple[list[str], EventBackend]]:
    """Each backend the command reaches: its options, and the backend, to
    look at what the command wrote."""
    if request.param == "redis":
        yield (
            ["--backend", redis_url, "--namespace", namespace],
            RedisBackend(client=redis_client, namespace=namespace),
        )
        return
    url: str = request.getfixturevalue("postgres_url")
    postgres_namespace: str = request.getfixturevalue("postgres_namespace")
    with backend_in(url, postgres_namespace) as backend:
        yield ["--backend", url, "--namespace", postgres_namespace], backend


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["abort", "a\udcffb"], "message_id holds the lone surrogate"),
        (["abort", "some-id", "--reason", "r\udcff"], "reason holds the lone surrogate"),
        (["abort", "--actor", "job\udcff"], "actor holds the lone surrogate"),
        (["abort", "--queue", "q\udcff", "--dry-run"], "queue holds the lone surrogate"),
        (["abort", "some-id", "--ttl", str(2**63)], "--ttl must be at most"),
        (["abort", "some-id", "--timeout", str(10**30)], "--timeout must be at most"),
        (["abort", "--actor", "job", "--timeout", str(10**30)], "--timeout must be at most"),
        (["list", "--wait", "1e300"], "--wait must be at most"),
        (["list", "--actor", "job\udcff"], "actor holds the lone surrogate"),
        (["web", "--refresh", "1e6", "--port", "0"], "refresh must be at most 86,400 s"),
    ],
)
def test_the_command_refuses_what_a_backend_cannot_store_and_writes_nothing(
    command_backend: tuple[list[str], EventBackend],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    says: str,
) -> None:
    options, backend = command_backend
    assert status_of([*argv, *options]) == 2
    assert says in capsys.readouterr().err
    assert_nothing_written(backend)
