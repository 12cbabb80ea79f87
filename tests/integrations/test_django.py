"""Django projects whose django_dramatiq app builds the broker, with
Abortable listed by its dotted path and configured by ``DRAMATIQ_ABORT``."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from dramatiq_abort import Abortable, Outcome, abort, wait_outcome
from dramatiq_abort.backends import RedisBackend, StubBackend
from dramatiq_abort.compat import ABORTED, STARTED, SUCCESS, AbortableActor, TaskStates
from dramatiq_abort.dramatiq_internals import middleware_of

from ..support import (
    ROOT,
    WAIT,
    require_mark,
    spin_until_aborted,
    stop_process_group,
    unavailable,
    wait_until,
)

#: What each test's project starts from: the settings of a project on a
#: StubBroker, which configures no abort backend.
BASE_SETTINGS: dict[str, Any] = {
    "SECRET_KEY": "only-for-tests",
    "INSTALLED_APPS": ["django_dramatiq"],
    "DRAMATIQ_BROKER": {"BROKER": "dramatiq.brokers.stub.StubBroker", "MIDDLEWARE": []},
}

#: django_dramatiq's default middleware, less those that need a database,
#: and Abortable listed as a Django project lists it.
MIDDLEWARE = [
    "dramatiq.middleware.AgeLimit",
    "dramatiq.middleware.TimeLimit",
    "dramatiq.middleware.Callbacks",
    "dramatiq.middleware.Retries",
    "dramatiq_abort.Abortable",
]


@pytest.fixture(scope="module")
def django_settings() -> Any:
    """Django's settings, configured once for the process (Django allows no
    more), with django_dramatiq installed; each test changes them with
    ``override_settings``."""
    try:
        import django
        import django_dramatiq  # noqa: F401
        from django.conf import settings
    except ImportError as e:
        unavailable(f"Django and django-dramatiq are not installed (pip install -e '.[dev]'): {e}")
    if not settings.configured:
        settings.configure(**BASE_SETTINGS)
        django.setup()
    return settings


@contextlib.contextmanager
def django_project(config: Any = None, **overrides: Any) -> Iterator[dramatiq.Broker]:
    """The broker that django_dramatiq's app config (``config``, by default
    its own) builds from the settings with ``overrides``, as at a project's
    start-up; closed afterwards."""
    import django_dramatiq
    from django.test import override_settings
    from django_dramatiq.apps import DjangoDramatiqConfig

    with override_settings(**overrides):
        (config or DjangoDramatiqConfig)("django_dramatiq", django_dramatiq)
        broker = dramatiq.get_broker()
        try:
            yield broker
        finally:
            broker.close()


def redis_broker_settings(redis_url: str, namespace: str, *middleware: str) -> dict[str, Any]:
    """``DRAMATIQ_BROKER`` for a RedisBroker in the test's namespace."""
    return {
        "BROKER": "dramatiq.brokers.redis.RedisBroker",
        "OPTIONS": {"url": redis_url, "namespace": namespace + "broker"},
        "MIDDLEWARE": [*MIDDLEWARE, *middleware],
    }


@contextlib.contextmanager
def started_worker(broker: dramatiq.Broker) -> Iterator[dramatiq.Worker]:
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=2)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def test_an_abort_stops_a_message_of_a_django_project_that_lists_abortable_by_its_path(
    django_settings: Any,
    redis_url: str,
    namespace: str,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DRAMATIQ_ABORT_URL", raising=False)
    started, interrupted = threading.Event(), threading.Event()
    with django_project(
        DRAMATIQ_BROKER=redis_broker_settings(redis_url, namespace),
        DRAMATIQ_ABORT={"BACKEND_OPTIONS": {"namespace": namespace}},
    ) as broker:
        middleware = middleware_of(broker, Abortable)
        assert middleware is not None
        # On the broker's Redis, as no BACKEND is given.
        assert isinstance(middleware.backend, RedisBackend)
        assert middleware.backend.namespace == namespace
        assert middleware.backend.client.connection_pool.connection_kwargs["db"] == 15

        @dramatiq.actor(max_retries=0)
        def spin() -> None:
            spin_until_aborted(started.set, interrupted.set)

        with started_worker(broker):
            message = spin.send()
            assert started.wait(WAIT)
            abort(message.message_id)
            assert interrupted.wait(WAIT)
            assert wait_outcome(message.message_id, WAIT) == Outcome.ABORTED


def test_the_setting_configures_the_abortable_that_django_dramatiq_builds(
    django_settings: Any,
) -> None:
    with django_project(
        DRAMATIQ_BROKER={**BASE_SETTINGS["DRAMATIQ_BROKER"], "MIDDLEWARE": MIDDLEWARE},
        DRAMATIQ_ABORT={
            "BACKEND": "memory://",
            "MIDDLEWARE_OPTIONS": {
                "abortable": False,
                "abort_children": True,
                "abort_ttl": 5000,
                "boot_timeout": 0.5,
                "metrics": False,
            },
        },
    ) as broker:
        middleware = middleware_of(broker, Abortable)
        assert middleware is not None and isinstance(middleware.backend, StubBackend)
        assert middleware.abortable is False and middleware.abort_children is True
        assert middleware.abort_ttl == 5000 and middleware.boot_timeout == 0.5
        assert middleware.count_metrics is False


def test_the_arguments_of_django_dramatiqs_middleware_kwargs_win_over_the_setting(
    django_settings: Any,
) -> None:
    from django_dramatiq.apps import DjangoDramatiqConfig

    class ProjectConfig(DjangoDramatiqConfig):  # type: ignore[misc]
        @classmethod
        def middleware_abortable_kwargs(cls) -> dict[str, Any]:
            return {"abort_ttl": 1000, "metrics": None}

    with django_project(
        ProjectConfig,
        DRAMATIQ_BROKER={**BASE_SETTINGS["DRAMATIQ_BROKER"], "MIDDLEWARE": MIDDLEWARE},
        DRAMATIQ_ABORT={
            "BACKEND": "memory://",
            "MIDDLEWARE_OPTIONS": {"abort_ttl": 5000, "metrics": False, "abortable": False},
        },
    ) as broker:
        middleware = middleware_of(broker, Abortable)
        assert middleware is not None
        assert middleware.abort_ttl == 1000 and middleware.count_metrics is None
        assert middleware.abortable is False


def test_compat_task_states_listed_by_its_path_records_a_task_started_then_aborted(
    django_settings: Any, redis_url: str, namespace: str, redis_client: redis.Redis
) -> None:
    with django_project(
        DRAMATIQ_BROKER=redis_broker_settings(
            redis_url, namespace, "dramatiq_abort.compat.TaskStates"
        ),
        DRAMATIQ_ABORT={"BACKEND": redis_url, "BACKEND_OPTIONS": {"namespace": namespace}},
        # django_dramatiq adds Results after the listed middleware.
        DRAMATIQ_RESULT_BACKEND={
            "BACKEND": "tests.support.NamespacedResults",
            "BACKEND_OPTIONS": {"url": redis_url, "namespace": namespace + "results"},
        },
    ) as broker:
        assert middleware_of(broker, TaskStates) is not None

        @dramatiq.actor(
            actor_class=AbortableActor, store_results=True, track_started=True, max_retries=0
        )
        def tracked() -> None:
            spin_until_aborted(lambda: None, lambda: None)

        @dramatiq.actor(actor_class=AbortableActor, store_results=True, max_retries=0)
        def add(a: int, b: int) -> int:
            return a + b

        with started_worker(broker):
            result: Any = tracked.send()
            wait_until(lambda: result.state == STARTED, "the task reads STARTED")
            result.abort(timeout=0)
            wait_until(lambda: result.state == ABORTED, "the task reads ABORTED")
            # Results comes after TaskStates here, and still stores first.
            total: Any = add.send(2, 3)
            assert total.get(timeout=WAIT) == 5 and total.state == SUCCESS


def test_a_redis_broker_with_a_namespace_of_its_own_needs_one_for_the_aborts(
    django_settings: Any, redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DRAMATIQ_ABORT_URL", raising=False)
    with (
        pytest.raises(ValueError) as refused,
        django_project(DRAMATIQ_BROKER=redis_broker_settings(redis_url, namespace)),
    ):
        pass
    assert "DRAMATIQ_BROKER['OPTIONS'] gives the broker the namespace" in str(refused.value)
    assert f"'namespace': '{namespace}broker:aborts:'" in str(refused.value)


def test_a_redis_broker_with_the_default_namespace_lends_its_redis_to_the_aborts(
    django_settings: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.test import override_settings

    monkeypatch.delenv("DRAMATIQ_ABORT_URL", raising=False)
    broker = {
        "BROKER": "dramatiq.brokers.redis.RedisBroker",
        "OPTIONS": {"url": redis_url},
        "MIDDLEWARE": [],
    }
    with override_settings(DRAMATIQ_BROKER=broker):
        backend = Abortable().backend
    assert isinstance(backend, RedisBackend) and backend.namespace == "dramatiq:aborts:"
    assert backend.client.connection_pool.connection_kwargs["db"] == 15
    backend.client.close()


def test_a_broker_other_than_redis_lends_nothing_to_the_aborts(
    django_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.test import override_settings

    monkeypatch.delenv("DRAMATIQ_ABORT_URL", raising=False)
    broker = {
        "BROKER": "dramatiq.brokers.rabbitmq.RabbitmqBroker",
        "OPTIONS": {"url": "amqp://guest:guest@127.0.0.1:5672"},
        "MIDDLEWARE": [],
    }
    with override_settings(DRAMATIQ_BROKER=broker), pytest.raises(TypeError) as refused:
        Abortable()
    assert "nothing configures one" in str(refused.value)


def test_the_environment_variable_wins_over_the_brokers_redis_and_the_setting_over_both(
    django_settings: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.test import override_settings

    broker = {
        "BROKER": "dramatiq.brokers.redis.RedisBroker",
        "OPTIONS": {"url": redis_url},
        "MIDDLEWARE": [],
    }
    monkeypatch.setenv("DRAMATIQ_ABORT_URL", "memory://")
    with override_settings(DRAMATIQ_BROKER=broker):
        assert isinstance(Abortable().backend, StubBackend)
    monkeypatch.setenv("DRAMATIQ_ABORT_URL", "redis://127.0.0.1:6379/0")
    with override_settings(DRAMATIQ_BROKER=broker, DRAMATIQ_ABORT={"BACKEND": "memory://"}):
        assert isinstance(Abortable().backend, StubBackend)


@pytest.mark.parametrize(
    ("setting", "error", "words"),
    [
        ("redis://localhost:6379/0", TypeError, "DRAMATIQ_ABORT must be a dict such as"),
        ({"OPTIONS": {}}, ValueError, "DRAMATIQ_ABORT has the unknown key 'OPTIONS'"),
        ({"BACKEND": 6379}, TypeError, "DRAMATIQ_ABORT['BACKEND'] must be the backend's URL"),
        ({"BACKEND": " "}, ValueError, "DRAMATIQ_ABORT['BACKEND'] is empty"),
        (
            {"BACKEND": "dramatiq_abort.backends.RedisBackend"},
            ValueError,
            "DRAMATIQ_ABORT['BACKEND'] must be the backend's URL, such as"
            " 'redis://localhost:6379/0', not 'dramatiq_abort.backends.RedisBackend'",
        ),
        (
            {"BACKEND": "amqp://localhost:5672"},
            ValueError,
            "no abort backend can be built from DRAMATIQ_ABORT['BACKEND'] ="
            " 'amqp://localhost:5672': the backend URL must start with one of",
        ),
        (
            {"BACKEND": "memory://", "BACKEND_OPTIONS": ["namespace"]},
            TypeError,
            "DRAMATIQ_ABORT['BACKEND_OPTIONS'] must be a dict of keyword arguments",
        ),
        (
            {"BACKEND": "redis://localhost/0", "BACKEND_OPTIONS": {"namespac": "x"}},
            TypeError,
            "DRAMATIQ_ABORT['BACKEND_OPTIONS']: RedisBackend.__init__() got an unexpected"
            " keyword argument 'namespac'",
        ),
        (
            {"BACKEND": "redis://localhost/0", "BACKEND_OPTIONS": {"namespace": ""}},
            ValueError,
            "DRAMATIQ_ABORT['BACKEND_OPTIONS']: namespace must be a non-empty str",
        ),
        (
            {"BACKEND": "memory://", "MIDDLEWARE_OPTIONS": {"ttl": 1000}},
            ValueError,
            "DRAMATIQ_ABORT['MIDDLEWARE_OPTIONS'] has the unknown key 'ttl': the keys are"
            " abortable, abort_children, abort_ttl, boot_timeout, metrics",
        ),
        (
            {"BACKEND": "memory://", "MIDDLEWARE_OPTIONS": {"abortable": "false"}},
            TypeError,
            "DRAMATIQ_ABORT['MIDDLEWARE_OPTIONS']['abortable'] must be True or False, not 'false'",
        ),
        (
            {"BACKEND": "memory://", "MIDDLEWARE_OPTIONS": {"abort_ttl": 0}},
            ValueError,
            "DRAMATIQ_ABORT['MIDDLEWARE_OPTIONS']['abort_ttl'] must be greater than 0, not 0",
        ),
        (
            {"BACKEND": "memory://", "MIDDLEWARE_OPTIONS": {"boot_timeout": -1}},
            ValueError,
            "DRAMATIQ_ABORT['MIDDLEWARE_OPTIONS']['boot_timeout'] must be finite and 0 or more",
        ),
        (
            {"BACKEND": "memory://", "MIDDLEWARE_OPTIONS": {"metrics": "yes"}},
            TypeError,
            "DRAMATIQ_ABORT['MIDDLEWARE_OPTIONS']['metrics'] must be True, False or None",
        ),
    ],
)
def test_each_bad_setting_is_refused_naming_its_key_and_value(
    django_settings: Any, setting: object, error: type[Exception], words: str
) -> None:
    from django.test import override_settings

    with override_settings(DRAMATIQ_ABORT=setting), pytest.raises(error) as refused:
        Abortable()
    assert words in str(refused.value)


def test_a_refused_setting_never_shows_the_urls_password(django_settings: Any) -> None:
    from django.test import override_settings

    for setting in (
        "redis://:s3cret@localhost:6379/0",
        {"BACKEND": "redis://user:s3cret@localhost:6379/zero"},
        {"BACKEND": "amqp://user:s3cret@localhost:5672"},
        {"BACKEND": "user:s3cret@localhost:6379"},
        {"BACKEND": "redis://localhost:6379/0?password=s3cret", "BACKEND_OPTIONS": {"x": 1}},
    ):
        refusal = pytest.raises((TypeError, ValueError))
        with override_settings(DRAMATIQ_ABORT=setting), refusal as refused:
            Abortable()
        assert "s3cret" not in str(refused.value) and "DRAMATIQ_ABORT" in str(refused.value)
        assert "s3cret" not in repr(refused.value.__cause__)


def test_every_setting_is_checked_before_the_backend_is_built(django_settings: Any) -> None:
    from django.test import override_settings

    # A cluster client connects as it is built: here it would fail to.
    unreachable = "redis://127.0.0.1:1/0?cluster=true"
    setting = {"BACKEND": unreachable, "MIDDLEWARE_OPTIONS": {"abort_ttl": -1}}
    with override_settings(DRAMATIQ_ABORT=setting), pytest.raises(ValueError, match="abort_ttl"):
        Abortable()
    built = override_settings(DRAMATIQ_ABORT={**setting, "MIDDLEWARE_OPTIONS": {}})
    with built, pytest.raises(redis.RedisError):
        Abortable()


def test_with_a_backend_given_no_setting_is_read(django_settings: Any) -> None:
    from django.test import override_settings

    backend = StubBackend()
    with override_settings(DRAMATIQ_ABORT={"BACKEND": 1, "MIDDLEWARE_OPTIONS": {"abort_ttl": 5}}):
        middleware = Abortable(backend=backend)
    assert middleware.backend is backend and middleware.abort_ttl == 90_000


@pytest.mark.processes
def test_a_worker_of_rundramatiq_runs_a_message_that_an_abort_stops(
    redis_url: str, namespace: str, redis_client: redis.Redis
) -> None:
    try:
        import django_dramatiq  # noqa: F401
    except ImportError as e:
        unavailable(f"django-dramatiq is not installed (pip install -e '.[dev]'): {e}")
    queue = f"abort_test_{uuid.uuid4().hex[:12]}"
    env = {
        **{name: value for name, value in os.environ.items() if name != "DRAMATIQ_ABORT_URL"},
        "DJANGO_SETTINGS_MODULE": "tests.programs.django_project.settings",
        "APP_REDIS_URL": redis_url,
        "APP_NAMESPACE": namespace,
        "APP_QUEUE": queue,
        "PYTHONPATH": str(ROOT),
    }
    require_mark("processes")
    with contextlib.ExitStack() as cleanup:
        command = subprocess.Popen(
            [sys.executable, "-m", "django", "rundramatiq", "--processes", "1", "--threads", "2"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        cleanup.callback(stop_process_group, command)
        # This process sends and aborts as a producer without Django would.
        broker = RedisBroker(url=redis_url, namespace=namespace + "broker")
        cleanup.callback(broker.close)
        middleware = Abortable(backend=RedisBackend.from_url(redis_url, namespace=namespace))
        broker.add_middleware(middleware)
        # The actor of tests/programs/django_project/tasks.py, as a producer declares it.
        spin: dramatiq.Actor[[str], None] = dramatiq.Actor(
            lambda token: None,
            broker=broker,
            actor_name="spin",
            queue_name=queue,
            priority=0,
            options={},
        )
        token = uuid.uuid4().hex
        message = spin.send(token)
        report = f"{namespace}report:{token}"
        # The first message waits for the command to start its worker.
        assert redis_client.blpop([report], WAIT * 3)[1] == b"started"  # type: ignore[index]
        abort(message.message_id, middleware=middleware)
        assert redis_client.blpop([report], WAIT)[1] == b"aborted"  # type: ignore[index]
        assert wait_outcome(message.message_id, WAIT, middleware=middleware) == Outcome.ABORTED
