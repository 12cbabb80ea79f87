"""Real worker processes: the ``dramatiq`` command running several processes
of several threads, messages sent from the test, aborts sent and listings
asked from a third process (the ``dramatiq-abort`` command), on Redis and
RabbitMQ brokers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from dramatiq_abort import Outcome

from ..support import (
    BOOT_WAIT,
    LONG_WAIT,
    QUEUED_FOR,
    ROOT,
    SHORT_SOCKET_TIMEOUT,
    WAIT,
    App,
    delete_namespace,
    require_rabbitmq,
    run_on_both_processes,
    wait_until,
)

pytestmark = [pytest.mark.timeout(120), pytest.mark.processes]

#: One message at a time per process: messages sent together spread over
#: the processes.
ONE_AT_A_TIME = {"dramatiq_queue_prefetch": "1"}


@pytest.fixture(params=["redis", "rabbitmq"])
def app(
    request: pytest.FixtureRequest, redis_url: str, namespace: str, redis_client: redis.Redis
) -> Iterator[App]:
    if request.param == "rabbitmq":
        require_rabbitmq()
    started = App(request.param, redis_url, namespace, env=ONE_AT_A_TIME)
    try:
        wait_ready(started)
        yield started
    finally:
        started.close()


def wait_ready(app: App) -> None:
    """Wait until a message went through one of ``app``'s worker processes."""
    token, _ = app.send("quick")
    assert app.report(token, timeout=BOOT_WAIT) == "started"


def test_cancel_abort_grace_and_no_op_across_processes(app: App) -> None:
    # Queued once the command returned: it may take longer to start on a
    # busy machine than any delay would last.
    queued_token, queued = app.message("spin")
    app.abort_from_another_process(queued.message_id, "--mode", "cancel")
    app.broker.enqueue(queued, delay=QUEUED_FOR)
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


def stop_them(app: App, message_ids: list[str]) -> None:
    app.middleware.abort_many(message_ids)
    for message_id in message_ids:
        assert app.middleware.wait_outcome(message_id, WAIT) is Outcome.ABORTED


def list_from_another_process(app: App, *extra: str, wait: float = WAIT) -> dict[str, object]:
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "dramatiq_abort.cli",
            "list",
            "--json",
            "--redis",
            app.abort_redis_url,
            "--namespace",
            app.namespace,
            "--wait",
            str(wait),
            *extra,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=WAIT * 3,
        cwd=ROOT,
    )
    document: dict[str, object] = json.loads(finished.stdout)
    return document


def test_a_listing_shows_what_every_worker_process_runs_asked_here_and_from_the_cli(
    app: App,
) -> None:
    pids = run_on_both_processes(app)
    graced = next(iter(pids))
    app.abort_from_another_process(graced, "--timeout", "60000")
    try:
        listed = app.middleware.running_messages(queue=app.queue, timeout=WAIT)
        assert (listed.answered, listed.expected) == (2, 2)
        assert {message.message_id: message.pid for message in listed.messages} == pids
        assert all(message.actor == "work" for message in listed.messages)
        by_id = {message.message_id: message for message in listed.messages}
        assert by_id[graced].abort_requested
        grace_left = by_id[graced].grace_left
        assert grace_left is not None and 0 < grace_left <= 60_000

        document = list_from_another_process(app, "--actor", "work", "--args")
        assert (document["answered"], document["expected"]) == (2, 2)
        messages = document["messages"]
        assert isinstance(messages, list)
        assert {entry["message_id"]: entry["pid"] for entry in messages} == pids
        assert all(entry["args"].endswith("'spin'") for entry in messages)
        assert {entry["message_id"] for entry in messages if entry["abort_requested"]} == {graced}
    finally:
        stop_them(app, list(pids))


def test_a_worker_process_that_does_not_answer_is_not_counted_as_running_nothing(
    app: App,
) -> None:
    pids = run_on_both_processes(app)
    stuck_id, stuck_pid = next(iter(pids.items()))
    os.kill(stuck_pid, signal.SIGSTOP)
    try:
        # Long enough for the other process to answer on a busy machine:
        # the stopped one makes the listing wait all of it.
        listed = app.middleware.running_messages(timeout=WAIT / 2)
    finally:
        os.kill(stuck_pid, signal.SIGCONT)
    try:
        assert (listed.answered, listed.expected) == (1, 2)
        assert not listed.complete
        assert [message.message_id for message in listed.messages] == [
            message_id for message_id in pids if message_id != stuck_id
        ]
    finally:
        stop_them(app, list(pids))


def test_a_listing_longer_than_the_clients_socket_timeout_says_who_answered_and_who_did_not(
    redis_url: str, namespace: str, redis_client: redis.Redis
) -> None:
    # redis-py fails a read that waits longer than its socket timeout: a
    # listing that waited longer for a paused process failed with "Timeout
    # reading from", from the API and the command alike.
    app = App(
        "redis",
        redis_url,
        namespace,
        abort_redis_url=f"{redis_url}?socket_timeout={SHORT_SOCKET_TIMEOUT}",
        env=ONE_AT_A_TIME,
    )
    try:
        wait_ready(app)
        pids = run_on_both_processes(app)
        paused_id, paused_pid = next(iter(pids.items()))
        os.kill(paused_pid, signal.SIGSTOP)
        try:
            listed = app.middleware.running_messages(timeout=LONG_WAIT)
            document = list_from_another_process(app, wait=LONG_WAIT)
        finally:
            os.kill(paused_pid, signal.SIGCONT)
        answering = [message_id for message_id in pids if message_id != paused_id]
        assert (listed.answered, listed.expected) == (1, 2)
        assert [message.message_id for message in listed.messages] == answering
        assert (document["answered"], document["expected"]) == (1, 2)
        messages = document["messages"]
        assert isinstance(messages, list)
        assert [entry["message_id"] for entry in messages] == answering
        stop_them(app, list(pids))
    finally:
        # Stops every worker process, the paused one too.
        app.close()


def test_a_worker_process_slow_to_answer_is_still_listed_by_default(app: App) -> None:
    # A watcher beside threads that compute in Python waits its turn for the
    # GIL: over a second with 20 of them. Stopped for 1.5 s, this one answers
    # that late.
    pids = run_on_both_processes(app)
    slow_pid = next(iter(pids.values()))
    os.kill(slow_pid, signal.SIGSTOP)
    resumed = threading.Timer(1.5, os.kill, (slow_pid, signal.SIGCONT))
    resumed.start()
    try:
        listed = app.middleware.running_messages()
    finally:
        resumed.join()
        os.kill(slow_pid, signal.SIGCONT)
    try:
        assert (listed.answered, listed.expected) == (2, 2)
        assert {message.message_id for message in listed.messages} == set(pids)
    finally:
        stop_them(app, list(pids))


def test_a_rule_from_the_cli_stops_running_and_queued_messages_across_processes(app: App) -> None:
    token, running = app.send("spin")
    assert app.report(token) == "started"
    # Created before the rule, queued once the command returned: it may take
    # longer to start on a busy machine than any delay would last.
    delayed_token, delayed = app.message("spin")
    # The rule is stamped in another process, a moment after the messages.
    app.abort_from_another_process(
        "--actor", "work", "--queue", app.queue, "--reason", "bad deploy"
    )
    app.broker.enqueue(delayed, delay=QUEUED_FOR)
    later_token, _ = app.send("quick")

    assert app.report(token) == "aborted"
    assert app.middleware.wait_outcome(running.message_id, WAIT) is Outcome.ABORTED
    assert app.middleware.outcome_reason(running.message_id) == "bad deploy"
    assert app.report(later_token) == "started" and app.report(later_token) == "finished"
    assert app.middleware.wait_outcome(delayed.message_id, WAIT) is Outcome.CANCELLED
    assert app.middleware.outcome_reason(delayed.message_id) == "bad deploy"
    assert app.report(delayed_token, timeout=0.2) is None


def test_a_listing_counts_the_messages_a_busy_worker_process_fetched_and_holds(
    redis_url: str, namespace: str, redis_client: redis.Redis
) -> None:
    # dramatiq prefetches twice as many messages as a process has threads:
    # a busy process holds some while another process idles. A listing of
    # the running ones alone showed three of the four messages sent.
    app = App("redis", redis_url, namespace, processes=1, threads=3)
    try:
        tokens = [app.send("spin")[0] for _ in range(4)]
        started: set[str] = set()

        def three_started() -> bool:
            for token in tokens:
                if token not in started and redis_client.lpop(f"{namespace}report:{token}"):
                    started.add(token)
            return len(started) == 3

        wait_until(three_started, "three messages start in the only worker process", BOOT_WAIT)
        wait_until(
            lambda: redis_client.llen(f"{namespace}broker:{app.queue}") == 0,
            "the worker process fetches the fourth message",
        )
        app.start_workers(1, 3)
        wait_until(
            lambda: app.backend.subscribers() == 2, "a second worker process listens", BOOT_WAIT
        )

        document = list_from_another_process(app, "--actor", "work")
        assert (document["answered"], document["expected"]) == (2, 2)
        messages = document["messages"]
        assert isinstance(messages, list) and len(messages) == 4
        assert sorted(entry["state"] for entry in messages) == ["running"] * 3 + ["waiting"]
        assert len({entry["pid"] for entry in messages}) == 1
        waiting = next(entry for entry in messages if entry["state"] == "waiting")
        assert waiting["started_at"] is None

        counted = subprocess.run(
            [
                sys.executable,
                "-m",
                "dramatiq_abort.cli",
                "abort",
                "--actor",
                "work",
                "--dry-run",
                "--redis",
                app.abort_redis_url,
                "--namespace",
                namespace,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=WAIT * 3,
            cwd=ROOT,
        ).stdout
        assert "3 running message(s) match now, and 1 that workers hold" in counted

        running = [entry["message_id"] for entry in messages if entry["state"] == "running"]
        app.middleware.abort_many([*running, waiting["message_id"]])
        for message_id in running:
            assert app.middleware.wait_outcome(message_id, WAIT) is Outcome.ABORTED
        # It starts once a thread is free, and is cancelled then.
        assert app.middleware.wait_outcome(waiting["message_id"], WAIT) is Outcome.CANCELLED
    finally:
        app.close()


def test_an_abort_of_a_finished_parent_from_the_cli_stops_its_children_in_every_process(
    app: App,
) -> None:
    token = uuid.uuid4().hex
    parent = app.app.fan_out.send(token, 2)
    reported = app.report(token)
    assert reported is not None and reported.startswith("sent ")
    children = reported.split()[1:]
    for number in range(2):
        assert app.report(f"{token}.{number}") == "started"
    # Not a child: it may wait behind them, and must run all the same.
    bystander_token, bystander = app.send("spin")

    app.abort_from_another_process(parent.message_id, "--reason", "parent stopped")

    for number in range(2):
        assert app.report(f"{token}.{number}") == "aborted"
    for child in children:
        assert app.middleware.wait_outcome(child, WAIT) is Outcome.ABORTED
        assert app.middleware.outcome_reason(child) == "parent stopped"
    assert app.report(bystander_token) == "started"
    # Still running once every child is stopped: the parent's abort passed it by.
    assert app.middleware.outcome(bystander.message_id) is None
    stop_them(app, [bystander.message_id])
    assert app.middleware.outcome_reason(bystander.message_id) != "parent stopped"


def on_another_database(url: str) -> str:
    """``url`` (a Redis URL) naming a neighbouring database of its server."""
    parts = urlsplit(url)
    database = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{database - 1 if database else 1}"))


def test_applications_on_two_databases_of_one_redis_keep_their_listings_and_rules_apart(
    redis_url: str, namespace: str, redis_client: redis.Redis
) -> None:
    # Redis hands what is published to the subscribers of every database:
    # with the same namespace, a listing counted the other application's
    # processes and waited for them, and a rule stopped its messages too.
    other_url = on_another_database(redis_url)
    with contextlib.ExitStack() as steps:
        other_client = redis.Redis.from_url(other_url)
        steps.callback(other_client.close)
        steps.callback(delete_namespace, other_client, namespace)
        ours = App("redis", redis_url, namespace, env=ONE_AT_A_TIME)
        steps.callback(ours.close)
        theirs = App("redis", other_url, namespace, processes=1, env=ONE_AT_A_TIME)
        steps.callback(theirs.close)
        wait_ready(ours)
        wait_ready(theirs)
        our_pids = run_on_both_processes(ours)
        their_token, their_message = theirs.send("spin")
        assert theirs.report(their_token) == "started"

        document = list_from_another_process(ours)
        assert (document["answered"], document["expected"]) == (2, 2)
        messages = document["messages"]
        assert isinstance(messages, list)
        assert {entry["message_id"] for entry in messages} == set(our_pids)
        listed = theirs.middleware.running_messages(timeout=WAIT)
        assert (listed.answered, listed.expected) == (1, 1)
        assert [message.message_id for message in listed.messages] == [their_message.message_id]

        # Each rule is for messages of the actor ``work`` sent before it.
        ours.abort_from_another_process("--actor", "work", "--reason", "ours")
        for message_id in our_pids:
            assert ours.middleware.wait_outcome(message_id, WAIT) is Outcome.ABORTED
            assert ours.middleware.outcome_reason(message_id) == "ours"
        our_token, our_message = ours.send("spin")
        assert ours.report(our_token) == "started"
        theirs.abort_from_another_process("--actor", "work", "--reason", "theirs")
        assert theirs.middleware.wait_outcome(their_message.message_id, WAIT) is Outcome.ABORTED
        # Stopped by their rule, not by ours before it.
        assert theirs.middleware.outcome_reason(their_message.message_id) == "theirs"
        # Asked after their rule: had it reached our workers, they read it first.
        listed = ours.middleware.running_messages(timeout=WAIT)
        assert [(message.message_id, message.abort_requested) for message in listed.messages] == [
            (our_message.message_id, False)
        ]
        stop_them(ours, [our_message.message_id])
        assert ours.middleware.outcome_reason(our_message.message_id) is None
