"""Real worker processes: the ``dramatiq`` command running several processes
of several threads, messages sent from the test, aborts sent from a third
process (the ``dramatiq-abort abort`` command), on Redis and RabbitMQ brokers."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis

from dramatiq_abort import Abortable, Outcome
from dramatiq_abort.backends import RedisBackend

from .support import WAIT

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parent.parent
RABBITMQ_URL = os.environ.get("DRAMATIQ_ABORT_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672")


def rabbitmq_answers() -> bool:
    import pika

    try:
        pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL)).close()
    except Exception:
        return False
    return True


class App:
    """A ``dramatiq`` command serving tests/programs/cli_app.py, and the
    test's own view of its broker, backend and reports."""

    def __init__(self, kind: str, redis_url: str, namespace: str) -> None:
        self.redis_url = redis_url
        self.namespace = namespace
        self.queue = f"abort_test_{uuid.uuid4().hex[:12]}"
        self.env = {
            **os.environ,
            "APP_BROKER": kind,
            "APP_REDIS_URL": redis_url,
            "APP_RABBITMQ_URL": RABBITMQ_URL,
            "APP_NAMESPACE": namespace,
            "APP_QUEUE": self.queue,
            "PYTHONPATH": str(ROOT),
        }
        # The same application, imported here to send messages.
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("APP_")})
        import tests.programs.cli_app as app

        self.app = importlib.reload(app)
        self.reports = redis.Redis.from_url(redis_url)
        self.middleware = Abortable(backend=RedisBackend.from_url(redis_url, namespace=namespace))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "tests.programs.cli_app", "-p", "2", "-t", "2"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def send(self, mode: str, **options: Any) -> tuple[str, dramatiq.Message[Any]]:
        token = uuid.uuid4().hex
        return token, self.app.work.send_with_options(args=(token, mode), **options)

    def report(self, token: str, timeout: float = WAIT) -> str | None:
        """The next thing the worker processes reported of ``token``."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            # Short blocks: redis-py's reads time out after a few seconds.
            popped = self.reports.blpop([f"{self.namespace}report:{token}"], min(left, 2))
            if popped is not None:
                return str(json.loads(popped[1])[0])
        return None

    def abort_from_another_process(self, message_id: str, *extra: str) -> None:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "dramatiq_abort.cli",
                "abort",
                message_id,
                "--redis",
                self.redis_url,
                "--namespace",
                self.namespace,
                *extra,
            ],
            check=True,
            timeout=WAIT * 3,
            cwd=ROOT,
        )

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(WAIT * 3)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        broker = self.app.broker
        if hasattr(broker, "channel"):
            for name in (self.queue, f"{self.queue}.DQ", f"{self.queue}.XQ"):
                broker.channel.queue_delete(name)
        broker.close()
        self.reports.close()


@pytest.fixture(params=["redis", "rabbitmq"])
def app(
    request: pytest.FixtureRequest, redis_url: str, namespace: str, redis_client: redis.Redis
) -> Iterator[App]:
    if request.param == "rabbitmq" and not rabbitmq_answers():
        message = f"no RabbitMQ answers at {RABBITMQ_URL} (set DRAMATIQ_ABORT_TEST_RABBITMQ)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
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
