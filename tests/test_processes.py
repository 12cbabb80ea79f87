"""Real worker processes: the ``dramatiq`` command running several processes
of several threads, messages sent from the test, aborts sent from a third
process (the ``dramatiq-abort abort`` command), on Redis and RabbitMQ brokers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from dramatiq_abort import Outcome

from .support import WAIT, App, require_rabbitmq

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=["redis", "rabbitmq"])
def app(
    request: pytest.FixtureRequest, redis_url: str, namespace: str, redis_client: redis.Redis
) -> Iterator[App]:
    if request.param == "rabbitmq":
        require_rabbitmq()
    started = App(request.param, redis_url, namespace)
    try:
        # Ready once a message went through a worker process.
        token, _ = started.send("quick")
        assert started.report(token, timeout=60) == "started"
        yield started
    finally:
        started.close()


def test_cancel_abort_grace_and_no_op_across_processes(app: App) -> None:
    queued_token, queued = app.send("spin", delay=1000)
    app.abort_from_another_process(queued.message_id, "--mode", "cancel")
    assert app.middleware.wait_outcome(queued.message_id, WAIT) is Outcome.CANCELLED
    assert app.report(queued_token, timeout=0.2) is None

    token, running = app.send("spin")
    assert app.report(token) == "started"
    app.abort_from_another_process(running.message_id)
    assert app.report(token) == "aborted"
    assert app.middleware.wait_outcome(running.message_id, WAIT) is Outcome.ABORTED

    token, polite = app.send("polite")
    assert app.report(token) == "started"
    app.abort_from_another_process(polite.message_id, "--timeout", "60000")
    assert app.report(token) == "noticed"
    assert app.middleware.wait_outcome(polite.message_id, WAIT) is Outcome.STOPPED

    token, done = app.send("quick")
    assert app.report(token) == "started" and app.report(token) == "finished"
    app.abort_from_another_process(done.message_id)
    # No worker runs it any more: nothing reports on it.
    assert app.middleware.wait_outcome(done.message_id, 0.5) is None


def test_a_rule_from_the_cli_stops_running_and_queued_messages_across_processes(app: App) -> None:
    token, running = app.send("spin")
    assert app.report(token) == "started"
    delayed_token, delayed = app.send("spin", delay=1500)
    # The rule is stamped in another process, a moment after the messages.
    app.abort_from_another_process(
        "--actor", "work", "--queue", app.queue, "--reason", "bad deploy"
    )
    later_token, _ = app.send("quick")

    assert app.report(token) == "aborted"
    assert app.middleware.wait_outcome(running.message_id, WAIT) is Outcome.ABORTED
    assert app.middleware.outcome_reason(running.message_id) == "bad deploy"
    assert app.report(later_token) == "started" and app.report(later_token) == "finished"
    assert app.middleware.wait_outcome(delayed.message_id, WAIT) is Outcome.CANCELLED
    assert app.middleware.outcome_reason(delayed.message_id) == "bad deploy"
    assert app.report(delayed_token, timeout=0.2) is None
