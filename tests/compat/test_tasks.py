"""The Celery idioms around the abortable part: progress, states, caller
ids, retries, hooks, on RedisBroker and RabbitMQ with Results on Redis."""

from __future__ import annotations

import builtins
import contextlib
import datetime
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name, xq_name
from dramatiq.middleware import Middleware
from dramatiq.results import Results
from dramatiq.results.backends import StubBackend as StubResults

from compat import (
    ABORTED,
    PENDING,
    RETRY,
    STARTED,
    SUCCESS,
    AbortableAsyncResult,
    AbortableTask,
    Ignore,
    MaxRetriesExceededError,
    TaskAborted,
    TaskStates,
    shared_task,
    states,
)
from compat.exceptions import TimeoutError as CeleryTimeoutError
from dramatiq_abort import Abortable
from dramatiq_abort.backends import RedisBackend, StubBackend

from ..support import (
    RABBITMQ_URL,
    WAIT,
    NamespacedResults,
    delete_namespace,
    require_rabbitmq,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)
#: What a Celery user may pass as ``app=``: a URL, not a broker.
NOT_A_BROKER: Any = "redis://"


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(
    request: pytest.FixtureRequest, redis_url: str, namespace: str, redis_client: redis.Redis
) -> Iterator[Any]:
    """A broker of each kind with Results and Abortable on the test's Redis
    namespace (which ``redis_client`` deletes last), TaskStates, and a worker."""
    if request.param == "redis":
        from dramatiq.brokers.redis import RedisBroker

        made: Any = RedisBroker(url=redis_url, namespace=namespace + "broker")
    else:
        require_rabbitmq()
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        made = RabbitmqBroker(url=RABBITMQ_URL)
        # The shared RabbitMQ's "default" queue is not the test's to delete.
        made.add_middleware(OwnQueue(f"dramatiq-abort-test-{uuid.uuid4().hex}"))
    results = NamespacedResults(url=redis_url, namespace=namespace + "results")
    made.add_middleware(Results(backend=results))
    made.add_middleware(Abortable(backend=RedisBackend.from_url(redis_url, namespace=namespace)))
    made.add_middleware(TaskStates())
    dramatiq.set_broker(made)
    worker = dramatiq.Worker(made, worker_timeout=100, worker_threads=4)
    with contextlib.ExitStack() as teardown:
        # Run last-in, first-out, each even if one before it fails.
        teardown.callback(results.client.close)
        teardown.callback(made.close)
        teardown.callback(delete_queues, made, request.param)
        teardown.callback(worker.stop)
        worker.start()
        yield made


def delete_queues(broker: Any, kind: str) -> None:
    """Delete the queues a RabbitMQ ``broker`` declared, with their delay
    and dead-letter queues."""
    if kind == "rabbitmq":
        for queue in list(broker.get_declared_queues()):
            for name in (queue, dq_name(queue), xq_name(queue)):
                broker.channel.queue_delete(name)


class OwnQueue(dramatiq.Middleware):
    """Declares every actor of the broker in ``queue``, whatever its code says."""

    def __init__(self, queue: str) -> None:
        self.queue = queue

    def before_declare_actor(
        self, broker: dramatiq.Broker, actor: dramatiq.Actor[Any, Any]
    ) -> None:
        actor.queue_name = self.queue


@pytest.fixture
def stub() -> Iterator[StubBroker]:
    """A StubBroker with the same middleware and no worker."""
    made = StubBroker()
    made.add_middleware(Results(backend=StubResults()))
    made.add_middleware(Abortable(backend=StubBackend()))
    made.add_middleware(TaskStates())
    dramatiq.set_broker(made)
    yield made
    made.close()


@pytest.fixture
def stub_worker(stub: StubBroker) -> Iterator[dramatiq.Worker]:
    """A worker on ``stub``."""
    worker = dramatiq.Worker(stub, worker_timeout=100)
    worker.start()
    yield worker
    worker.stop()


def test_progress_is_read_back_from_a_result_rebuilt_from_the_id(broker: Any) -> None:
    step, done = threading.Event(), threading.Event()

    @shared_task(bind=True, base=AbortableTask)
    def export(self: Any, total: int) -> str:
        for i in range(total):
            self.update_state(state="PROGRESS", meta={"current": i + 1, "total": total})
            if i == 1:
                step.set()
                assert done.wait(WAIT)
        return "exported"

    task_id = export.delay(3).id
    assert step.wait(WAIT)
    view = AbortableAsyncResult(task_id)
    assert view.state == "PROGRESS" and view.info == {"current": 2, "total": 3}
    assert view.result == view.info and not view.ready() and view.date_done is None
    done.set()
    assert view.get(timeout=WAIT) == "exported"
    assert view.state == SUCCESS and view.info == "exported" and view.ready()
    assert view.successful() and isinstance(view.date_done, datetime.datetime)


def test_an_abort_stays_in_force_whatever_the_task_reports(broker: Any) -> None:
    started, reported = threading.Event(), threading.Event()
    seen: list[bool] = []

    @shared_task(bind=True, base=AbortableTask, track_started=True)
    def crunch(self: Any) -> None:
        started.set()
        wait_until(self.is_aborted, "the task sees the abort")
        self.update_state(state="PROGRESS", meta={"current": 7})
        seen.append(self.is_aborted())
        reported.set()
        assert release.wait(WAIT)
        seen.append(self.is_aborted())

    release = threading.Event()
    result = crunch.delay()
    assert started.wait(WAIT)
    result.abort()
    # Read-your-writes, from this handle and from one rebuilt from the id.
    assert result.state == ABORTED and AbortableAsyncResult(result.id).is_aborted()
    assert reported.wait(WAIT)
    assert result.state == ABORTED and result.info == {"current": 7}
    release.set()
    assert result.get(timeout=WAIT) is None
    assert seen == [True, True]
    assert result.is_aborted() and result.state == SUCCESS


def test_a_task_that_marks_itself_aborted_ends_aborted(broker: Any) -> None:
    @shared_task(bind=True, base=AbortableTask)
    def gives_up(self: Any) -> None:
        self.update_state(state=ABORTED, meta={"reason": "no input"})

    result = gives_up.delay()
    wait_until(result.ready, "the task is over")
    assert result.state == ABORTED and result.info == {"reason": "no input"}


def test_a_caller_chosen_id_names_the_task_everywhere(broker: Any) -> None:
    seen: list[Any] = []

    @shared_task(bind=True, base=AbortableTask)
    def report(self: Any, a: int, b: int = 0) -> int:
        seen.append((self.request.id, self.request.args, self.request.kwargs))
        return a + b

    chosen = str(uuid.uuid4())
    result = report.apply_async((1,), {"b": 2}, task_id=chosen)
    assert result.id == chosen
    assert AbortableAsyncResult(id=chosen).get(timeout=WAIT) == 3
    assert AbortableAsyncResult(chosen, app=broker).state == SUCCESS
    assert seen == [(chosen, (1,), {"b": 2})]


def test_a_failure_gives_the_exception_and_its_traceback(broker: Any) -> None:
    @shared_task(base=AbortableTask)
    def breaks() -> None:
        raise KeyError("missing")

    result = breaks.delay()
    with pytest.raises(KeyError, match="missing"):
        result.get(timeout=WAIT)
    assert result.failed() and result.state == states.FAILURE
    assert isinstance(result.info, KeyError)
    assert "KeyError" in (result.traceback or "")


def test_retry_runs_the_task_again_then_gives_up_with_the_exception(broker: Any) -> None:
    attempts: list[int] = []

    @shared_task(bind=True, base=AbortableTask, max_retries=2)
    def flaky(self: Any) -> None:
        attempts.append(self.request.retries)
        try:
            raise ConnectionError("down")
        except ConnectionError as e:
            raise self.retry(exc=e, countdown=0.05) from e

    result = flaky.delay()
    # Each retry goes through the broker's delay queue; on a loaded CI
    # machine RabbitMQ once took over WAIT for the three attempts.
    with pytest.raises(ConnectionError, match="down"):
        result.get(timeout=WAIT * 3)
    assert attempts == [0, 1, 2]


def test_retry_without_an_exception_says_the_retries_ran_out(
    stub: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    @shared_task(bind=True, base=AbortableTask, max_retries=0)
    def never(self: Any) -> None:
        self.retry()

    result = never.delay()
    with pytest.raises(MaxRetriesExceededError):
        result.get(timeout=WAIT)


def test_an_immutable_signature_in_a_pipeline_does_not_receive_the_result_before_it(
    stub: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    @shared_task(base=AbortableTask)
    def add(x: int, y: int) -> int:
        return x + y

    chained = dramatiq.pipeline([add.s(1, 2), add.s(3), add.si(10, 20)]).run()
    assert chained.get_result(block=True, timeout=int(WAIT * 1000)) == 30
    assert [result.get(timeout=WAIT) for result in map(AbortableAsyncResult, chained.messages)] == [
        3,
        6,
        30,
    ]


def test_ignore_ends_a_task_without_a_result_and_keeps_its_state(
    stub: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    @shared_task(bind=True, base=AbortableTask)
    def skip(self: Any) -> None:
        self.update_state(state="SKIPPED", meta={"why": "duplicate"})
        raise Ignore()

    result = skip.delay()
    stub.join(skip.queue_name)
    stub_worker.join()
    assert result.state == "SKIPPED" and result.info == {"why": "duplicate"}
    with pytest.raises(CeleryTimeoutError):
        result.get(timeout=0.1)


def test_hooks_of_a_base_class_run_after_the_task(
    stub: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    calls: list[tuple[str, Any]] = []

    class Audited(AbortableTask):
        def on_success(self, retval: Any, task_id: Any, args: Any, kwargs: Any) -> None:
            calls.append(("success", retval))

        def on_failure(
            self, exc: BaseException, task_id: Any, args: Any, kwargs: Any, einfo: Any
        ) -> None:
            calls.append(("failure", type(exc).__name__))

        def after_return(self, status: str, retval: Any, *rest: Any) -> None:
            calls.append(("after", status))

    @shared_task(base=Audited)
    def double(x: int) -> int:
        if x < 0:
            raise ValueError(x)
        return 2 * x

    assert double.delay(2).get(timeout=WAIT) == 4
    with pytest.raises(ValueError):
        double.delay(-1).get(timeout=WAIT)
    assert calls == [
        ("success", 4),
        ("after", SUCCESS),
        ("failure", "ValueError"),
        ("after", "FAILURE"),
    ]


def test_is_aborted_works_as_a_callback_from_another_thread(
    stub: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    started = threading.Event()
    answers: list[bool] = []

    def compute(should_stop: Any) -> str:
        seen: list[bool] = []
        helper = threading.Thread(target=lambda: seen.append(should_stop()))
        helper.start()
        helper.join(WAIT)
        answers.extend(seen)
        return "done"

    @shared_task(bind=True, base=AbortableTask)
    def long(self: Any) -> str:
        started.set()
        wait_until(self.is_aborted, "the abort is seen")
        return compute(self.is_aborted)

    result = long.delay()
    assert started.wait(WAIT)
    result.abort()
    assert result.get(timeout=WAIT) == "done"
    assert answers == [True]


def test_forget_drops_the_result_and_state_but_not_the_abort(
    stub: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    @shared_task(base=AbortableTask)
    def quick() -> int:
        return 1

    result = quick.delay()
    assert result.get(timeout=WAIT) == 1
    result.forget()
    assert result.state == PENDING and result.info is None
    never_sent = AbortableAsyncResult("never-sent")
    never_sent.abort()
    never_sent.forget()
    assert never_sent.state == ABORTED and never_sent.is_aborted()


def test_waiting_on_an_abort_of_a_delayed_task_answers_at_once(stub: StubBroker) -> None:
    @shared_task(base=AbortableTask)
    def later() -> None: ...

    # No worker: the answer comes from the ETA alone.
    assert later.apply_async(countdown=30).abort(wait=True, timeout=1) is True
    with pytest.raises(builtins.TimeoutError):
        later.apply_async(countdown=30).get(timeout=0.05)


def test_apply_async_honours_or_refuses_celery_options(stub: StubBroker) -> None:
    @shared_task(base=AbortableTask)
    def task() -> None: ...

    stub.declare_queue("reports")
    routed = task.apply_async(queue="reports", expires=60)
    assert routed.queue_name == "reports" and routed.options["max_age"] == 60_000
    assert stub.queues["reports"].qsize() == 1
    with pytest.raises(ValueError, match="'elsewhere' is not declared"):
        task.apply_async(queue="elsewhere")
    with pytest.raises(TypeError, match="priority=5"):
        task.apply_async(priority=5)
    with pytest.raises(TypeError, match="link="):
        task.apply_async(link="next")
    assert stub.queues[task.queue_name].qsize() == 0


def test_a_base_class_sets_celery_options_that_the_decorator_overrides(
    stub: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    class Quiet(AbortableTask):
        ignore_result = True
        track_started = True
        soft_time_limit = 30

    @shared_task(base=Quiet)
    def quiet() -> int:
        return 1

    @shared_task(base=Quiet, ignore_result=False, soft_time_limit=20)
    def loud() -> int:
        return 2

    assert quiet.options["track_started"] is True and quiet.options["time_limit"] == 30_000
    assert loud.options["time_limit"] == 20_000
    assert loud.delay().get(timeout=WAIT) == 2
    assert quiet.delay().get(timeout=WAIT) is None  # its result was not kept


def test_ignore_result_given_per_call_keeps_no_result(
    stub: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    @shared_task(base=AbortableTask)
    def one() -> int:
        return 1

    ignored = one.apply_async(ignore_result=True)
    kept = one.apply_async()
    stub.join(one.queue_name)
    stub_worker.join()
    assert kept.get(timeout=WAIT) == 1
    # As in Celery: nothing is known of a task whose result is ignored.
    assert ignored.state == PENDING and not ignored.ready()


@pytest.mark.parametrize(
    ("call", "error", "says"),
    [
        (lambda t: t.apply_async(time_limit="soon"), TypeError, "time_limit.*'soon'"),
        (lambda t: t.apply_async(soft_time_limit=-1), ValueError, "soft_time_limit.*-1"),
        (lambda t: t.apply_async(ignore_result="no"), TypeError, "ignore_result.*'no'"),
        (lambda t: t.apply_async(task_id=123), TypeError, "123"),
        (lambda t: t.apply_async(task_id=""), ValueError, "''"),
        (lambda t: t.update_state(state="PROGRESS"), ValueError, "task_id"),
        (lambda t: t.update_state("x", state="P", meta={1j}), TypeError, "meta"),
        (lambda t: t.update_state("x", state=None), TypeError, "None"),
        (lambda t: AbortableAsyncResult(id=""), ValueError, "''"),
        (lambda t: AbortableAsyncResult("x", app=NOT_A_BROKER), TypeError, "redis://"),
        (lambda t: t.apply_async(countdown=-1), ValueError, "-1"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    stub: StubBroker, call: Any, error: type[Exception], says: str
) -> None:
    @shared_task(base=AbortableTask)
    def task() -> None: ...

    with pytest.raises(error, match=says):
        call(task)
    assert stub.queues[task.queue_name].qsize() == 0
    assert AbortableAsyncResult("x").state == PENDING


def test_celery_states_are_importable_with_their_sets() -> None:
    from compat.states import state

    assert {states.SUCCESS, states.FAILURE, states.REVOKED} == states.READY_STATES
    assert states.RETRY in states.UNREADY_STATES and RETRY in states.EXCEPTION_STATES
    assert {states.FAILURE, states.REVOKED} == states.PROPAGATE_STATES
    assert state("PROGRESS") > states.STARTED and state(states.SUCCESS) > "PROGRESS"


def test_the_api_is_importable_under_a_name_no_project_module_shadows() -> None:
    import compat
    import dramatiq_abort.compat as inside
    from compat.contrib.abortable import AbortableAsyncResult as FromContrib

    assert compat.AbortableTask is inside.AbortableTask and FromContrib is inside.AbortableResult


def test_a_missing_attribute_names_the_result_class(stub: StubBroker) -> None:
    with pytest.raises(AttributeError, match="'AbortableResult' object has no attribute 'nope'"):
        AbortableAsyncResult("x").nope  # noqa: B018


def test_get_waits_longer_than_the_results_client_socket_timeout(
    redis_url: str, namespace: str
) -> None:
    import redis
    from dramatiq.brokers.redis import RedisBroker

    socket_timeout = 0.2
    client = redis.Redis.from_url(redis_url, socket_timeout=socket_timeout)
    made = RedisBroker(url=redis_url, namespace=namespace + "broker")
    release = threading.Event()
    # The task ends a few socket timeouts after get() began to wait.
    timer = threading.Timer(3 * socket_timeout, release.set)
    worker = dramatiq.Worker(made, worker_timeout=100)
    try:
        made.add_middleware(Results(backend=NamespacedResults(client=client, namespace=namespace)))
        backend = RedisBackend.from_url(redis_url, namespace=namespace)
        made.add_middleware(Abortable(backend=backend))
        made.add_middleware(TaskStates())

        @shared_task(base=AbortableTask, broker=made)
        def slow() -> str:
            assert release.wait(WAIT)
            return "late"

        worker.start()
        timer.start()
        assert slow.delay().get(timeout=WAIT) == "late"
    finally:
        timer.cancel()
        release.set()
        worker.stop()
        made.close()
        delete_namespace(client, namespace)


def test_an_abortable_task_says_when_the_broker_lacks_task_states() -> None:
    bare = StubBroker()
    bare.add_middleware(Abortable(backend=StubBackend()))
    try:
        with pytest.raises(RuntimeError, match=r"TaskStates\(\)"):

            @dramatiq.actor(actor_class=AbortableTask, broker=bare)
            def orphan() -> None: ...

    finally:
        bare.close()


def test_bind_on_a_plain_actor_is_refused_when_declared(stub: StubBroker) -> None:
    with pytest.raises(ValueError, match=r"needs_self.*actor_class=AbortableTask"):

        @dramatiq.actor(bind=True)
        def needs_self(self: Any) -> None: ...

    with pytest.raises(ValueError, match="track_started must be True or False, not 'yes'"):

        @dramatiq.actor(actor_class=AbortableTask, track_started="yes")
        def vague() -> None: ...

    assert "needs_self" not in stub.actors and "vague" not in stub.actors


def test_a_task_that_reports_aborted_then_ignores_ends_aborted(
    stub: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    @shared_task(bind=True, base=AbortableTask)
    def stops(self: Any) -> None:
        self.update_state(state=ABORTED, meta={"done": 3})
        raise Ignore()

    result = stops.delay()
    wait_until(result.ready, "the task is over")
    assert result.state == ABORTED and result.info == {"done": 3}
    with pytest.raises(TaskAborted):
        result.get(timeout=WAIT)


class _Gate(Middleware):
    """Holds each message in ``before_process_message`` until released:
    the moment after TaskStates saw the message and before it runs."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self.entered.set()
        self.release.wait(WAIT)


def test_started_is_recorded_once_the_task_runs_so_an_abort_on_seeing_it_reaches_the_task(
    stub: StubBroker,
) -> None:
    gate = _Gate()
    stub.add_middleware(gate)

    @shared_task(bind=True, base=AbortableTask, track_started=True, store_results=True)
    def long_running(self: Any) -> str:
        while not self.is_aborted():
            time.sleep(0.001)
        return "saw the abort"

    worker = dramatiq.Worker(stub, worker_timeout=100)
    worker.start()
    try:
        result = long_running.delay()
        assert gate.entered.wait(WAIT)
        # Fetched, not running yet: an abort now would cancel it, so
        # STARTED must not show.
        assert result.state == PENDING
        gate.release.set()
        wait_until(lambda: result.state == STARTED, "the task reads STARTED")
        result.abort()
        assert result.get(timeout=WAIT) == "saw the abort"
    finally:
        gate.release.set()
        worker.stop()
