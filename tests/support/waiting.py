"""Bounded waits, and the dramatiq Worker in the test's own process they wait on."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import dramatiq

from dramatiq_abort import Abort, Abortable, AbortMode, abort
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
