"""Prometheus metrics of aborts: what workers count in this process's
default registry, what dramatiq's ``Prometheus`` middleware exposes for
several ``dramatiq`` worker processes, and the package without prometheus_client."""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.stub import StubBroker
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from dramatiq_abort import Abortable, AbortMode, EventBackend, abort, abort_many, abort_requested
from dramatiq_abort.backends import RedisBackend, StubBackend

from ..support import (
    ROOT,
    WAIT,
    App,
    PrivateRedis,
    connected_watcher,
    free_port,
    require_mark,
    spin_until_aborted,
    start_worker,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)

REQUESTS = "dramatiq_abort_requests_total"
OUTCOMES = "dramatiq_abort_outcomes_total"
INTERRUPT_COUNT = "dramatiq_abort_interrupt_seconds_count"
INTERRUPT_SUM = "dramatiq_abort_interrupt_seconds_sum"


def sample(name: str, **labels: str) -> float:
    """The value of a series in this process's default registry; 0 before it is first counted."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Counts:
    """The abort series of one actor, read before a test acts, so that the
    test checks what it added to counters the whole process shares."""

    def __init__(self, actor_name: str) -> None:
        self.actor_name = actor_name
        self.before = self.read()

    def read(self) -> dict[str, float]:
        values = {f"requests:{mode.value}": sample(REQUESTS, mode=mode.value) for mode in AbortMode}
        for outcome in ("cancelled", "aborted", "stopped", "finished"):
            values[outcome] = sample(OUTCOMES, actor_name=self.actor_name, outcome=outcome)
        values["interrupts"] = sample(INTERRUPT_COUNT)
        values["interrupt_seconds"] = sample(INTERRUPT_SUM)
        return values

    def added(self) -> dict[str, float]:
        """What was counted since this was made, the series that did not change left out."""
        after = self.read()
        return {
            name: after[name] - self.before[name]
            for name in after
            if after[name] != self.before[name]
        }


def abort_a_running_message(broker: StubBroker, worker: dramatiq.Worker) -> dict[str, float]:
    """Abort a message of a new actor while ``worker`` runs it; what that counted."""
    started = threading.Event()

    @dramatiq.actor(actor_name=new_actor_name(), max_retries=0)
    def job() -> None:
        spin_until_aborted(started.set, lambda: None)

    counts = Counts(job.actor_name)
    message = job.send()
    assert started.wait(WAIT)
    abort(message.message_id)
    broker.join(job.queue_name)
    worker.join()
    return counts.added()


@pytest.fixture
def counting_worker(
    stub_broker: StubBroker, event_backend: EventBackend
) -> Iterator[dramatiq.Worker]:
    """A worker whose Abortable counts metrics, on each event backend."""
    stub_broker.add_middleware(Abortable(backend=event_backend, metrics=True))
    worker = dramatiq.Worker(stub_broker, worker_timeout=100, worker_threads=2)
    worker.start()
    yield worker
    worker.stop()


def new_actor_name() -> str:
    return f"metrics_{uuid.uuid4().hex[:12]}"


def test_a_cancel_counts_one_cancel_request_and_one_cancelled_message(
    stub_broker: StubBroker, counting_worker: dramatiq.Worker
) -> None:
    ran = []

    @dramatiq.actor(actor_name=new_actor_name())
    def job() -> None:
        ran.append(True)

    counts = Counts(job.actor_name)
    message = job.message()
    abort(message.message_id, mode=AbortMode.CANCEL)
    stub_broker.enqueue(message)
    stub_broker.join(job.queue_name)
    counting_worker.join()

    assert ran == []
    assert counts.added() == {"requests:cancel": 1, "cancelled": 1}


def test_a_cancel_found_by_polling_a_backend_that_does_not_push_is_counted(
    stub_broker: StubBroker,
) -> None:
    class Polled(StubBackend):
        pushes = False

    ran = []

    @dramatiq.actor(actor_name=new_actor_name())
    def job() -> None:
        ran.append(True)

    worker = start_worker(stub_broker, Abortable(backend=Polled(), metrics=True))
    try:
        counts = Counts(job.actor_name)
        message = job.message()
        abort(message.message_id, mode=AbortMode.CANCEL)
        stub_broker.enqueue(message)
        stub_broker.join(job.queue_name)
        worker.join()
    finally:
        worker.stop()

    assert ran == []
    assert counts.added() == {"requests:cancel": 1, "cancelled": 1}


def test_an_abort_counts_one_abort_request_one_aborted_message_and_its_interrupt_time(
    stub_broker: StubBroker, counting_worker: dramatiq.Worker
) -> None:
    added = abort_a_running_message(stub_broker, counting_worker)
    # One request, though it travels as a cancel and an abort event.
    assert added.pop("requests:abort") == 1
    assert added.pop("aborted") == 1
    assert added.pop("interrupts") == 1
    assert 0 < added.pop("interrupt_seconds") < WAIT
    assert added == {}


def test_a_message_that_stops_when_told_counts_as_stopped_and_not_as_interrupted(
    stub_broker: StubBroker, counting_worker: dramatiq.Worker
) -> None:
    started = threading.Event()

    @dramatiq.actor(actor_name=new_actor_name())
    def job() -> None:
        started.set()
        wait_until(lambda: abort_requested() is not None, "the actor is told of the abort")

    counts = Counts(job.actor_name)
    message = job.send()
    assert started.wait(WAIT)
    abort(message.message_id, abort_timeout=math.inf)
    stub_broker.join(job.queue_name)
    counting_worker.join()

    assert counts.added() == {"requests:abort": 1, "stopped": 1}


def test_a_message_that_finishes_within_its_grace_counts_as_finished(
    stub_broker: StubBroker, counting_worker: dramatiq.Worker
) -> None:
    started, release = threading.Event(), threading.Event()

    @dramatiq.actor(actor_name=new_actor_name())
    def job() -> None:
        started.set()
        assert release.wait(WAIT)

    counts = Counts(job.actor_name)
    message = job.send()
    assert started.wait(WAIT)
    # Once abort() returns, the worker of this process has the request.
    abort(message.message_id, abort_timeout=math.inf)
    release.set()
    stub_broker.join(job.queue_name)
    counting_worker.join()

    assert counts.added() == {"requests:abort": 1, "finished": 1}


@pytest.mark.servers
def test_a_watcher_that_catches_up_after_reconnecting_counts_only_the_requests_it_missed(
    stub_broker: StubBroker,
    private_redis: PrivateRedis,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="dramatiq_abort")
    client = redis.Redis.from_url(private_redis.url)
    admin = redis.Redis.from_url(private_redis.url)
    middleware = Abortable(backend=RedisBackend(client=client, namespace=namespace), metrics=True)
    worker = start_worker(stub_broker, middleware)
    try:
        connected_watcher(middleware)
        counts = Counts(new_actor_name())
        abort("held-before", middleware=middleware, mode=AbortMode.CANCEL)
        assert counts.added() == {"requests:cancel": 1}

        admin.client_kill_filter(_type="pubsub")
        # Whether it lands before the watcher reconnects or after, it is counted once.
        abort("sent-meanwhile", middleware=middleware)
        wait_until(
            lambda: any("reached its backend again" in r.getMessage() for r in caplog.records),
            "the watcher reconnects and catches up",
        )
        wait_until(lambda: "requests:abort" in counts.added(), "the abort is counted")
        assert counts.added() == {"requests:cancel": 1, "requests:abort": 1}
    finally:
        worker.stop()
        admin.close()
        client.close()


def test_a_worker_without_prometheus_counts_nothing_unless_asked(stub_broker: StubBroker) -> None:
    stub_broker.add_middleware(Abortable(backend=StubBackend()))
    worker = dramatiq.Worker(stub_broker, worker_timeout=100, worker_threads=2)
    worker.start()
    try:
        assert abort_a_running_message(stub_broker, worker) == {}
    finally:
        worker.stop()


def test_metrics_must_be_true_false_or_none() -> None:
    with pytest.raises(TypeError, match="metrics must be True, False or None, not 'yes'"):
        Abortable(backend=StubBackend(), metrics="yes")  # type: ignore[arg-type]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter from the project's root."""
    require_mark("processes")
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT * 3,
    )


#: Aborts a running message on a stub broker, in a fresh interpreter.
ABORT_ONE = """
import threading
import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq_abort import Abortable, Outcome, abort
from dramatiq_abort.backends import StubBackend
from tests.support import WAIT, spin_until_aborted

broker = StubBroker()
broker.emit_after("process_boot")
dramatiq.set_broker(broker)
middleware = Abortable(backend=StubBackend())
broker.add_middleware(middleware)
started = threading.Event()

@dramatiq.actor(max_retries=0)
def job():
    spin_until_aborted(started.set, lambda: None)

worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=1)
worker.start()
message = job.send()
assert started.wait(WAIT)
abort(message.message_id)
assert middleware.wait_outcome(message.message_id, WAIT) is Outcome.ABORTED
worker.stop()
"""


@pytest.mark.processes
def test_the_package_works_without_prometheus_client_and_says_what_to_install_for_metrics() -> None:
    hidden = "import sys\nsys.modules['prometheus_client'] = None\n"
    asks_for_metrics = """
try:
    Abortable(backend=StubBackend(), metrics=True)
except ImportError as e:
    print(e)
"""
    finished = run_python(hidden + ABORT_ONE + asks_for_metrics)
    assert finished.returncode == 0, finished.stderr
    assert "pip install 'dramatiq-abort[metrics]'" in finished.stdout


@pytest.mark.processes
def test_no_prometheus_client_import_before_a_worker_counts_metrics() -> None:
    # prometheus_client decides on import whether it writes the files that
    # Prometheus sums across processes: importing it any earlier would keep
    # dramatiq's metrics and these in one process.
    finished = run_python(
        "import sys\n" + ABORT_ONE + "assert 'prometheus_client' not in sys.modules\n"
    )
    assert finished.returncode == 0, finished.stderr


@pytest.mark.processes
def test_a_prometheus_that_did_not_set_up_its_directory_is_reported_at_boot(
    tmp_path: Path,
) -> None:
    # Prometheus sets its directory up as the process boots, which this
    # worker, started by hand, skips.
    directory = tmp_path / "prometheus"
    code = f"""
import os
os.environ["dramatiq_prom_db"] = {str(directory)!r}
import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware.prometheus import Prometheus
from prometheus_client import REGISTRY
from dramatiq_abort import Abortable
from dramatiq_abort.backends import StubBackend

broker = StubBroker()
broker.add_middleware(Prometheus())
middleware = Abortable(backend=StubBackend())
broker.add_middleware(middleware)
worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=1)
worker.start()
worker.stop()
assert middleware.metrics is not None and middleware.metrics.registry is REGISTRY
"""
    try:
        finished = run_python(code)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    assert finished.returncode == 0, finished.stderr
    assert "Prometheus did not set PROMETHEUS_MULTIPROC_DIR" in finished.stderr
    assert "Abort metrics go to prometheus_client's default registry" in finished.stderr


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples an exposition serves at ``url``, by name and labels; empty
    while it does not answer yet."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return {}
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def prometheus_app(
    redis_url: str, namespace: str, redis_client: redis.Redis, tmp_path: Path
) -> Iterator[tuple[App, str]]:
    """Two ``dramatiq`` worker processes of one thread each, with dramatiq's
    Prometheus middleware, and the address of its exposition."""
    port = free_port()
    directory = tmp_path / "prometheus"
    env = {
        "APP_PROMETHEUS": "1",
        "dramatiq_prom_db": str(directory),
        "dramatiq_prom_host": "127.0.0.1",
        "dramatiq_prom_port": str(port),
        # One message per process at a time: two messages run in both.
        "dramatiq_queue_prefetch": "1",
    }
    app = App("redis", redis_url, namespace, processes=2, threads=1, env=env)
    try:
        yield app, f"http://127.0.0.1:{port}/metrics"
    finally:
        app.close()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.processes
def test_prometheus_exposes_the_sum_over_every_worker_process(
    prometheus_app: tuple[App, str],
) -> None:
    app, url = prometheus_app
    sent = [app.send("spin") for _ in range(2)]
    pids = set()
    for token, _ in sent:
        reported = app.report_and_pid(token, timeout=60)
        assert reported is not None and reported[0] == "started"
        pids.add(reported[1])
    assert len(pids) == 2, "both worker processes run a message"

    abort_many([message for _, message in sent], middleware=app.middleware)
    for token, _ in sent:
        assert app.report(token) == "aborted"

    expected: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {
        # Each of the two processes received both requests.
        (REQUESTS, (("mode", "abort"),)): 4.0,
        (OUTCOMES, (("actor_name", "work"), ("outcome", "aborted"))): 2.0,
        (INTERRUPT_COUNT, ()): 2.0,
    }

    def shown() -> bool:
        samples = scrape(url)
        return all(samples.get(key) == value for key, value in expected.items())

    wait_until(shown, f"the exposition shows {expected}")
