"""``dramatiq-abort demo``: a worker in this process, one message aborted
while it runs, one cancelled while queued, one asked to stop gracefully."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, TextIO

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.results import ResultFailure, Results

from ..backend import EventBackend
from ..backends import StubBackend
from ..errors import Abort
from ..middleware import Abortable, abort, abort_requested, abort_where, running_messages
from ..mode import AbortMode

__all__ = ["STEP_TIMEOUT", "main", "run"]

#: How long the demo waits for any one step before it calls it a failure.
STEP_TIMEOUT = 10.0


@contextlib.contextmanager
def _broker(redis_url: str | None) -> Iterator[tuple[dramatiq.Broker, EventBackend, str]]:
    if redis_url is None:
        from dramatiq.results.backends import StubBackend as StubResults

        broker: dramatiq.Broker = StubBroker()
        broker.add_middleware(Results(backend=StubResults()))
        yield broker, StubBackend(), "StubBroker + StubBackend, in memory"
        return

    from dramatiq.brokers.redis import RedisBroker
    from dramatiq.results.backends import RedisBackend as RedisResults

    from ..backends.redis import RedisBackend

    namespace = f"dramatiq-abort-demo:{uuid.uuid4().hex}:"
    # First: it says what is wrong with a bad URL in its own words.
    backend = RedisBackend.from_url(redis_url, namespace=namespace)
    broker = RedisBroker(url=redis_url, namespace=namespace + "broker")
    results = RedisResults(url=redis_url, namespace=namespace + "results")
    broker.add_middleware(Results(backend=results))
    # A Redis that cannot be reached (or refuses these credentials) fails
    # here, with the client's error, rather than after the worker has waited
    # for a watcher that cannot connect and the messages could not be sent.
    backend.client.ping()
    try:
        yield broker, backend, f"RedisBroker + RedisBackend, namespace {namespace!r}"
    finally:
        # dramatiq names result keys by a hash, outside any namespace.
        keys = [results.build_message_key(message) for message in _sent]
        _sent.clear()
        keys += backend.client.scan_iter(match=namespace + "*")
        if keys:
            backend.client.delete(*keys)


#: The messages the demo sent, whose results it deletes when it ends.
_sent: list[dramatiq.Message[Any]] = []


def _result(message: dramatiq.Message[Any]) -> str:
    try:
        return f"returned {message.get_result(block=True, timeout=int(STEP_TIMEOUT * 1000))!r}"
    except ResultFailure as e:
        return f"failed with {e.orig_exc_type}: {e.orig_exc_msg}"


class _Report:
    """The demo's printed report, and whether every step behaved."""

    def __init__(self, out: TextIO | None) -> None:
        self.out = out
        self.ok = True

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def step(self, name: str, text: str, passed: bool = True) -> None:
        self.ok = self.ok and passed
        self.say(f"  {'ok  ' if passed else 'FAIL'} {name:<22} {text}")


def run(redis_url: str | None = None, out: TextIO | None = None) -> bool:
    """Run the demo, printing to ``out``; returns whether every step
    behaved as documented."""
    report = _Report(out)
    _run(redis_url, report)
    report.say(
        "all steps behaved as documented"
        if report.ok
        else "some steps did not behave as documented"
    )
    return report.ok


def _run(redis_url: str | None, report: _Report) -> None:
    with _broker(redis_url) as (broker, backend, description):
        middleware = Abortable(backend=backend)
        broker.add_middleware(middleware)
        dramatiq.set_broker(broker)
        report.say(f"dramatiq-abort demo ({description}), one worker thread, three actors:")
        report.say("  crunch: computes in a loop until it is aborted")
        report.say("  greet:  returns a greeting; sent after crunch, cancelled while it waits")
        report.say("  tidy:   polls abort_requested() and returns cleanly once asked to stop")
        report.say("then, as an operator would, it lists what runs and stops crunch by its name")

        started = threading.Event()
        interrupted = threading.Event()
        greeted = threading.Event()
        progress = {"loops": 0, "grace_left": 0.0, "stopped_at": 0.0}

        @dramatiq.actor(store_results=True, max_retries=3)
        def crunch() -> int:
            loops = 0
            try:
                started.set()
                while True:
                    loops += 1
            except Abort:
                interrupted.set()
                progress["loops"] = loops
                raise

        @dramatiq.actor(store_results=True)
        def greet(name: str) -> str:
            greeted.set()
            return f"hello {name}"

        @dramatiq.actor(store_results=True)
        def tidy() -> str:
            started.set()
            while (left := abort_requested()) is None:
                time.sleep(0.001)
            progress["grace_left"] = left
            progress["stopped_at"] = time.perf_counter()
            return "stopped cleanly"

        worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
        worker.start()
        try:
            long_running = crunch.send()
            queued = greet.send("world")
            _sent.extend((long_running, queued))
            if not started.wait(STEP_TIMEOUT):
                report.step("start crunch", "never started", False)
                return
            report.step("start crunch", f"running message {long_running.message_id}")

            sent = time.perf_counter()
            abort(queued.message_id, mode=AbortMode.CANCEL)
            report.step(
                "cancel queued greet",
                f"request recorded in the backend in {(time.perf_counter() - sent) * 1000:.1f} ms;"
                " greet waits behind crunch and is skipped when its turn comes",
            )

            sent = time.perf_counter()
            abort(long_running.message_id)
            landed = interrupted.wait(STEP_TIMEOUT)
            latency = (time.perf_counter() - sent) * 1000
            report.step(
                "abort running crunch",
                f"Abort raised in the actor {latency:.1f} ms after abort(), "
                f"after {progress['loops']:,} loops"
                if landed
                else "Abort never arrived",
                landed,
            )
            report.step(
                "crunch result", _result(long_running), "MessageAborted" in _result(long_running)
            )
            greet_result = _result(queued)
            report.step(
                "greet result",
                f"never ran; {greet_result}",
                not greeted.is_set() and "MessageAborted" in greet_result,
            )

            started.clear()
            graceful = tidy.send()
            _sent.append(graceful)
            if not started.wait(STEP_TIMEOUT):
                report.step("start tidy", "never started", False)
                return
            sent = time.perf_counter()
            abort(graceful.message_id, abort_timeout=2000)
            outcome = _result(graceful)
            took = (progress["stopped_at"] - sent) * 1000
            report.step(
                "graceful abort tidy",
                f"stopped by itself {took:.1f} ms after abort(abort_timeout=2000), with"
                f" {progress['grace_left']:.0f} ms of grace left; {outcome}",
                outcome == "returned 'stopped cleanly'",
            )

            # What an operator does: see what runs, stop it by what it is.
            started.clear()
            interrupted.clear()
            again = crunch.send()
            _sent.append(again)
            long_running = again
            if not started.wait(STEP_TIMEOUT):
                report.step("start crunch again", "never started", False)
                return
            listed = running_messages(timeout=STEP_TIMEOUT)
            shown = [message.actor for message in listed.messages]
            report.step(
                "list what runs",
                f"{', '.join(shown) or 'nothing'} running;"
                f" {listed.answered} of {listed.expected} worker processes answered",
                shown == ["crunch"] and listed.answered == 1,
            )
            reason = "demo: stop every crunch sent so far"
            abort_where(actor="crunch", reason=reason)
            landed = interrupted.wait(STEP_TIMEOUT)
            result = _result(again)
            report.step(
                "abort by actor",
                f"abort_where(actor='crunch') stopped it, and its result says why: {result}"
                if landed
                else "Abort never arrived",
                landed and reason in result,
            )
        finally:
            if not interrupted.is_set():
                # Interrupted (Ctrl-C) while crunch runs: it loops until
                # aborted, and the worker could not stop.
                with contextlib.suppress(Exception):
                    abort(long_running.message_id)
            worker.stop()
            broker.close()


def main(redis_url: str | None, out: TextIO | None = None) -> int:
    """Exit status of ``dramatiq-abort demo``."""
    return 0 if run(redis_url, out) else 1
