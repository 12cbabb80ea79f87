"""A monkey-patched worker process with hundreds of greenlets, one of which is
aborted, then a message whose time limit fires before it is aborted; prints
a JSON report. Run by tests/integrations/test_gevent.py as
``gevent_worker.py GREENLETS [REDIS_URL NAMESPACE]``: in memory, or on Redis."""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import dramatiq  # noqa: E402
import gevent  # noqa: E402
import gevent.event  # noqa: E402
from dramatiq.brokers.stub import StubBroker  # noqa: E402
from dramatiq.middleware.time_limit import TimeLimitExceeded  # noqa: E402

from dramatiq_abort import Abort, Abortable, abort, abort_requested  # noqa: E402
from dramatiq_abort.backend import EventBackend  # noqa: E402
from dramatiq_abort.backends import RedisBackend, StubBackend  # noqa: E402

GREENLETS = int(sys.argv[1])
VICTIM, POLITE = GREENLETS // 3, GREENLETS // 2
WAIT = 20.0

backend: EventBackend = StubBackend()
if len(sys.argv) > 2:
    backend = RedisBackend.from_url(sys.argv[2], namespace=sys.argv[3])
broker = StubBroker()
broker.emit_after("process_boot")
broker.add_middleware(Abortable(backend=backend))
dramatiq.set_broker(broker)

started: set[int] = set()
done = gevent.event.Event()
aborted: list[int] = []
noticed: list[int] = []


@dramatiq.actor(max_retries=0)
def napper(i: int) -> None:
    started.add(i)
    try:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and not done.is_set():
            if abort_requested() is not None:
                noticed.append(i)
                return
            gevent.sleep(0.005)
    except Abort:
        aborted.append(i)
        raise


cleaning = gevent.event.Event()
proceed = gevent.event.Event()
cleaned = gevent.event.Event()
raised_in_cleanup: list[str] = []


@dramatiq.actor(max_retries=0, time_limit=100)
def limited() -> None:
    try:
        gevent.sleep(WAIT)
    except TimeLimitExceeded:
        cleaning.set()
        try:
            proceed.wait(WAIT)  # the abort comes meanwhile
        except Abort:
            raised_in_cleanup.append("Abort")
        finally:
            cleaned.set()
        raise


def wait_until(condition: object) -> bool:
    deadline = time.monotonic() + WAIT
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            return False
        gevent.sleep(0.005)
    return True


worker = dramatiq.Worker(broker, worker_threads=GREENLETS, worker_timeout=100)
worker.start()
try:
    messages = [napper.send(i) for i in range(GREENLETS)]
    all_started = wait_until(lambda: len(started) == GREENLETS)
    sent = time.monotonic()
    abort(messages[VICTIM].message_id)
    abort(messages[POLITE].message_id, abort_timeout=60_000)
    wait_until(lambda: aborted and noticed)
    latency_ms = (time.monotonic() - sent) * 1000
    done.set()
    timed_out = limited.send()
    cleanup_seen = cleaning.wait(WAIT)
    abort(timed_out.message_id)
    # abort() returns once the watcher delivered the request; the hub runs
    # the callback that would throw it before it is idle again.
    gevent.idle()
    proceed.set()
    cleanup_ended = cleaned.wait(WAIT)
    print(
        json.dumps(
            {
                "all_started": all_started,
                "aborted": aborted,
                "noticed": noticed,
                "victim": VICTIM,
                "polite": POLITE,
                "latency_ms": latency_ms,
                "cleanup_seen": cleanup_seen,
                "cleanup_ended": cleanup_ended,
                "raised_in_cleanup": raised_in_cleanup,
            }
        )
    )
finally:
    done.set()
    worker.stop()
