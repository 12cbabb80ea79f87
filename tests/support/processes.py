"""``dramatiq`` worker processes serving tests/programs/cli_app.py, and their commands."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import dramatiq
import redis

from dramatiq_abort import Abortable
from dramatiq_abort.backends import RedisBackend

from .marks import require_mark
from .servers import RABBITMQ_URL
from .waiting import BOOT_WAIT, WAIT

#: The project's root, where commands run so that they import this checkout.
ROOT = Path(__file__).resolve().parents[2]


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
    require_mark("processes")
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
