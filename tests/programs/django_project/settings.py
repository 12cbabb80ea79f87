"""The project's settings: django_dramatiq builds the broker, Abortable
listed by its dotted path; Redis and namespaces come from the environment."""

from __future__ import annotations

import os

NAMESPACE = os.environ["APP_NAMESPACE"]
SECRET_KEY = "only-for-tests"
INSTALLED_APPS = ["django_dramatiq", "tests.programs.django_project"]
DRAMATIQ_BROKER = {
    "BROKER": "dramatiq.brokers.redis.RedisBroker",
    "OPTIONS": {"url": os.environ["APP_REDIS_URL"], "namespace": NAMESPACE + "broker"},
    "MIDDLEWARE": [
        "dramatiq.middleware.AgeLimit",
        "dramatiq.middleware.TimeLimit",
        "dramatiq.middleware.Retries",
        "dramatiq_abort.Abortable",
    ],
}
# The backend is on the broker's Redis; the namespace is the test's.
DRAMATIQ_ABORT = {"BACKEND_OPTIONS": {"namespace": NAMESPACE}}
