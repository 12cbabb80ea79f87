"""Celery's abortable API on dramatiq: the compat package."""

from __future__ import annotations

import ast
import asyncio
import datetime
import json
import logging
import math
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

import dramatiq_abort.compat
from compat import (
    ABORTED,
    FAILURE,
    PENDING,
    REVOKED,
    STARTED,
    SUCCESS,
    AbortableActor,
    AbortableAsyncResult,
    AbortableGroupResult,
    AbortableResult,
    AbortableTask,
    TaskAborted,
    TaskStates,
)
from dramatiq_abort import Abort, Abortable, Outcome, abort, abort_requested
from dramatiq_abort.backends import StubBackend
from dramatiq_abort.middleware import abortable_of

from ..support import QUEUED_FOR, WAIT, spin_until_aborted, wait_until

pytestmark = pytest.mark.timeout(60)
logger = logging.getLogger(__name__)


@pytest.fixture(autouse=True)
def task_states(request: pytest.FixtureRequest) -> TaskStates | None:
    """TaskStates on the test's broker, before its worker starts."""
    for name in ("redis_broker", "stub_broker"):
        if name in request.fixturenames:
            middleware = TaskStates()
            request.getfixturevalue(name).add_middleware(middleware)
            return middleware
    return None


def test_the_celery_documentation_example_runs_with_imports_and_decorator_changed(
    redis_broker: RedisBroker, redis_worker: dramatiq.Worker
) -> None:
    reached = threading.Event()
    proceed = threading.Event()
    done: list[Any] = []

    def do_something_expensive(i: int) -> int:
        if i == 10:
            reached.set()
            assert proceed.wait(WAIT)
        return i * i

    # The consumer, as in Celery's documentation but for the decorator.
    @dramatiq.actor(actor_class=AbortableTask, bind=True, max_retries=0, store_results=True)
    def long_running_task(self: AbortableTask) -> list[int] | None:
        results = []
        for i in range(100):
            # check after every 5 iterations...
            if not i % 5:
                if self.is_aborted():
                    # respect aborted state, and terminate gracefully.
                    logger.warning("Task aborted")
                    done.append(i)
                    return None
                value = do_something_expensive(i)
                results.append(value)
        logger.info("Task complete")
        return results

    # The producer.
    result = long_running_task.delay()
    assert isinstance(result, AbortableAsyncResult)
    assert reached.wait(WAIT)
    result.abort()
    assert result.state == ABORTED
    proceed.set()

    assert result.get(timeout=WAIT) is None
    assert done == [15]
    assert result.state == SUCCESS
    assert result.ready() and result.successful() and not result.failed()


def test_the_result_is_a_transparent_message_proxy(
    redis_broker: RedisBroker, redis_worker: dramatiq.Worker
) -> None:
    @dramatiq.actor(actor_class=AbortableActor, store_results=True)
    def add(a: int, b: int) -> int:
        return a + b

    result = add.send(1, 2)
    assert isinstance(result, AbortableResult)
    assert isinstance(result, dramatiq.Message)
    assert result.id == result.task_id == result.message_id
    assert result.get_result(block=True, timeout=int(WAIT * 1000)) == 3
    assert result.get(timeout=WAIT) == 3
    assert result.asdict()["args"] == [1, 2] or result.asdict()["args"] == (1, 2)
    assert json.loads(json.dumps(result.asdict()))["message_id"] == result.id
    assert dramatiq.Message.decode(result.encode()) == result
    assert result == result.__wrapped__
    assert result.copy(queue_name="other").queue_name == "other"
    rebuilt = AbortableResult(result.id)
    assert rebuilt.state == SUCCESS and rebuilt.get(timeout=WAIT) == 3
    assert add.AsyncResult(result.id).get(timeout=WAIT) == 3
    for other in (add.send_with_options(args=(2, 3)), add.apply_async((3, 4)), add.delay(4, 5)):
        assert isinstance(other, AbortableResult)
    assert [r.get(timeout=WAIT) for r in (add.apply_async(args=[1, 1]),)] == [2]


def test_states_through_a_pending_task_aborted_then_picked_up(
    redis_broker: RedisBroker, redis_worker: dramatiq.Worker
) -> None:
    ran = threading.Event()

    @dramatiq.actor(actor_class=AbortableActor, store_results=True)
    def later() -> None:
        ran.set()

    sent = time.time()
    result = later.apply_async(countdown=QUEUED_FOR / 1000)
    eta = result.options["eta"]
    assert eta >= int(sent * 1000) + QUEUED_FOR
    assert result.state == PENDING and not result.ready()
    result.abort()
    assert result.state == ABORTED and not result.ready()
    with pytest.raises(TaskAborted, match="aborted"):
        result.get(timeout=WAIT)
    assert result.state == ABORTED and result.ready() and result.is_aborted()
    assert not ran.is_set()


def test_failure_and_revoke_states(
    redis_broker: RedisBroker, redis_worker: dramatiq.Worker
) -> None:
    @dramatiq.actor(actor_class=AbortableActor, store_results=True, max_retries=0)
    def breaks() -> None:
        raise ValueError("broken")

    failing = breaks.send()
    with pytest.raises(ValueError, match="broken"):
        failing.get(timeout=WAIT)
    assert isinstance(failing.get(timeout=WAIT, propagate=False), ValueError)
    assert failing.state == FAILURE and failing.failed()

    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
        milliseconds=QUEUED_FOR
    )
    revoked = breaks.apply_async(eta=when.replace(tzinfo=None))
    assert revoked.revoke(wait=True, timeout=WAIT) is True
    assert revoked.state == REVOKED
    with pytest.raises(TaskAborted, match="revoked"):
        revoked.get(timeout=WAIT)


def test_bind_gives_the_request_and_abort_after_a_grace_is_forced(
    redis_broker: RedisBroker, redis_worker: dramatiq.Worker
) -> None:
    started, interrupted = threading.Event(), threading.Event()
    seen: dict[str, Any] = {}

    @dramatiq.actor(actor_class=AbortableActor, bind=True, store_results=True)
    def stubborn(self: AbortableActor, tag: str) -> None:
        seen["request"] = self.request
        seen["result"] = self.AsyncResult(self.request.id or "")
        try:
            started.set()
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                seen["aborted"] = self.is_aborted()
        except Abort:
            interrupted.set()
            raise

    result = stubborn.send("tag")
    assert started.wait(WAIT)
    result.abort(timeout=0.05)
    assert interrupted.wait(WAIT)
    assert seen["aborted"] is True
    assert seen["request"].id == result.id and seen["request"].args == ("tag",)
    assert seen["result"].id == result.id
    with pytest.raises(TaskAborted):
        result.get(timeout=WAIT)
    assert stubborn.request.id is None


def test_cooperative_and_forced_abort_are_one_mechanism(
    redis_broker: RedisBroker, redis_worker: dramatiq.Worker
) -> None:
    started = threading.Event()
    seen: list[Any] = []

    @dramatiq.actor(actor_class=AbortableActor, store_results=True)
    def polls() -> str:
        started.set()
        wait_until(lambda: polls.is_aborted(), "the task sees is_aborted()")
        seen.append(abort_requested())
        return "noticed"

    first = polls.send()
    assert started.wait(WAIT)
    abort(first.message_id, abort_timeout=60_000)
    assert first.get(timeout=WAIT) == "noticed"
    assert seen[0] is not None and 0 < seen[0] <= 60_000

    started.clear()
    second = polls.send()
    assert started.wait(WAIT)
    assert second.abort(wait=True, timeout=WAIT) is True
    assert seen[1] == math.inf


def test_abort_wait_says_when_a_task_ran_to_its_end(
    redis_broker: RedisBroker, redis_worker: dramatiq.Worker
) -> None:
    @dramatiq.actor(actor_class=AbortableActor, store_results=True)
    def quick() -> int:
        return 1

    done = quick.send()
    assert done.get(timeout=WAIT) == 1
    assert done.abort(wait=True, timeout=WAIT) is False


def test_a_result_rebuilt_in_another_process_aborts_the_task(
    redis_broker: RedisBroker, redis_worker: dramatiq.Worker, redis_url: str, namespace: str
) -> None:
    started, interrupted = threading.Event(), threading.Event()

    @dramatiq.actor(actor_class=AbortableActor, store_results=True)
    def crunch() -> None:
        spin_until_aborted(started.set, interrupted.set)

    result = crunch.send()
    assert started.wait(WAIT)
    script = f"""
import dramatiq
from dramatiq.brokers.redis import RedisBroker
from compat import AbortableResult
from dramatiq_abort import Abortable
from dramatiq_abort.backends import RedisBackend
broker = RedisBroker(url={redis_url!r}, namespace={namespace + "broker"!r})
backend = RedisBackend.from_url({redis_url!r}, namespace={namespace!r})
broker.add_middleware(Abortable(backend=backend))
dramatiq.set_broker(broker)
AbortableResult({result.id!r}).revoke(terminate=True)
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=WAIT * 3)
    assert interrupted.wait(WAIT)
    assert AbortableResult(result.id).state == REVOKED


def test_groups_and_pipelines_abort_in_one_call(
    redis_broker: RedisBroker, redis_worker: dramatiq.Worker
) -> None:
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    @dramatiq.actor(actor_class=AbortableActor)
    def step(tag: str) -> str:
        ran.append(tag)
        started.set()
        release.wait(WAIT)
        return tag

    tasks = dramatiq.group([step.message(f"g{i}") for i in range(3)])
    grouped = AbortableGroupResult(tasks)
    # Delayed, so that they are all still queued when revoked.
    tasks.run(delay=1_000)
    grouped.revoke()

    chain = dramatiq.pipeline([step.message("p1"), step.message("p2"), step.message("p3")])
    chained = AbortableGroupResult(chain)
    chain.run()
    assert started.wait(WAIT)
    chained.abort(timeout=60_000)
    release.set()
    redis_broker.join(step.queue_name, timeout=int(WAIT * 1000))
    redis_worker.join()
    assert ran == ["p1"]
    assert len(grouped.ids) == 3 and len(chained.ids) == 3
    assert [result.state for result in grouped.results] == [REVOKED] * 3
    # The first step ran to its end before the grace was over: it succeeded.
    assert [result.state for result in chained.results] == [SUCCESS, ABORTED, ABORTED]


def test_get_without_results_middleware_says_so_at_once(stub_broker: StubBroker) -> None:
    stub_broker.add_middleware(Abortable(backend=StubBackend()))

    @dramatiq.actor(actor_class=AbortableActor)
    def anything() -> None: ...

    result = anything.send()
    with pytest.raises(RuntimeError, match="Results middleware"):
        result.get(timeout=60)


@pytest.mark.parametrize(
    ("call", "error", "says"),
    [
        (lambda: AbortableResult(""), ValueError, "''"),
        (lambda: AbortableResult(42), TypeError, "42"),
        (lambda: AbortableResult("x").abort(wait=True, timeout=-1), ValueError, "-1"),
        (lambda: AbortableResult("x").abort(timeout=-5), ValueError, "-5"),
        (lambda: AbortableResult("x").get(timeout=float("nan")), ValueError, "nan"),
        (lambda: AbortableGroupResult("not a group"), TypeError, "not a group"),
    ],
)
def test_bad_input_is_refused(
    stub_broker: StubBroker, call: Any, error: type[Exception], says: str
) -> None:
    from dramatiq.results import Results
    from dramatiq.results.backends import StubBackend as StubResults

    stub_broker.add_middleware(Results(backend=StubResults()))
    backend = StubBackend()
    stub_broker.add_middleware(Abortable(backend=backend))
    with pytest.raises(error, match=says):
        call()
    assert backend.recorded() == []


def test_apply_async_refuses_bad_delays(stub_broker: StubBroker) -> None:
    stub_broker.add_middleware(Abortable(backend=StubBackend()))

    @dramatiq.actor(actor_class=AbortableActor)
    def task() -> None: ...

    with pytest.raises(ValueError, match=r"countdown.*-1"):
        task.apply_async(countdown=-1)
    with pytest.raises(TypeError, match="eta must be a datetime"):
        task.apply_async(eta="tomorrow")
    with pytest.raises(TypeError, match="not both"):
        task.apply_async(countdown=1, eta=datetime.datetime.now())
    assert stub_broker.queues[task.queue_name].qsize() == 0


def test_track_started_shows_started_then_the_outcome(
    redis_broker: RedisBroker, redis_worker: dramatiq.Worker
) -> None:
    release = threading.Event()

    @dramatiq.actor(actor_class=AbortableActor, store_results=True, track_started=True)
    def tracked() -> str:
        release.wait(WAIT)
        return "done"

    @dramatiq.actor(actor_class=AbortableActor, store_results=True)
    def untracked() -> str:
        release.wait(WAIT)
        return "done"

    seen, unseen = tracked.send(), untracked.send()
    wait_until(lambda: seen.state == STARTED, "the tracked task reads STARTED")
    assert unseen.state == PENDING
    release.set()
    assert seen.get(timeout=WAIT) == "done" and unseen.get(timeout=WAIT) == "done"
    assert seen.state == SUCCESS


def test_compat_is_aborted_and_request_work_in_async_actors(
    stub_broker: StubBroker, async_worker: dramatiq.Worker
) -> None:
    started = threading.Event()
    seen: list[str | None] = []

    @dramatiq.actor(actor_class=AbortableActor, bind=True, store_results=True)
    async def polls(self: AbortableActor) -> str:
        seen.append(self.request.id)
        started.set()
        while not self.is_aborted():
            await asyncio.sleep(0.001)
        return "stopped"

    result = polls.send()
    assert started.wait(WAIT)
    result.abort()
    assert result.get_result(block=True, timeout=int(WAIT * 1000)) == "stopped"
    assert seen == [result.id]


def test_compat_revoke_and_abort_carry_a_reason(
    redis_broker: RedisBroker, redis_worker: dramatiq.Worker
) -> None:
    started = threading.Event()

    @dramatiq.actor(actor_class=AbortableActor, store_results=True, max_retries=0)
    def task(spin: bool) -> None:
        started.set()
        deadline = time.monotonic() + WAIT
        while spin and time.monotonic() < deadline:
            pass

    abortable = abortable_of(redis_broker)
    revoked = task.apply_async(args=(False,), countdown=QUEUED_FOR / 1000)
    assert revoked.revoke(wait=True, timeout=WAIT, reason="not needed") is True
    assert abortable.wait_outcome(revoked.message, WAIT) is Outcome.CANCELLED
    assert abortable.outcome_reason(revoked.message) == "not needed"

    running = task.delay(True)
    assert started.wait(WAIT)
    running.abort(timeout=0, reason="taking too long")
    assert abortable.wait_outcome(running.message, WAIT) is Outcome.ABORTED
    assert abortable.outcome_reason(running.message) == "taking too long"


#: compat's modules, each importing only those before it: none needs an
#: import inside a function to break a cycle, and the app is at the top.
COMPAT_LAYERS = [
    "states",
    "exceptions",
    "options",
    "records",
    "middleware",
    "request",
    "messages",
    "retries",
    "status",
    "result",
    "task",
    "decorators",
    "control",
    "connections",
    "app",
]


def test_each_compat_module_imports_only_the_compat_modules_before_it() -> None:
    package = Path(dramatiq_abort.compat.__file__).parent
    modules = sorted(path.stem for path in package.glob("*.py") if path.stem != "__init__")
    assert modules == sorted(COMPAT_LAYERS), "a new compat module needs its place in COMPAT_LAYERS"
    upward = []
    for rank, name in enumerate(COMPAT_LAYERS):
        # Every import, also those inside functions or under TYPE_CHECKING.
        for node in ast.walk(ast.parse((package / f"{name}.py").read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level == 1:
                targets = [node.module] if node.module else [a.name for a in node.names]
            elif node.level == 0 and (node.module or "").startswith("dramatiq_abort.compat."):
                targets = [(node.module or "").removeprefix("dramatiq_abort.compat.")]
            else:
                continue
            for target in (t.partition(".")[0] for t in targets):
                if target in COMPAT_LAYERS and COMPAT_LAYERS.index(target) >= rank:
                    upward.append(f"{name} imports {target}")
    assert upward == []
