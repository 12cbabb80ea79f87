"""The app's actor, which django_dramatiq's ``rundramatiq`` discovers."""

from __future__ import annotations

import os

import dramatiq
import redis

from tests.support import spin_until_aborted

NAMESPACE = os.environ["APP_NAMESPACE"]

_reports = redis.Redis.from_url(os.environ["APP_REDIS_URL"])


def report(token: str, event: str) -> None:
    """Tell the test what happened to ``token``."""
    _reports.rpush(f"{NAMESPACE}report:{token}", event)


@dramatiq.actor(queue_name=os.environ["APP_QUEUE"], max_retries=0)
def spin(token: str) -> None:
    """Computes until aborted, reporting that it started and that it was aborted."""
    spin_until_aborted(lambda: report(token, "started"), lambda: report(token, "aborted"))
