"""What several test modules share."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn

import dramatiq
import psycopg
import pytest
import redis
from dramatiq.results.backends import RedisBackend as RedisResultBackend

from dramatiq_abort import Abort, Abortable, AbortMode, Event, EventBackend, abort
from dramatiq_abort.backends import PostgresBackend, RedisBackend
from dramatiq_abort.cli import main
from dramatiq_abort.wire import is_inquiry
from dramatiq_abort.worker.watcher import Watcher

#: How long a test waits for anything before it calls it a failure.
WAIT = 10.0
#: Milliseconds a message that must still be queued when the test aborts it
#: in its own process waits before a worker takes it: far longer than an
#: abort takes, even on a busy machine.
QUEUED_FOR = 1_000
#: How long a test waits for freshly started worker processes to take their
#: first message: on a busy machine, starting Python and dramatiq takes seconds.
BOOT_WAIT = 60.0
ROOT = Path(__file__).resolve().parent.parent
RABBITMQ_URL = os.environ.get("DRAMATIQ_ABORT_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672")


def spin_until_aborted(started: Callable[[], object], interrupted: Callable[[], object]) -> None:
    """Call ``started``, then run pure Python (for at most ``WAIT`` seconds)
    until an Abort stops it; call ``interrupted`` and let the Abort go on."""
    try:
        started()
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            pass
    except Abort:
        interrupted()
        raise


def recorded(backend: EventBackend) -> list[Event]:
    """Every event ``backend`` holds, as a watcher catching up reads them."""
    subscription = backend.subscribe()
    try:
        return [timed.event for timed in subscription.recorded()]
    finally:
        subscription.close()


def wait_until(condition: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def start_worker(broker: dramatiq.Broker, middleware: Abortable) -> dramatiq.Worker:
    """A started two-thread Worker on ``broker``, with ``middleware`` added."""
    broker.add_middleware(middleware)
    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=2)
    worker.start()
    return worker


def connected_watcher(middleware: Abortable) -> Watcher:
    """The watcher of a worker started with ``middleware``: subscribed, as
    the worker waits for that when it boots."""
    watcher = middleware._watcher
    assert watcher is not None and watcher.connected.is_set()
    return watcher


class _Gated(EventBackend):
    """A backend whose push channel can be kept from reconnecting: while
    :attr:`subscriptions_allowed` is clear, ``subscribe()`` fails as its
    client does when the server cannot be reached."""

    #: What ``subscribe()`` raises while held back: the client's own error.
    held_back_error: type[Exception] = ConnectionError

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.subscriptions_allowed = threading.Event()
        self.subscriptions_allowed.set()

    def subscribe(self) -> Any:
        if not self.subscriptions_allowed.is_set():
            raise self.held_back_error("subscriptions are held back by the test")
        return super().subscribe()


class GatedBackend(_Gated, RedisBackend):
    """A RedisBackend whose push channel can be kept from reconnecting."""

    held_back_error = redis.ConnectionError


class GatedPostgresBackend(_Gated, PostgresBackend):
    """A PostgresBackend whose push channel can be kept from reconnecting."""

    held_back_error = psycopg.OperationalError


def wait_until_cut_off(watcher: Watcher) -> None:
    """Wait until ``watcher`` has noticed that it lost its backend."""
    wait_until(lambda: not watcher.connected.is_set(), "the watcher notices it lost its backend")


def assert_a_cancelled_message_never_runs(
    broker: dramatiq.Broker, worker: dramatiq.Worker, job: dramatiq.Actor[Any, Any], ran: list[str]
) -> None:
    """Cancel a message of ``job`` (an actor that appends its argument to
    ``ran``) before it is enqueued, send another, and check that only the
    other one ran."""
    cancelled = job.message("cancelled")
    abort(cancelled.message_id, mode=AbortMode.CANCEL)
    broker.enqueue(cancelled)
    job.send("kept")
    broker.join(job.queue_name)
    worker.join()
    assert ran == ["kept"]


def unavailable(message: str) -> NoReturn:
    """Skip the test for want of a service or a program, or fail it under
    ``CI=true``, where everything the tests need is installed."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_rabbitmq() -> None:
    """Skip the test when no RabbitMQ answers, except under ``CI=true``
    where that fails."""
    import pika

    try:
        pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL)).close()
    except Exception as e:
        unavailable(
            f"no RabbitMQ answers at {RABBITMQ_URL} (set DRAMATIQ_ABORT_TEST_RABBITMQ): {e}"
        )


class App:
    """``dramatiq`` commands serving tests/programs/cli_app.py, and the
    test's own view of their broker, abort backend and reports.

    The first command starts at once; :meth:`start_workers` starts more on
    the same queue. Reports, and the RedisBroker, live on ``redis_url``;
    the abort backend on ``abort_redis_url`` (by default the same). Two
    Apps may run at once, on different Redis databases. ``env``
    adds to the commands' environment, such as ``dramatiq_queue_prefetch``.
    """

    def __init__(
        self,
        kind: str,
        redis_url: str,
        namespace: str,
        *,
        processes: int = 2,
        threads: int = 2,
        abort_redis_url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.abort_redis_url = abort_redis_url or redis_url
        self.namespace = namespace
        self.queue = f"abort_test_{uuid.uuid4().hex[:12]}"
        settings = {
            "APP_BROKER": kind,
            "APP_REDIS_URL": redis_url,
            "APP_ABORT_REDIS_URL": self.abort_redis_url,
            "APP_RABBITMQ_URL": RABBITMQ_URL,
            "APP_NAMESPACE": namespace,
            "APP_QUEUE": self.queue,
        }
        # The same application, imported here to send messages, with no
        # setting left over from an earlier test's.
        #: What this test changed in the environment, put back by :meth:`close`.
        self._previous = {
            name: os.environ.pop(name) for name in list(os.environ) if name.startswith("APP_")
        }
        os.environ.update(settings)
        self.env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
        import tests.programs.cli_app as app

        self.app = importlib.reload(app)
        #: This application's broker and actor: a second App reloads the
        #: module, whose names then hold the second one's.
        self.broker = self.app.broker
        self.work = self.app.work
        self.reports = redis.Redis.from_url(redis_url)
        self.backend = RedisBackend.from_url(self.abort_redis_url, namespace=namespace)
        self.middleware = Abortable(backend=self.backend)
        self.commands: list[subprocess.Popen[bytes]] = []
        self.process = self.start_workers(processes, threads)

    def start_workers(self, processes: int, threads: int) -> subprocess.Popen[bytes]:
        """One more ``dramatiq`` command on the queue, in a process group of its own."""
        command = start_dramatiq(
            "tests.programs.cli_app",
            processes,
            threads,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.commands.append(command)
        return command

    def send(
        self, mode: str, *, delay: int | None = None, **options: Any
    ) -> tuple[str, dramatiq.Message[Any]]:
        token, message = self.message(mode, **options)
        return token, self.broker.enqueue(message, delay=delay)

    def message(self, mode: str, **options: Any) -> tuple[str, dramatiq.Message[Any]]:
        """A message of ``mode``, and its token, not sent yet: ``self.broker.enqueue``
        sends it, such as after an abort whose command may take longer to start
        on a busy machine than a delay would last."""
        token = uuid.uuid4().hex
        return token, self.work.message_with_options(args=(token, mode), **options)

    def report(self, token: str, timeout: float = WAIT) -> str | None:
        """The next thing the worker processes reported of ``token``."""
        reported = self.report_and_pid(token, timeout)
        return None if reported is None else reported[0]

    def report_and_pid(self, token: str, timeout: float = WAIT) -> tuple[str, int] | None:
        """The next thing reported of ``token``, and the pid of the worker
        process that reported it."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            # Short blocks: redis-py's reads time out after a few seconds.
            popped = self.reports.blpop([f"{self.namespace}report:{token}"], min(left, 2))
            if popped is not None:
                event, pid = json.loads(popped[1])
                return str(event), int(pid)
        return None

    def abort_from_another_process(self, *arguments: str) -> None:
        """Run ``dramatiq-abort abort`` with ``arguments`` (message ids, or
        ``--actor``/``--queue``, and options) against the workers' backend."""
        subprocess.run(
            [
                sys.executable,
                "-m",
                "dramatiq_abort.cli",
                "abort",
                *arguments,
                "--redis",
                self.abort_redis_url,
                "--namespace",
                self.namespace,
            ],
            check=True,
            timeout=WAIT * 3,
            cwd=ROOT,
        )

    def close(self) -> None:
        """Stop the commands and close the clients; every step runs even
        if one before it fails."""
        with contextlib.ExitStack() as steps:
            # Callbacks run last-in, first-out: registered in reverse.
            steps.callback(self._restore_environment)
            steps.callback(self.backend.client.close)
            steps.callback(self.reports.close)
            steps.callback(self.broker.close)
            steps.callback(self._delete_queues)
            for command in self.commands:
                steps.callback(stop_process_group, command)

    def _delete_queues(self) -> None:
        broker = self.broker
        if hasattr(broker, "channel"):
            for name in (self.queue, f"{self.queue}.DQ", f"{self.queue}.XQ"):
                broker.channel.queue_delete(name)

    def _restore_environment(self) -> None:
        for name in [name for name in os.environ if name.startswith("APP_")]:
            del os.environ[name]
        os.environ.update(self._previous)


def run_on_both_processes(app: App) -> dict[str, int]:
    """Two ``spin`` messages, one in each worker process: their ids and pids."""
    sent = [app.send("spin") for _ in range(2)]
    pids = {}
    for token, message in sent:
        # The other process may still be booting.
        reported = app.report_and_pid(token, BOOT_WAIT)
        assert reported is not None and reported[0] == "started"
        pids[message.message_id] = reported[1]
    assert len(set(pids.values())) == 2
    return pids


def start_dramatiq(
    app: str, processes: int, threads: int, *, env: dict[str, str], stdout: Any, stderr: Any
) -> subprocess.Popen[bytes]:
    """The ``dramatiq`` command on module ``app``, run from the project's
    root in a process group of its own (see :func:`stop_process_group`)."""
    return subprocess.Popen(
        [sys.executable, "-m", "dramatiq", app, "-p", str(processes), "-t", str(threads)],
        cwd=ROOT,
        env=env,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """Stop ``process``, leader of a process group, and every process of
    its group: SIGTERM, then SIGKILL if they linger."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(WAIT * 3)
    # Also when the leader is gone already: none of its children may outlive it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


class PrivateRedis:
    """A redis-server of the test's own, on a free loopback port, that the
    test may stop and start again."""

    def __init__(self, directory: str, *options: str, config: str | None = None) -> None:
        """``options`` are extra ``redis-server`` arguments, such as
        ``"--cluster-enabled", "yes"``; ``config`` a configuration file."""
        self.options = options
        self.config = config
        # Low enough for a cluster node: any of these servers may be one.
        self.port = free_port(below=REDIS_CLUSTER_PORTS_BELOW)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                *([self.config] if self.config else []),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.directory,
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise RuntimeError(
                            f"redis-server did not start on port {self.port}"
                        ) from None
                    time.sleep(0.01)
                finally:
                    client.close()
        except BaseException:
            # Whatever stopped the wait (a test's timeout too), the server
            # must not outlive the test.
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


def start_private_redis(
    directory: str,
    *options: str,
    config: str | None = None,
    server_class: Callable[..., PrivateRedis] = PrivateRedis,
) -> PrivateRedis:
    """A started :class:`PrivateRedis` (or ``server_class``, called as it
    is); skips the test when no ``redis-server`` is installed, except under
    ``CI=true`` where that fails."""
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed: tests that restart Redis need their own")
    attempts_left = 3
    while True:
        server = server_class(directory, *options, config=config)
        try:
            server.start()
            return server
        except RuntimeError:
            # The free port found may have been taken meanwhile: try another.
            attempts_left -= 1
            if not attempts_left:
                raise


class NamespacedResults(RedisResultBackend):  # type: ignore[misc]
    """dramatiq's Redis result backend with its keys in the test's namespace:
    dramatiq names a result by a hash of its namespace and message, so the
    key would escape the namespace and the clean-up."""

    def build_message_key(self, message: Any) -> str:
        return f"{self.namespace}:{super().build_message_key(message)}"


def postgres_tables(backend: PostgresBackend) -> list[str]:
    """The tables of ``backend``'s namespace that exist."""
    with backend.pool.connection() as connection:
        rows = connection.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE %s ORDER BY tablename",
            [backend.namespace.replace("_", "\\_") + "\\_%"],
        ).fetchall()
    return [name for (name,) in rows]


def assert_nothing_written(backend: EventBackend) -> None:
    """``backend`` holds nothing: no table of a PostgreSQL backend's
    namespace, no key under a Redis backend's, no event in any other."""
    if isinstance(backend, PostgresBackend):
        assert postgres_tables(backend) == []
    elif isinstance(backend, RedisBackend):
        assert list(backend.client.scan_iter(match=backend.namespace + "*")) == []
    else:
        assert recorded(backend) == []


def delete_namespace(client: Any, namespace: str) -> None:
    """Delete every key of ``client``'s database under ``namespace``, and only those."""
    keys = list(client.scan_iter(match=namespace + "*"))
    if keys:
        client.delete(*keys)


def status_of(argv: list[str]) -> int:
    """The exit status of the command: what ``main`` returns, or the code
    of argparse's exit on a bad argument."""
    try:
        return main(argv)
    except SystemExit as e:
        return int(str(e.code))


def assert_refused(
    argv: list[str],
    says: str,
    capsys: pytest.CaptureFixture[str],
    redis_client: redis.Redis,
    namespace: str,
) -> None:
    """The command exits with status 2, its error says ``says``, and it
    wrote nothing under ``namespace``."""
    assert status_of(argv) == 2
    assert says in capsys.readouterr().err
    assert list(redis_client.scan_iter(match=namespace + "*")) == []


#: Ports a Redis cluster node may take: it also listens 10000 ports higher,
#: for the bus, and refuses to start on a port above 55535.
REDIS_CLUSTER_PORTS_BELOW = 55536


def free_port(below: int = 65536) -> int:
    """A loopback TCP port lower than ``below`` that nothing listens on now."""
    # The system picks among its ephemeral ports (often 32768 to 60999) at
    # random: a few picks find one below a bound inside that range.
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port < below:
            return port
    raise RuntimeError(f"the system offered no free loopback port below {below}")


@contextlib.contextmanager
def backend_in(url: str, namespace: str, kind: Any = PostgresBackend) -> Iterator[Any]:
    """A PostgreSQL backend of class ``kind`` on ``namespace``, its tables
    dropped and its connections closed afterwards."""
    backend = kind.from_url(url, namespace=namespace)
    with contextlib.ExitStack() as steps:
        steps.callback(backend.close)
        steps.callback(backend.drop)
        yield backend


#: A socket timeout for a client, in seconds, shorter than the waits of
#: :func:`assert_waits_outlast_the_socket_timeout`.
SHORT_SOCKET_TIMEOUT = 1.0
#: Those waits, in seconds: over twice the socket timeout.
LONG_WAIT = 2.5


def assert_waits_outlast_the_socket_timeout(backend: RedisBackend) -> None:
    """Check that each wait of ``backend``, whose client gives up a read
    after ``SHORT_SOCKET_TIMEOUT``, lasts the ``LONG_WAIT`` asked and ends
    as a wait ends rather than with the client's timeout: a listing with a
    worker process that never answers, an outcome, an event; and that a
    subscription idle all that time still receives."""
    # A subscription nobody reads: a worker process that is stuck.
    silent = backend.subscribe()
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(1) as pool:
            # At once, but not with wait_many(), which the listing would
            # count as one more worker process.
            outcome = pool.submit(backend.wait_outcome, "no-such-message", LONG_WAIT)
            listing = Abortable(backend=backend).running_messages(timeout=LONG_WAIT)
            assert outcome.result(WAIT) is None
        assert listing.answered == 0
        # Unknown on a cluster, whose nodes count only their own subscribers.
        assert listing.expected in (1, None)
        assert time.monotonic() - started >= LONG_WAIT
        started = time.monotonic()
        assert backend.wait_many(["abort:no-such-message"], int(LONG_WAIT * 1000)) is None
        assert time.monotonic() - started >= LONG_WAIT
        # The listing's inquiry came long ago: received, it leaves nothing.
        assert all(is_inquiry(timed.event) for timed in silent.receive())
        backend.notify([Event("abort:idle-listener", {})], ttl=60_000)
        assert select.select([silent.fileno()], [], [], WAIT)[0]
        assert [timed.event.key for timed in silent.receive()] == ["abort:idle-listener"]
    finally:
        silent.close()
