"""Faults under real worker processes (``dramatiq`` commands serving
tests/programs/cli_app.py): the abort backend's Redis restarted while
messages run, and a worker process killed in the middle of a message."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis

from dramatiq_abort import Outcome, abort

from ..support import BOOT_WAIT, WAIT, App, PrivateRedis, require_rabbitmq, wait_until

pytestmark = [pytest.mark.timeout(120), pytest.mark.processes]


def started_in(app: App, token: str, timeout: float = WAIT) -> int:
    """The pid of the worker process that started the message of ``token``."""
    reported = app.report_and_pid(token, timeout)
    assert reported is not None and reported[0] == "started", reported
    return reported[1]


def subscribers(app: App) -> int:
    """How many connections are subscribed to the abort events of ``app``."""
    backend = app.backend
    return int(backend.client.pubsub_numsub(backend.channel)[0][1])


@contextlib.contextmanager
def frozen(command: subprocess.Popen[bytes]) -> Iterator[None]:
    """Stop every process of ``command``'s group (SIGSTOP) for the time of
    the block."""
    os.killpg(command.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(command.pid, signal.SIGCONT)


@pytest.mark.servers
def test_workers_survive_a_restart_of_the_abort_backend(
    redis_url: str, namespace: str, redis_client: redis.Redis, private_redis: PrivateRedis
) -> None:
    require_rabbitmq()
    # Two processes of two threads, each taking two messages at most: the
    # four spinning messages run two in each process.
    app = App(
        "rabbitmq",
        redis_url,
        namespace,
        abort_redis_url=private_redis.url,
        env={"dramatiq_queue_prefetch": "2"},
    )
    try:
        spinning = [app.send("spin") for _ in range(4)]
        pid_of = {token: started_in(app, token, BOOT_WAIT) for token, _ in spinning}
        assert len(set(pid_of.values())) == 2
        (first_token, first), *others = spinning
        # The abort after the first goes to the other process.
        others.sort(key=lambda sent: pid_of[sent[0]] == pid_of[first_token])

        private_redis.stop()
        with pytest.raises(redis.ConnectionError):
            abort(first.message_id, middleware=app.middleware)

        # With the workers stopped while Redis comes back, the abort is
        # recorded before any watcher subscribes again: only the catch-up of
        # a reconnecting watcher can deliver it.
        with frozen(app.process):
            private_redis.start()
            sent = time.monotonic()
            abort(first.message_id, middleware=app.middleware)
            assert subscribers(app) == 0
        assert app.report(first_token) == "aborted"
        print(f"abort recorded while no watcher was connected: {time.monotonic() - sent:.3f} s")

        wait_until(lambda: subscribers(app) == 2, "the watcher of each process is back")
        aborted_in = set()
        for token, message in others:
            sent = time.monotonic()
            abort(message.message_id, middleware=app.middleware)
            reported = app.report_and_pid(token)
            assert reported is not None and reported[0] == "aborted", reported
            print(f"abort after the watchers came back: {time.monotonic() - sent:.3f} s")
            aborted_in.add(reported[1])
        assert aborted_in == set(pid_of.values())

        assert app.process.poll() is None
        token, _ = app.send("quick")
        assert app.report(token) == "started" and app.report(token) == "finished"
    finally:
        app.close()


@pytest.mark.parametrize("broker", ["rabbitmq", "redis"])
@pytest.mark.parametrize("abort_sent", ["during_grace_before_kill", "after_kill"])
def test_message_of_a_killed_worker_is_not_run_again_once_aborted(
    redis_url: str, namespace: str, redis_client: redis.Redis, broker: str, abort_sent: str
) -> None:
    if broker == "rabbitmq":
        require_rabbitmq()
    # Two dramatiq commands, as the master of one stops all its processes
    # once one dies; one thread each, taking one message at a time, so
    # that a busy process leaves the requeued message to the broker.
    # A RedisBroker requeues the messages of a worker whose heartbeat is
    # older than APP_HEARTBEAT_TIMEOUT; live workers beat at least every
    # dramatiq_worker_timeout.
    app = App(
        broker,
        redis_url,
        namespace,
        processes=1,
        threads=1,
        env={
            "dramatiq_queue_prefetch": "1",
            "dramatiq_worker_timeout": "100",
            "APP_HEARTBEAT_TIMEOUT": "1000",
        },
    )
    try:
        app.start_workers(processes=1, threads=1)
        victim_token, victim = app.send("stubborn")
        doomed = started_in(app, victim_token, BOOT_WAIT)
        # Keeps the survivor busy until the test lets it take the requeued message.
        blocker_token, blocker = app.send("spin")
        survivor = started_in(app, blocker_token, BOOT_WAIT)
        assert survivor != doomed

        if abort_sent == "during_grace_before_kill":
            abort(victim.message_id, middleware=app.middleware, abort_timeout=60_000)
            assert app.report_and_pid(victim_token) == ("noticed", doomed)
        os.kill(doomed, signal.SIGKILL)
        if abort_sent == "after_kill":
            abort(victim.message_id, middleware=app.middleware)

        abort(blocker.message_id, middleware=app.middleware)
        assert app.report_and_pid(blocker_token) == ("aborted", survivor)
        # The survivor, the only worker process left, got the message again
        # and skipped it.
        outcome = app.middleware.wait_outcome(victim.message_id, WAIT)
        assert outcome is Outcome.CANCELLED, app.report_and_pid(victim_token, timeout=0.2)
        assert app.report(victim_token, timeout=0.2) is None

        token, _ = app.send("quick")
        assert app.report_and_pid(token) == ("started", survivor)
        assert app.report(token) == "finished"
    finally:
        app.close()
