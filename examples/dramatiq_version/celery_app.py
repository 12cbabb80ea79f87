"""The Celery app: broker and result backend on Redis, as in the Celery
version with its import changed; ``Celery()`` adds abort requests and task
states to the dramatiq broker it builds.

Configuration: the Redis URL and a prefix for every key come from the
environment, and the worker is told to import the tasks.
"""

import os

from compat import Celery

REDIS_URL = os.environ.get("EXPORTS_REDIS_URL", "redis://localhost:6379/0")
NAMESPACE = os.environ.get("EXPORTS_NAMESPACE", "exports:")

app = Celery(
    "exports",
    broker=REDIS_URL,
    backend=REDIS_URL,
    include=["tasks"],
    broker_transport_options={"global_keyprefix": NAMESPACE},
)
app.conf.result_expires = 24 * 3600

# include=["tasks"] is unused here: the worker (dramatiq celery_app) imports
# this module only, so it imports the tasks itself, once the broker is set.
import tasks  # noqa: E402, F401
