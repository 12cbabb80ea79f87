"""A Celery project's ``celery.py`` and ``tasks.py``, written as for Celery
with only ``from celery import Celery`` changed, run by a dramatiq worker
on ``memory://`` and on Redis; and the arguments ``Celery()`` refuses."""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.results import ResultMissing, Results

from compat import Celery, states
from compat.contrib.abortable import ABORTED, AbortableTask
from compat.exceptions import Ignore
from compat.result import AsyncResult

from ..support import QUEUED_FOR, RABBITMQ_URL, WAIT, require_rabbitmq, wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["memory", "redis", "rabbitmq"])
def app(request: pytest.FixtureRequest) -> Iterator[Celery]:
    """The project's ``celery.py``, served by a running worker. On Redis
    every key is under the test's namespace, deleted afterwards; on
    RabbitMQ the tasks go to a queue of the test's own, deleted afterwards."""
    if request.param == "memory":
        app = Celery("proj", broker="memory://", backend="memory://")
    else:
        url = request.getfixturevalue("redis_url")
        request.getfixturevalue("redis_client")  # deletes the namespace last
        prefix = request.getfixturevalue("namespace")
        broker = url
        if request.param == "rabbitmq":
            require_rabbitmq()
            # As Celery writes it: py-amqp's scheme, and // for the virtual host /.
            broker = RABBITMQ_URL.replace("amqp://", "pyamqp://", 1)
            broker += "" if urllib.parse.urlsplit(broker).path else "//"
        app = Celery(
            "proj",
            broker=broker,
            backend=url,
            broker_transport_options={"global_keyprefix": prefix},
        )
    queue = f"dramatiq-abort-test-{uuid.uuid4().hex}"
    app.conf.update(task_track_started=True, task_default_queue=queue)
    app.broker.emit_after("process_boot")
    worker = dramatiq.Worker(app.broker, worker_timeout=100, worker_threads=4)
    worker.start()
    try:
        yield app
    finally:
        worker.stop()
        if isinstance(app.broker, RabbitmqBroker):
            for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
                app.broker.channel.queue_delete(name)
        app.broker.close()


def test_a_view_aborts_a_bound_abortable_task_through_app_async_result(app: Celery) -> None:
    started = threading.Event()

    @app.task(bind=True, base=AbortableTask)
    def export(self: Any) -> None:
        started.set()
        while not self.is_aborted():
            time.sleep(0.001)
        self.update_state(state=ABORTED, meta={"done": True})
        raise Ignore()

    task_id = export.delay().id
    assert started.wait(WAIT)
    app.AsyncResult(task_id).abort()  # the view has only the id
    result = app.AsyncResult(task_id)
    wait_until(result.ready, "the task is over")
    assert result.state == ABORTED and result.info == {"done": True}


def test_send_task_runs_a_task_by_its_name_and_get_returns_its_value(app: Celery) -> None:
    @app.task(name="proj.tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    task_id = str(uuid.uuid4())
    result = app.send_task("proj.tasks.add", (2, 3), task_id=task_id)
    assert result.id == task_id
    assert result.get(timeout=WAIT) == 5
    assert AsyncResult(task_id, app=app).state == states.SUCCESS


def test_control_revoke_with_terminate_stops_a_running_task(app: Celery) -> None:
    started = threading.Event()

    @app.task
    def crunch() -> str:
        started.set()
        while True:
            time.sleep(0.001)

    result = crunch.delay()
    assert started.wait(WAIT)
    app.control.revoke(result.id, terminate=True)
    wait_until(result.ready, "the task is over")
    assert not result.successful()


def test_control_revoke_of_a_list_keeps_every_queued_task_from_running(app: Celery) -> None:
    ran: list[int] = []

    @app.task
    def send_reminder(user_id: int) -> None:
        ran.append(user_id)

    results = [send_reminder.apply_async((n,), countdown=QUEUED_FOR / 1000) for n in range(3)]
    app.control.revoke([result.id for result in results])
    assert [result.state for result in results] == [states.REVOKED] * 3
    # Due after the others: once it ran, a revoked task would have run too.
    send_reminder.apply_async((99,), countdown=QUEUED_FOR / 1000 + 0.1).get(timeout=WAIT)
    assert ran == [99]


def test_inspect_shows_what_each_worker_runs_reserves_and_schedules_as_celery_does(
    app: Celery,
) -> None:
    release = threading.Event()
    started: list[int] = []

    @app.task
    def export(number: int) -> None:
        started.append(number)
        release.wait(WAIT)

    try:
        # The worker has four threads, and fetches more messages than that.
        running = [export.delay(number) for number in range(4)]
        wait_until(lambda: len(started) == 4, "four tasks run")
        reserved = export.delay(4)
        scheduled = export.apply_async((5,), countdown=60)
        inspect = app.control.inspect()

        def ids(replies: dict[str, Any] | None, key: str | None = None) -> set[str]:
            tasks = [t for listed in (replies or {}).values() for t in listed]
            return {(task[key] if key else task)["id"] for task in tasks}

        wait_until(
            lambda: (
                ids(inspect.reserved()) == {reserved.id}
                and ids(inspect.scheduled(), "request") == {scheduled.id}
            ),
            "the worker holds the reserved and the scheduled task",
        )
        node = f"{socket.gethostname()}:{os.getpid()}"
        active = inspect.active()
        assert active is not None and list(active) == [node]
        assert {task["id"] for task in active[node]} == {result.id for result in running}
        task = next(task for task in active[node] if task["id"] == running[0].id)
        assert (task["name"], task["args"], task["hostname"]) == (export.name, "0", node)
        assert export.name == "tests.compat.test_app.export"
        assert task["worker_pid"] == os.getpid() and isinstance(task["time_start"], float)
        (entry,) = inspect.scheduled()[node]  # type: ignore[index]
        due = datetime.datetime.fromisoformat(entry["eta"])
        assert 0 < (due - datetime.datetime.now(datetime.timezone.utc)).total_seconds() <= 60
        assert inspect.query_task(reserved.id) == {
            node: {reserved.id: ["reserved", inspect.reserved()[node][0]]}  # type: ignore[index]
        }
        assert inspect.ping() == {node: {"ok": "pong"}}
        assert app.control.ping() == [{node: {"ok": "pong"}}]
        # One destination: its reply alone; a list: the replies of those named.
        only = app.control.inspect(destination=node).active()
        assert isinstance(only, list) and len(only) == 4
        assert app.control.inspect(destination=["nobody:1"]).active() == {}
    finally:
        app.control.revoke([r.id for r in [*running, reserved, scheduled]], terminate=True)
        release.set()


def test_inspect_returns_none_when_no_worker_answers() -> None:
    app = Celery("proj", broker="memory://")
    assert app.control.inspect(timeout=0.1).active() is None
    assert app.control.ping(timeout=0.1) == []


def test_task_track_started_in_conf_makes_a_running_task_read_started(app: Celery) -> None:
    started, release = threading.Event(), threading.Event()

    @app.task
    def report() -> str:
        started.set()
        release.wait(WAIT)
        return "done"

    result = report.delay()
    try:
        assert started.wait(WAIT)
        assert result.state == states.STARTED
    finally:
        release.set()
    assert result.get(timeout=WAIT) == "done"


def test_task_ignore_result_in_conf_keeps_no_result(app: Celery) -> None:
    app.conf.task_ignore_result = True

    @app.task
    def ping() -> str:
        return "pong"

    @app.task(ignore_result=False)  # the decorator's option wins
    def echo(text: str) -> str:
        return text

    assert ping.options["store_results"] is False
    assert ping.queue_name == app.conf.task_default_queue
    ignored = ping.delay()
    assert echo.delay("kept").get(timeout=WAIT) == "kept"
    app.broker.join(ping.queue_name, timeout=int(WAIT * 1000))
    with pytest.raises(ResultMissing):
        results_of(app).backend.get_result(ignored.message)


@contextlib.contextmanager
def redis_app(redis_url: str, namespace: str) -> Iterator[Celery]:
    """A Celery app on Redis with every key under ``namespace``, served by
    a one-thread worker until the block ends."""
    app = Celery(
        "proj",
        broker=redis_url,
        backend=redis_url,
        broker_transport_options={"global_keyprefix": namespace},
    )
    with contextlib.ExitStack() as teardown:
        teardown.callback(app.broker.close)
        app.broker.emit_after("process_boot")
        worker = dramatiq.Worker(app.broker, worker_timeout=100, worker_threads=1)
        worker.start()
        teardown.callback(worker.stop)
        yield app


def results_of(app: Celery) -> Results:
    """The Results middleware the app added."""
    return next(m for m in app.broker.middleware if isinstance(m, Results))


def test_every_redis_key_of_the_app_is_under_global_keyprefix(
    redis_url: str, namespace: str, redis_client: redis.Redis
) -> None:
    with redis_app(redis_url, namespace) as app:

        @app.task(bind=True, base=AbortableTask)
        def add(self: Any, x: int, y: int) -> int:
            return x + y

        result = add.delay(2, 3)
        assert result.get(timeout=WAIT) == 5
        app.AsyncResult(result.id).abort()
        result_key = results_of(app).backend.build_message_key(result.message)
        assert result_key.startswith(namespace) and redis_client.exists(result_key)
        keys = [key.decode() for key in redis_client.scan_iter(match=namespace + "*")]
        assert any(key.startswith(namespace + "dramatiq:aborts:") for key in keys)
        assert any(key.startswith(namespace + "dramatiq:") and "aborts" not in key for key in keys)


def test_results_live_as_long_as_result_expires_says_a_day_by_default(
    redis_url: str, namespace: str, redis_client: redis.Redis
) -> None:
    with redis_app(redis_url, namespace) as app:

        @app.task
        def add(x: int, y: int) -> int:
            return x + y

        kept_a_day = add.delay(1, 2)
        assert kept_a_day.get(timeout=WAIT) == 3
        app.conf.update(result_expires=datetime.timedelta(minutes=30))
        kept_half_an_hour = add.delay(3, 4)
        assert kept_half_an_hour.get(timeout=WAIT) == 7
        for result, seconds in ((kept_a_day, 86_400), (kept_half_an_hour, 1_800)):
            key = results_of(app).backend.build_message_key(result.message)
            assert seconds - 60 < redis_client.pttl(key) / 1000 <= seconds


@pytest.mark.parametrize("expires", [None, 0, -1, "1h", float("inf")])
def test_result_expires_must_be_a_time_results_can_live(expires: object) -> None:
    with pytest.raises((TypeError, ValueError), match="result_expires must be"):
        Celery("proj", broker="memory://", backend="memory://", result_expires=expires)
    app = Celery("proj", broker="memory://", backend="memory://")
    with pytest.raises((TypeError, ValueError), match="result_expires must be"):
        app.conf.update(result_expires=expires)


def test_without_a_backend_get_says_that_results_are_off() -> None:
    app = Celery("proj", broker="memory://")

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(RuntimeError, match="results are off"):
        app.AsyncResult(add.send(1, 2).id).get(timeout=WAIT)


def test_config_from_object_reads_the_settings_of_its_namespace() -> None:
    class Settings:
        CELERY_TASK_TRACK_STARTED = True
        CELERY_TASK_IGNORE_RESULT = True
        DEBUG = True

    app = Celery("proj", broker="memory://", backend="memory://")
    app.config_from_object(Settings, namespace="CELERY")
    assert app.conf.task_track_started is True and "debug" not in app.conf

    @app.task
    def ping() -> None: ...

    assert ping.options["store_results"] is False


def test_a_broker_url_set_after_the_app_is_built_is_refused() -> None:
    class Settings:
        CELERY_BROKER_URL = "redis://:secret@localhost:6379/0"

    app = Celery("proj", broker="memory://", backend="memory://")
    with pytest.raises(ValueError, match=r"^broker_url .*Celery\(broker=\.\.\.") as refused:
        app.config_from_object(Settings, namespace="CELERY")
    assert "secret" not in str(refused.value)
    with pytest.raises(ValueError, match=r"^result_backend "):
        app.conf.update(result_backend="redis://localhost:6379/0")
    app.conf.update(broker_url="memory://")  # the same URL again changes nothing
    assert app.conf.broker_url == "memory://"


def test_autodiscover_tasks_imports_the_tasks_module_of_each_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = f"proj_{uuid.uuid4().hex}"
    (tmp_path / project / "orders").mkdir(parents=True)
    (tmp_path / project / "users").mkdir()  # a package without tasks
    for path in ("", "/orders", "/users"):
        (tmp_path / f"{project}{path}/__init__.py").write_text("")
    (tmp_path / project / "orders" / "tasks.py").write_text("DECLARED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    app = Celery("proj", broker="memory://", backend="memory://")
    try:
        app.autodiscover_tasks([f"{project}.orders", f"{project}.users"])
        assert sys.modules[f"{project}.orders.tasks"].DECLARED
    finally:
        for name in [name for name in sys.modules if name.startswith(project)]:
            del sys.modules[name]
    with pytest.raises(TypeError, match=r"autodiscover_tasks\(\['proj'\]\)"):
        app.autodiscover_tasks()


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"broker": "sqs://key:secret@queue"}, ValueError, r"broker='sqs://\.\.\.'.*'redis://'"),
        ({"broker": "memory://", "backend": "rpc://"}, ValueError, r"backend='rpc://\.\.\.'"),
        ({"broker": "amqp://guest:secret@host//"}, ValueError, r"backend='redis://host:6379/0'"),
        ({"broker": "memory://", "backend": "redis://:secret@host/x"}, ValueError, "database"),
        ({"broker": "memory://", "worker_prefetch": 1}, TypeError, r"\['worker_prefetch'\]"),
        (
            {"broker": "memory://", "broker_transport_options": {"visibility_timeout": 1}},
            TypeError,
            r"\['visibility_timeout'\]",
        ),
        ({"broker": 6379}, ValueError, r"broker=6379"),
        ({"broker": "guest:secret@host"}, ValueError, r"broker \(a URL without a scheme\)"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_built(
    stub_broker: StubBroker, arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as refused:
        Celery("proj", **arguments)
    assert "secret" not in str(refused.value)  # URLs may hold passwords
    assert dramatiq.get_broker() is stub_broker


def test_options_that_mean_nothing_here_are_accepted_and_task_default_queue_is_honoured() -> None:
    app = Celery("proj", broker="memory://", include=["proj.tasks"], task_default_queue="reports")
    assert app.conf.include == ["proj.tasks"]
    assert dramatiq.get_broker() is app.broker
    # A task declared in another process goes to the default queue.
    app.broker.declare_queue("reports")  # the stub broker wants it declared
    assert app.send_task("proj.reports.build").queue_name == "reports"


def test_a_base_class_attribute_that_is_no_task_option_leaves_the_app_default_in_force() -> None:
    class Routed(AbortableTask):
        queue = "elsewhere"  # not an option shared_task reads from a base

    app = Celery("proj", broker="memory://", task_default_queue="reports")

    @app.task(base=Routed)
    def build() -> None: ...

    assert build.queue_name == "reports"
