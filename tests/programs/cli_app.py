"""The application that tests/test_processes.py runs under the ``dramatiq``
command: its broker and namespaces come from the environment."""

from __future__ import annotations

import json
import os
import time

import dramatiq
import redis
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker

from dramatiq_abort import Abort, Abortable, abort_requested
from dramatiq_abort.backends import RedisBackend

REDIS_URL = os.environ["APP_REDIS_URL"]
NAMESPACE = os.environ["APP_NAMESPACE"]
QUEUE = os.environ["APP_QUEUE"]

broker: dramatiq.Broker
if os.environ.get("APP_BROKER") == "rabbitmq":
    broker = RabbitmqBroker(url=os.environ["APP_RABBITMQ_URL"])
else:
    broker = RedisBroker(url=REDIS_URL, namespace=NAMESPACE + "broker")
broker.add_middleware(Abortable(backend=RedisBackend.from_url(REDIS_URL, namespace=NAMESPACE)))
dramatiq.set_broker(broker)

_reports = redis.Redis.from_url(REDIS_URL)


def report(token: str, event: str) -> None:
    """Tell the test what happened to ``token``, with the pid that saw it."""
    _reports.rpush(f"{NAMESPACE}report:{token}", json.dumps([event, os.getpid()]))


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def work(token: str, mode: str) -> None:
    """``quick`` returns at once; ``spin`` computes until aborted; ``polite``
    returns once told that an abort is requested."""
    report(token, "started")
    deadline = time.monotonic() + 30
    try:
        while mode != "quick" and time.monotonic() < deadline:
            if mode == "polite" and abort_requested() is not None:
                report(token, "noticed")
                return
    except Abort:
        report(token, "aborted")
        raise
    report(token, "finished")
