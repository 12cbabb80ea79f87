"""Celery code as real projects write it, with only its imports and
decorators changed, run by a dramatiq worker on the stub broker and on
Redis: one test per pattern, grouped by what the pattern does.

The bodies are the Celery snippets; annotations are added for mypy, and the
producer waits with ``wait_until`` where Celery code would poll in a loop.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any, ClassVar

import dramatiq
import pytest

from compat import TaskStates, shared_task, states
from compat.contrib.abortable import ABORTED, AbortableAsyncResult, AbortableTask
from compat.exceptions import (
    Ignore,
    MaxRetriesExceededError,
    SoftTimeLimitExceeded,
    TaskRevokedError,
    TimeoutError,
)
from compat.result import AsyncResult
from dramatiq_abort import EventBackend
from dramatiq_abort.backends import StubBackend

from ..support import QUEUED_FOR, WAIT, wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def event_backend() -> EventBackend:
    """The stub broker's abort backend: the in-memory one, since the Redis
    case has a broker, results and abort backend of its own."""
    return StubBackend()


@pytest.fixture(params=["stub", "redis"])
def app(request: pytest.FixtureRequest) -> dramatiq.Broker:
    """What the ported code calls its app: a broker with Results, Abortable
    and TaskStates (in that order), served by a running worker."""
    if request.param == "stub":
        request.getfixturevalue("abortable")
    broker: dramatiq.Broker = request.getfixturevalue(f"{request.param}_broker")
    broker.add_middleware(TaskStates())
    request.getfixturevalue("worker" if request.param == "stub" else "redis_worker")
    return broker


# Abortable tasks


def test_a_task_that_checks_is_aborted_returns_early_once_aborted(app: Any) -> None:
    started = threading.Event()

    @shared_task(bind=True, base=AbortableTask)
    def long_running_task(self: Any) -> list[int] | None:
        results = []
        started.set()
        for i in range(10_000):
            if self.is_aborted():
                return None
            results.append(i)
            time.sleep(0.001)
        return results

    result = long_running_task.delay()
    assert started.wait(WAIT)
    result.abort()
    assert result.get(timeout=WAIT) is None
    assert result.is_aborted()


def test_a_view_aborts_a_task_from_its_id_alone(app: Any) -> None:
    started = threading.Event()

    @shared_task(bind=True, base=AbortableTask)
    def export(self: Any) -> str:
        started.set()
        while not self.is_aborted():
            time.sleep(0.001)
        self.update_state(state=ABORTED, meta={"done": True})
        raise Ignore()

    task_id = export.delay().id
    assert started.wait(WAIT)
    AbortableAsyncResult(task_id).abort()  # in another request, with the id kept
    result = AbortableAsyncResult(task_id)
    wait_until(result.ready, "the task is over")
    assert result.state == ABORTED and result.info == {"done": True}
    assert not result.successful()


def test_revoke_keeps_a_queued_task_from_ever_running(app: Any) -> None:
    ran: list[int] = []

    @shared_task
    def send_reminder(user_id: int) -> None:
        ran.append(user_id)

    result = send_reminder.apply_async(args=[7], countdown=QUEUED_FOR / 1000)
    AsyncResult(result.id).revoke()
    assert result.state == states.REVOKED
    with pytest.raises(TaskRevokedError):
        result.get(timeout=WAIT)
    assert ran == []


def test_revoke_with_terminate_stops_a_running_task(app: Any) -> None:
    started = threading.Event()

    @shared_task(bind=True)
    def crunch(self: Any) -> str:
        started.set()
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            pass
        return "ran to its end"

    result = crunch.delay()
    assert started.wait(WAIT)
    result.revoke(terminate=True, signal="SIGKILL")
    assert result.state == states.REVOKED
    wait_until(result.ready, "the task is stopped")
    assert not result.successful()
    # As in Celery: a revoke, not an abort, whatever stopped the task.
    assert result.state == states.REVOKED
    with pytest.raises(TaskRevokedError, match="revoked"):
        result.get(timeout=WAIT)


def test_a_terminated_task_reads_revoked_and_an_aborted_one_aborted(app: Any) -> None:
    started: list[str] = []

    @shared_task(base=AbortableTask, bind=True)
    def crunch(self: Any) -> None:
        started.append(self.request.id)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            pass

    revoked, aborted = crunch.delay(), crunch.delay()
    wait_until(lambda: len(started) == 2, "both tasks start")
    # Views that kept only the id, as after a redirect.
    AbortableAsyncResult(revoked.id).revoke(terminate=True)
    AbortableAsyncResult(aborted.id).abort(timeout=0)  # forced now, as a terminate is
    for result in (revoked, aborted):
        wait_until(result.ready, "both tasks are stopped")
    assert (revoked.state, aborted.state) == (states.REVOKED, ABORTED)


def test_revoking_a_fan_out_task_with_abort_children_stops_the_tasks_it_sent(app: Any) -> None:
    # The one option Celery lacks: the fan-out task sends its chunks, ends,
    # and a revoke of it still stops them.
    started: list[str] = []

    @shared_task(bind=True)
    def process_chunk(self: Any, chunk: int) -> None:
        started.append(self.request.id)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            pass

    @shared_task(abort_children=True)
    def process_all(chunks: int) -> list[str]:
        return [process_chunk.delay(chunk).id for chunk in range(chunks)]

    parent = process_all.delay(2)
    chunk_ids = parent.get(timeout=WAIT)
    wait_until(lambda: len(started) == 2, "both chunks start")
    parent.revoke(terminate=True, reason="wrong input")
    for chunk_id in chunk_ids:
        chunk = AsyncResult(chunk_id)
        wait_until(chunk.ready, "the chunk is stopped")
        assert chunk.state == ABORTED and not chunk.successful()


# Progress and state


def test_a_status_view_reads_progress_then_the_return_value(app: Any) -> None:
    step, go_on = threading.Event(), threading.Event()

    @shared_task(bind=True)
    def long_task(self: Any) -> dict[str, Any]:
        total = 3
        for i in range(total):
            self.update_state(state="PROGRESS", meta={"current": i, "total": total})
            if i == 1:
                step.set()
                assert go_on.wait(WAIT)
        return {"current": total, "total": total, "result": 42}

    def taskstatus(task_id: str) -> dict[str, Any]:
        task = long_task.AsyncResult(task_id)
        if task.state == "PENDING":
            return {"state": task.state, "current": 0, "total": 1}
        if task.state != "FAILURE":
            response = {"state": task.state, "current": task.info.get("current", 0)}
            if "result" in task.info:
                response["result"] = task.info["result"]
            return response
        return {"state": task.state, "status": str(task.info)}

    assert taskstatus(str(uuid.uuid4())) == {"state": "PENDING", "current": 0, "total": 1}
    task_id = long_task.apply_async().id
    try:
        assert step.wait(WAIT)
        assert taskstatus(task_id) == {"state": "PROGRESS", "current": 1}
    finally:
        go_on.set()
    wait_until(lambda: taskstatus(task_id)["state"] == "SUCCESS", "the task succeeds")
    assert taskstatus(task_id)["result"] == 42


def test_a_task_reads_its_own_state_through_its_request_id(app: Any) -> None:
    @shared_task(bind=True, track_started=True)
    def where_am_i(self: Any) -> str:
        state: str = self.AsyncResult(self.request.id).state
        return state

    assert where_am_i.delay().get(timeout=WAIT) == states.STARTED


def test_a_task_that_reports_its_own_failure_then_ignores_reads_failed(app: Any) -> None:
    @shared_task(bind=True)
    def parse(self: Any, text: str) -> int:
        try:
            return int(text)
        except Exception as ex:
            self.update_state(
                task_id=self.request.id,
                state=states.FAILURE,
                meta={"exc_type": type(ex).__name__, "exc_message": str(ex)},
            )
            raise Ignore() from ex

    result = parse.delay("nope")
    wait_until(result.ready, "the task is over")
    assert result.failed() and isinstance(result.info, ValueError)
    assert "nope" in str(result.info)


# Results


def test_get_without_propagate_gives_the_exception_of_a_failed_task(app: Any) -> None:
    @shared_task
    def divide(x: int, y: int) -> float:
        return x / y

    result = divide.delay(1, 0)
    error = result.get(timeout=WAIT, propagate=False)
    assert isinstance(error, ZeroDivisionError)
    assert result.failed() and result.status in states.PROPAGATE_STATES
    assert result.state in states.READY_STATES and "ZeroDivisionError" in str(result.traceback)
    with pytest.raises(ZeroDivisionError):
        result.get(timeout=WAIT)


def test_get_with_a_timeout_gives_up_on_a_task_still_running(app: Any) -> None:
    release = threading.Event()

    @shared_task
    def slow() -> str:
        assert release.wait(WAIT)
        return "late"

    result = slow.delay()
    try:
        with pytest.raises(TimeoutError):
            result.get(timeout=0.1)
    finally:
        release.set()
    assert result.get(timeout=WAIT) == "late" and result.successful()


def test_a_result_is_its_id_in_json_sets_and_comparisons(app: Any) -> None:
    @shared_task
    def add(x: int, y: int) -> int:
        return x + y

    result = add.delay(2, 2)
    payload = json.loads(json.dumps({"task_id": str(result)}))
    assert payload["task_id"] == result.id
    assert AsyncResult(payload["task_id"]) == result and result == result.id
    pending = {result: "sent"}
    assert pending[AsyncResult(result.id)] == "sent"
    assert len({result, AsyncResult(result.id), add.AsyncResult(result.id)}) == 1
    assert result != add.delay(2, 2)


def test_forget_drops_what_was_kept_of_a_task(app: Any) -> None:
    @shared_task
    def add(x: int, y: int) -> int:
        return x + y

    result = add.delay(1, 1)
    assert result.get(timeout=WAIT) == 2
    result.forget()
    assert result.state == states.PENDING and not result.ready()


# Sending


def test_apply_async_with_every_usual_option(app: Any) -> None:
    @shared_task(name="reports.build", queue="reports")
    def build(kind: str, *, year: int) -> str:
        return f"{kind}-{year}"

    task_id = str(uuid.uuid4())
    result = build.apply_async(
        args=["sales"], kwargs={"year": 2024}, task_id=task_id, countdown=0.05, queue="reports"
    )
    assert result.id == task_id and result.get(timeout=WAIT) == "sales-2024"
    assert AsyncResult(task_id, app=app).status == states.SUCCESS


def test_a_soft_time_limit_lets_the_task_clean_up(app: Any) -> None:
    @shared_task(soft_time_limit=1)
    def scrape() -> float:
        began = time.monotonic()
        try:
            while time.monotonic() - began < WAIT:
                time.sleep(0.01)
        except SoftTimeLimitExceeded:
            return time.monotonic() - began
        return -1.0

    assert 0.9 <= scrape.delay().get(timeout=WAIT) < WAIT


def test_a_time_limit_given_per_call_is_in_seconds(app: Any) -> None:
    @shared_task
    def scrape() -> float:
        began = time.monotonic()
        try:
            while time.monotonic() - began < WAIT:
                time.sleep(0.01)
        except SoftTimeLimitExceeded:
            return time.monotonic() - began
        return -1.0

    assert 0.9 <= scrape.apply_async(soft_time_limit=1, time_limit=5).get(timeout=WAIT) < WAIT


# Retries


def test_retry_with_a_growing_countdown_until_it_works(app: Any) -> None:
    @shared_task(bind=True, max_retries=5)
    def fetch(self: Any, url: str) -> str:
        try:
            if self.request.retries < 2:
                raise ConnectionError(url)
            return f"fetched after {self.request.retries} retries"
        except ConnectionError as exc:
            raise self.retry(exc=exc, countdown=0.01 * 2**self.request.retries) from exc

    assert fetch.delay("https://example.com").get(timeout=WAIT) == "fetched after 2 retries"


def test_a_task_falls_back_when_its_retries_run_out(app: Any) -> None:
    @shared_task(bind=True, max_retries=1)
    def notify(self: Any) -> str:
        try:
            self.retry(countdown=0.01)
        except MaxRetriesExceededError:
            return "gave up"
        return "unreachable"

    assert notify.delay().get(timeout=WAIT) == "gave up"


def test_autoretry_honours_retry_kwargs(app: Any) -> None:
    attempts: list[int] = []

    @shared_task(
        bind=True,
        autoretry_for=(ConnectionError,),
        retry_kwargs={"max_retries": 2, "countdown": 0.01},
    )
    def sync(self: Any) -> None:
        attempts.append(self.request.retries)
        raise ConnectionError("down")

    assert isinstance(sync.delay().get(timeout=WAIT, propagate=False), ConnectionError)
    assert attempts == [0, 1, 2]


def test_a_base_class_sets_the_retry_options_of_its_tasks(app: Any) -> None:
    attempts: list[int] = []

    class BaseTaskWithRetry(AbortableTask):
        autoretry_for = (ConnectionError,)
        dont_autoretry_for = (ConnectionRefusedError,)
        retry_kwargs: ClassVar[dict[str, int]] = {"max_retries": 3}
        retry_backoff = 0.01
        retry_backoff_max = 0.05

    @shared_task(bind=True, base=BaseTaskWithRetry)
    def upload(self: Any, refused: bool) -> str:
        attempts.append(self.request.retries)
        if refused:
            raise ConnectionRefusedError("refused")
        if self.request.retries < 2:
            raise ConnectionError("reset")
        return "uploaded"

    assert upload.delay(False).get(timeout=WAIT) == "uploaded"
    assert attempts == [0, 1, 2]
    assert isinstance(upload.delay(True).get(timeout=WAIT, propagate=False), ConnectionRefusedError)
    assert attempts == [0, 1, 2, 0]


@pytest.mark.parametrize(
    ("retry_kwargs", "error", "says"),
    [
        ({"max_retries": -1}, ValueError, "-1"),
        ({"eta": 5}, TypeError, r"\['eta'\].*self.retry\(\)"),
        ({"countdown": "soon"}, TypeError, "'soon'"),
        ([("max_retries", 2)], TypeError, r"\[\('max_retries', 2\)\]"),
    ],
)
def test_retry_kwargs_that_cannot_be_honoured_are_refused_when_declared(
    app: Any, retry_kwargs: Any, error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says):

        @shared_task(autoretry_for=(ConnectionError,), retry_kwargs=retry_kwargs)
        def sync() -> None: ...

    assert "sync" not in app.actors
