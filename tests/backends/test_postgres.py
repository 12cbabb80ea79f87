"""The PostgreSQL backend beyond the contract every backend passes (see
tests/backends/test_contract.py): its URL and namespace, its tables and notifications,
and dramatiq workers that abort through it, its connections killed."""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import select
import socket
import subprocess
import sys
import threading
from typing import Any

import dramatiq
import psycopg
import pytest
import redis
from dramatiq.brokers.stub import StubBroker

from dramatiq_abort import Abortable, AbortMode, Event, Outcome, abort, running_messages
from dramatiq_abort.backend import Subscription
from dramatiq_abort.backends import check_url, from_url
from dramatiq_abort.backends.postgres import PostgresBackend
from dramatiq_abort.backends.postgres.backend import FRAGMENT_SIZE
from dramatiq_abort.backends.sockets import KEEPALIVE
from dramatiq_abort.checks import check_postgres_url
from dramatiq_abort.cli import main
from dramatiq_abort.settings import URL_VARIABLE

from ..support import (
    BOOT_WAIT,
    QUEUED_FOR,
    WAIT,
    App,
    GatedPostgresBackend,
    assert_a_cancelled_message_never_runs,
    backend_in,
    connected_watcher,
    postgres_tables,
    recorded,
    run_on_both_processes,
    spin_until_aborted,
    start_worker,
    wait_until,
    wait_until_cut_off,
)
from ..support.web import request, serving

pytestmark = pytest.mark.timeout(60)


def received(subscription: Subscription, count: int) -> list[Event]:
    """The first ``count`` events pushed to ``subscription``."""
    events: list[Event] = []
    while len(events) < count:
        assert select.select([subscription.fileno()], [], [], WAIT)[0], f"{len(events)} came"
        events.extend(timed.event for timed in subscription.receive())
    return events


def subscriber_pids(backend: PostgresBackend) -> list[int]:
    """The server processes of the namespace's subscriptions."""
    with backend.pool.connection() as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
            [backend.application_name],
        ).fetchall()
    return [pid for (pid,) in rows]


def terminate(backend: PostgresBackend, pid: int) -> None:
    """End the server process ``pid``, and with it its connection."""
    with backend.pool.connection() as connection:
        connection.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_from_url_builds_a_postgres_backend_for_both_schemes(
    postgres_url: str, postgres_namespace: str
) -> None:
    for url in (postgres_url, postgres_url.replace("postgresql://", "postgres://", 1)):
        backend = from_url(url, namespace=postgres_namespace)
        assert isinstance(backend, PostgresBackend)
        try:
            assert backend.namespace == postgres_namespace
            backend.notify([Event("abort:m", {})], ttl=60_000)
            assert backend.poll("abort:m") == Event("abort:m", {})
        finally:
            backend.drop()
            backend.close()


def redis_modules_imported_by(code: str, environ: dict[str, str] | None = None) -> list[str]:
    """The modules of redis-py that a process of its own imports to run
    ``code`` (this one imported them long ago), with ``environ`` added to
    its environment."""
    listed = "import json, sys; print(json.dumps(sorted(sys.modules)))"
    finished = subprocess.run(
        [sys.executable, "-c", f"{code}\n{listed}"],
        env={**os.environ, **(environ or {})},
        capture_output=True,
        text=True,
        timeout=BOOT_WAIT,
        check=True,
    )
    modules: list[str] = json.loads(finished.stdout.splitlines()[-1])
    return [name for name in modules if name.partition(".")[0] == "redis"]


def test_the_postgres_backend_never_imports_redis_py() -> None:
    assert redis_modules_imported_by("from dramatiq_abort.backends import PostgresBackend") == []


def test_the_command_never_imports_redis_py_for_a_postgres_url(
    postgres_url: str, postgres_namespace: str
) -> None:
    code = (
        "from dramatiq_abort.cli import main\n"
        f"assert main(['list', '--namespace', {postgres_namespace!r}, '--wait', '0.1']) == 0"
    )
    assert redis_modules_imported_by(code, {URL_VARIABLE: postgres_url}) == []


def test_a_url_of_several_hosts_is_taken_as_libpq_takes_it() -> None:
    url = "postgresql://app@db-1:5432,db-2:5433/tasks"
    assert check_postgres_url(url) == url
    assert check_url(url) == url


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("postgresql://user:s3cret@host:port/db", "cannot be parsed"),
        ("postgresql://user:s3cret%zz@host/db", "hold a password"),
        ("postgresql://host/db?password=s3cret%zz", "hold a password"),
        ("mysql://user:s3cret@host/db", "must start with postgresql:// or postgres://"),
        ("postgresql://host/db?no_such_option=1", "no_such_option"),
    ],
)
def test_a_bad_url_is_refused_without_repeating_its_password(url: str, error: str) -> None:
    with pytest.raises(ValueError, match=error) as refused:
        PostgresBackend.from_url(url)
    assert "s3cret" not in str(refused.value)


def test_a_backend_and_its_errors_never_show_the_password_of_its_url() -> None:
    # Port 1: nothing listens there, the connection is refused at once.
    backend = PostgresBackend.from_url("postgresql://app:s3cret@127.0.0.1:1/db")
    shown = repr(backend) + repr(vars(backend)) + repr(vars(backend.pool))
    with pytest.raises(psycopg.OperationalError) as failed:
        backend.poll("abort:m")
    assert "s3cret" not in shown + str(failed.value)


@pytest.mark.parametrize("namespace", ["dramatiq:aborts:", "Upper", "1st", "x" * 41, "", 7])
def test_a_bad_namespace_is_refused_before_anything_is_written(
    postgres_url: str, namespace: Any
) -> None:
    with pytest.raises(ValueError, match=r"namespace must be a lower-case SQL name.*not"):
        PostgresBackend.from_url(postgres_url, namespace=namespace)


def test_namespaces_do_not_see_each_other(postgres_url: str, postgres_namespace: str) -> None:
    with contextlib.ExitStack() as steps:
        ours = steps.enter_context(backend_in(postgres_url, postgres_namespace + "_a"))
        theirs = steps.enter_context(backend_in(postgres_url, postgres_namespace + "_b"))
        subscription = theirs.subscribe()
        try:
            ours.notify([Event("abort:shared-id", {})], ttl=60_000)
            ours.record_outcome("shared-id", Outcome.ABORTED.value, 60_000, reason="ours")
            assert theirs.poll("abort:shared-id") is None
            assert theirs.recorded() == []
            assert theirs.wait_outcome("shared-id", 0) is None
            assert theirs.subscribers() == 1 and ours.subscribers() == 0
            assert not select.select([subscription.fileno()], [], [], 0.05)[0]
        finally:
            subscription.close()


def test_a_batch_larger_than_a_notification_arrives_whole(
    postgres_backend: PostgresBackend,
) -> None:
    subscription = postgres_backend.subscribe()
    try:
        batch = [Event(f"abort:{number:05}-ü", {"abort_timeout": number}) for number in range(3000)]
        assert len(str(batch)) > 10 * FRAGMENT_SIZE
        postgres_backend.notify(batch, ttl=60_000)
        assert received(subscription, len(batch)) == batch
        assert subscription.receive() == []
        assert len(postgres_backend.recorded()) == len(batch)
    finally:
        subscription.close()


def test_malformed_notifications_and_records_are_skipped_with_a_warning(
    postgres_backend: PostgresBackend, caplog: pytest.LogCaptureFixture
) -> None:
    subscription = postgres_backend.subscribe()
    try:
        postgres_backend.notify([Event("abort:good", {})], ttl=60_000)
        assert received(subscription, 1) == [Event("abort:good", {})]
        with postgres_backend.pool.connection() as connection:
            for junk in ["not a fragment", "b 0 x {}", "c 5 2 {}", "d 0 1 not json"]:
                connection.execute("SELECT pg_notify(%s, %s)", [postgres_backend.channel, junk])
            connection.execute(
                f"INSERT INTO {postgres_backend.namespace}_events VALUES"
                " ('abort:bad', '[1, 2]', 60000, now() + interval '1 minute')"
            )
        with caplog.at_level(logging.WARNING):
            postgres_backend.notify([Event("abort:after", {})], ttl=60_000)
            assert received(subscription, 1) == [Event("abort:after", {})]
            assert postgres_backend.poll("abort:bad") is None
            assert {timed.event.key for timed in postgres_backend.recorded()} == {
                "abort:good",
                "abort:after",
            }
        assert sum("malformed" in record.message for record in caplog.records) == 6
    finally:
        subscription.close()


@pytest.mark.timeout(120)
def test_a_subscription_opened_while_batches_stream_in_misses_none(
    postgres_backend: PostgresBackend,
) -> None:
    # Two threads notify without pause, small batches and batches of many
    # fragments, while subscriptions open and close: every event notified
    # is in the catch-up of a subscription or pushed to it, whole.
    notified: list[Event] = []
    stop = threading.Event()
    failures: list[BaseException] = []

    def stream(name: str) -> None:
        number = 0
        try:
            while not stop.is_set():
                size = 1 if number % 2 else 500
                batch = [Event(f"abort:{name}-{number}-{i}", {"n": i}) for i in range(size)]
                postgres_backend.notify(batch, ttl=60_000)
                notified.extend(batch)
                number += 1
        except BaseException as e:
            failures.append(e)

    def wait_for_more(count: int) -> int:
        """Wait until ``count`` events are notified; how many are now."""
        wait_until(lambda: len(notified) >= count or failures, "more batches are notified")
        assert failures == []
        return len(notified)

    streams = [threading.Thread(target=stream, args=(name,)) for name in "ab"]
    for thread in streams:
        thread.start()
    try:
        for _ in range(10):
            wait_for_more(len(notified) + 1)
            subscription = postgres_backend.subscribe()
            try:
                seen = {timed.event.key for timed in subscription.recorded()}
                until = wait_for_more(len(notified) + 1000)
                expected = {event.key for event in notified[:until]}
                while not expected <= seen:
                    missing = len(expected - seen)
                    assert select.select([subscription.fileno()], [], [], WAIT)[0], missing
                    seen.update(timed.event.key for timed in subscription.receive())
            finally:
                subscription.close()
    finally:
        stop.set()
        for thread in streams:
            thread.join(WAIT)
    assert failures == []


def test_processes_that_start_together_create_the_tables_once(
    postgres_url: str, postgres_namespace: str
) -> None:
    # One backend per thread: as many connections as processes booting at once.
    starting = 8
    ready = threading.Barrier(starting)
    failures: list[BaseException] = []

    def boot(backend: PostgresBackend, number: int) -> None:
        try:
            ready.wait(WAIT)
            backend.notify([Event(f"abort:{number}", {})], ttl=60_000)
        except BaseException as e:
            failures.append(e)

    with contextlib.ExitStack() as steps:
        backends = [
            steps.enter_context(backend_in(postgres_url, postgres_namespace))
            for _ in range(starting)
        ]
        threads = [
            threading.Thread(target=boot, args=(backend, number))
            for number, backend in enumerate(backends)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        assert failures == []
        assert len(backends[0].recorded()) == starting
        assert postgres_tables(backends[0]) == [
            f"{postgres_namespace}_{table}" for table in ("answers", "events", "outcomes", "states")
        ]
    assert postgres_tables(backends[0]) == []


def test_subscribers_counts_the_open_subscriptions_of_the_namespace(
    postgres_backend: PostgresBackend,
) -> None:
    assert postgres_backend.subscribers() == 0
    first, second = postgres_backend.subscribe(), postgres_backend.subscribe()
    try:
        assert postgres_backend.subscribers() == 2
        first.close()
        wait_until(lambda: postgres_backend.subscribers() == 1, "a closed subscription ends")
    finally:
        first.close()
        second.close()


def test_a_subscription_probes_its_idle_connection(postgres_backend: PostgresBackend) -> None:
    # It sends no statement while no abort comes: only TCP keepalive can
    # tell that the server's host has gone without closing the connection.
    subscription = postgres_backend.subscribe()
    try:
        with socket.socket(fileno=os.dup(subscription.fileno())) as sock:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
            if hasattr(socket, "TCP_KEEPIDLE"):
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVE[0]
    finally:
        subscription.close()


def test_a_pooled_connection_killed_while_idle_is_replaced(
    postgres_backend: PostgresBackend,
) -> None:
    postgres_backend.notify([Event("abort:m", {})], ttl=60_000)
    with postgres_backend.pool.connection() as idle:
        # Terminated from another connection of the pool.
        terminate(postgres_backend, idle.info.backend_pid)
    wait_until(
        lambda: idle.closed or select.select([idle.fileno()], [], [], 0)[0],
        "the server closes the connection",
    )
    assert postgres_backend.poll("abort:m") == Event("abort:m", {})
    assert idle.closed


def _poll_in_child(backend: PostgresBackend) -> None:
    # Exits with 0 only when the child reads through a connection of its own.
    with backend.pool.connection() as connection:
        own = connection.info.backend_pid
    ok = backend.poll("abort:m") == Event("abort:m", {}) and own not in PARENT_PIDS
    os._exit(0 if ok else 1)


#: The server processes of the parent's pooled connections, for the child.
PARENT_PIDS: list[int] = []


def test_a_forked_process_leaves_the_parents_connections_alone(
    postgres_backend: PostgresBackend,
) -> None:
    postgres_backend.notify([Event("abort:m", {})], ttl=60_000)
    with postgres_backend.pool.connection() as connection:
        PARENT_PIDS[:] = [connection.info.backend_pid]
    child = multiprocessing.get_context("fork").Process(
        target=_poll_in_child, args=(postgres_backend,)
    )
    child.start()
    try:
        child.join(WAIT)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
            child.join()
    with postgres_backend.pool.connection() as connection:
        assert connection.info.backend_pid == PARENT_PIDS[0]
        assert postgres_backend.poll("abort:m") == Event("abort:m", {})


def test_a_real_worker_aborts_a_running_message_and_cancels_a_queued_one(
    stub_broker: StubBroker, postgres_backend: PostgresBackend
) -> None:
    middleware = Abortable(backend=postgres_backend)
    started, interrupted = threading.Event(), threading.Event()
    ran: list[str] = []

    @dramatiq.actor(max_retries=0)
    def crunch(name: str) -> None:
        ran.append(name)
        spin_until_aborted(started.set, interrupted.set)

    worker = start_worker(stub_broker, middleware)
    try:
        queued = crunch.send_with_options(args=("queued",), delay=QUEUED_FOR)
        abort(queued.message_id, mode="cancel", reason="not needed")  # type: ignore[arg-type]
        running = crunch.send("running")
        assert started.wait(WAIT)
        listed = running_messages(timeout=WAIT)
        assert running.message_id in {message.message_id for message in listed.messages}
        assert (listed.answered, listed.expected) == (1, 1)

        abort(running.message_id, reason="deploy")
        assert interrupted.wait(WAIT)
        assert middleware.wait_outcome(running.message_id, WAIT) is Outcome.ABORTED
        assert middleware.outcome_reason(running.message_id) == "deploy"
        assert middleware.wait_outcome(queued.message_id, WAIT) is Outcome.CANCELLED
        assert middleware.outcome_reason(queued.message_id) == "not needed"
        stub_broker.join(crunch.queue_name)
        worker.join()
        assert ran == ["running"]
    finally:
        worker.stop()


def test_a_watcher_whose_connection_is_killed_reconnects_and_catches_up(
    stub_broker: StubBroker, postgres_url: str, postgres_namespace: str
) -> None:
    with backend_in(postgres_url, postgres_namespace, GatedPostgresBackend) as backend:
        middleware = Abortable(backend=backend)
        started, interrupted = threading.Event(), threading.Event()
        ran: list[str] = []

        @dramatiq.actor(max_retries=0)
        def crunch() -> None:
            spin_until_aborted(started.set, interrupted.set)

        @dramatiq.actor
        def job(name: str) -> None:
            ran.append(name)

        worker = start_worker(stub_broker, middleware)
        try:
            watcher = connected_watcher(middleware)
            backend.subscriptions_allowed.clear()
            (pid,) = subscriber_pids(backend)
            terminate(backend, pid)
            wait_until_cut_off(watcher)
            # While no subscription listens, a cancel is seen by asking the
            # backend as the message starts...
            assert_a_cancelled_message_never_runs(stub_broker, worker, job, ran)
            # ...and an abort reaches a running message only by the
            # catch-up of the watcher as it reconnects.
            running = crunch.send()
            assert started.wait(WAIT)
            abort(running.message_id)

            backend.subscriptions_allowed.set()
            assert interrupted.wait(WAIT)
            assert watcher.connected.wait(WAIT)
            (reconnected,) = subscriber_pids(backend)
            assert reconnected != pid
            assert middleware.wait_outcome(running.message_id, WAIT) is Outcome.ABORTED
        finally:
            backend.subscriptions_allowed.set()
            worker.stop()


@pytest.mark.processes
@pytest.mark.timeout(120)
def test_worker_processes_cancel_abort_and_list_through_postgres(
    redis_url: str,
    namespace: str,
    redis_client: redis.Redis,
    postgres_backend: PostgresBackend,
    postgres_url: str,
) -> None:
    # The broker and the reports on Redis, the aborts on PostgreSQL.
    env = {
        "APP_ABORT_URL": postgres_url,
        "APP_ABORT_NAMESPACE": postgres_backend.namespace,
        "dramatiq_queue_prefetch": "1",
    }
    app = App("redis", redis_url, namespace, env=env)
    middleware = Abortable(backend=postgres_backend)
    try:
        token, _ = app.send("quick")
        assert app.report(token, timeout=BOOT_WAIT) == "started"
        wait_until(
            lambda: postgres_backend.subscribers() == 2, "both worker processes listen", BOOT_WAIT
        )

        queued_token, queued = app.send("spin", delay=QUEUED_FOR)
        abort(queued.message_id, middleware=middleware, mode=AbortMode.CANCEL)
        assert middleware.wait_outcome(queued.message_id, WAIT) is Outcome.CANCELLED
        assert app.report(queued_token, timeout=0.2) is None

        pids = run_on_both_processes(app)
        listed = middleware.running_messages(queue=app.queue, timeout=WAIT)
        assert (listed.answered, listed.expected) == (2, 2)
        assert {message.message_id: message.pid for message in listed.messages} == pids

        middleware.abort_many(list(pids), reason="deploy")
        for message_id in pids:
            assert middleware.wait_outcome(message_id, WAIT) is Outcome.ABORTED
            assert middleware.outcome_reason(message_id) == "deploy"
    finally:
        app.close()


def read_only(url: str) -> str:
    """``url`` with libpq's option that makes every transaction read-only:
    a statement that writes a row or changes the schema then fails."""
    return url + ("&" if "?" in url else "?") + "options=-c%20default_transaction_read_only%3Don"


def run_the_read_only_commands(
    url: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> tuple[str, str, Any]:
    """What ``list``, ``abort --actor export --dry-run`` and the read-only
    page's listing answer, each through a connection that cannot write; the
    page's outcome of a message is asked too, and must be none."""
    options = ["--backend", read_only(url), "--namespace", namespace]
    capsys.readouterr()
    assert main(["list", "--wait", str(WAIT), *options]) == 0, capsys.readouterr().err
    listed = capsys.readouterr().out
    assert main(["abort", "--actor", "export", "--dry-run", *options]) == 0
    counted = capsys.readouterr().out
    reader = PostgresBackend.from_url(read_only(url), namespace=namespace)
    try:
        with serving(reader, allow_abort=False) as server:
            status, outcome = request(server, "GET", "/api/outcome?message_id=some-id")
            assert (status, outcome["outcome"]) == (200, None)
            status, page = request(server, "GET", "/api/messages")
            assert status == 200, page
        assert reader.records("some-id") == (None, None, None, None)
    finally:
        reader.close()
    return listed, counted, page


def test_list_dry_run_and_the_read_only_page_create_no_table_and_answer_an_empty_listing(
    postgres_url: str,
    postgres_backend: PostgresBackend,
    postgres_namespace: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    listed, counted, page = run_the_read_only_commands(postgres_url, postgres_namespace, capsys)
    assert "No worker listens" in listed
    assert "dry run, no rule recorded: 0 running message(s)" in counted
    assert (page["messages"], page["answered"], page["expected"]) == ([], 0, 0)
    assert postgres_tables(postgres_backend) == []


def test_list_dry_run_and_the_read_only_page_write_no_row_while_a_worker_answers(
    stub_broker: StubBroker,
    postgres_url: str,
    postgres_backend: PostgresBackend,
    postgres_namespace: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    started, release = threading.Event(), threading.Event()

    @dramatiq.actor(actor_name="export", max_retries=0)
    def export() -> None:
        started.set()
        release.wait(WAIT)

    worker = start_worker(stub_broker, Abortable(backend=postgres_backend))
    try:
        message = export.send()
        assert started.wait(WAIT)
        listed, counted, page = run_the_read_only_commands(postgres_url, postgres_namespace, capsys)
    finally:
        release.set()
        worker.stop()
    assert message.message_id in listed and "1 of 1 worker processes answered" in listed
    assert "dry run, no rule recorded: 1 running message(s) match now" in counted
    assert [entry["message_id"] for entry in page["messages"]] == [message.message_id]
    # Nothing was sent: the listings' inquiries were notified, not recorded.
    assert recorded(postgres_backend) == []
