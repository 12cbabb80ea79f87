"""The application that tests/processes/test_workers.py and tests/processes/test_faults.py run
under the ``dramatiq`` command: its broker, abort backend and namespaces come
from the environment."""

from __future__ import annotations

import json
import os
import time

import dramatiq
import redis
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker

from dramatiq_abort import Abort, Abortable, abort_requested
from dramatiq_abort.backends import from_url

REDIS_URL = os.environ["APP_REDIS_URL"]
#: The Redis of the abort backend; by default the one of the reports.
ABORT_REDIS_URL = os.environ.get("APP_ABORT_REDIS_URL", REDIS_URL)
NAMESPACE = os.environ["APP_NAMESPACE"]
#: The abort backend, of any kind, when not a Redis: its URL and namespace.
ABORT_URL = os.environ.get("APP_ABORT_URL", ABORT_REDIS_URL)
ABORT_NAMESPACE = os.environ.get("APP_ABORT_NAMESPACE", NAMESPACE)
QUEUE = os.environ["APP_QUEUE"]

broker: dramatiq.Broker
if os.environ.get("APP_BROKER") == "rabbitmq":
    broker = RabbitmqBroker(url=os.environ["APP_RABBITMQ_URL"])
else:
    options = {}
    if "APP_HEARTBEAT_TIMEOUT" in os.environ:
        # The messages of a dead worker are requeued once its heartbeat is
        # this many ms old, by the next maintenance: with these, the next
        # fetch. A test then sees them requeued in seconds, not minutes.
        options = {
            "heartbeat_timeout": int(os.environ["APP_HEARTBEAT_TIMEOUT"]),
            "maintenance_chance": 1_000_000,
        }
    broker = RedisBroker(url=REDIS_URL, namespace=NAMESPACE + "broker", **options)
if os.environ.get("APP_PROMETHEUS") == "1":
    # Imported only here: the module creates its directory as it is imported.
    from dramatiq.middleware.prometheus import Prometheus

    broker.add_middleware(Prometheus())
broker.add_middleware(Abortable(backend=from_url(ABORT_URL, namespace=ABORT_NAMESPACE)))
dramatiq.set_broker(broker)

_reports = redis.Redis.from_url(REDIS_URL)


def report(token: str, event: str) -> None:
    """Tell the test what happened to ``token``, with the pid that saw it."""
    _reports.rpush(f"{NAMESPACE}report:{token}", json.dumps([event, os.getpid()]))


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def work(token: str, mode: str) -> None:
    """``quick`` returns at once; ``spin`` computes until aborted; ``polite``
    returns once told that an abort is requested; ``stubborn`` reports that
    it was told, then computes on until aborted."""
    try:
        # Inside: an abort sent as soon as the test sees "started" may land
        # before this call returns.
        report(token, "started")
        deadline = time.monotonic() + 30
        noticed = False
        while mode != "quick" and time.monotonic() < deadline:
            if mode in ("polite", "stubborn") and not noticed and abort_requested() is not None:
                report(token, "noticed")
                if mode == "polite":
                    return
                noticed = True
    except Abort:
        report(token, "aborted")
        raise
    report(token, "finished")


@dramatiq.actor(queue_name=QUEUE, max_retries=0, abort_children=True)
def fan_out(token: str, children: int) -> None:
    """Send ``children`` ``spin`` messages of :func:`work`, which report as
    ``token.0``, ``token.1``..., report ``sent`` and their ids, and end: an
    abort of this message reaches them."""
    sent = [work.send(f"{token}.{number}", "spin") for number in range(children)]
    report(token, " ".join(["sent", *(message.message_id for message in sent)]))
