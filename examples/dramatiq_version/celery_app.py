"""The dramatiq broker, with what the Celery app gave: a result backend
(``Results``), abort requests (``Abortable``) and task states
(``TaskStates``, after the other two).

Configuration: the one file of the port that is not the Celery version
with its imports and decorators changed. It keeps the module name, so
that ``from celery_app import app`` still works. The Redis URL and a
prefix for every key come from the environment.
"""

import os

import dramatiq
from compat import TaskStates
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend as ResultBackend
from dramatiq_abort import Abortable
from dramatiq_abort.backends import RedisBackend as AbortBackend

REDIS_URL = os.environ.get("EXPORTS_REDIS_URL", "redis://localhost:6379/0")
NAMESPACE = os.environ.get("EXPORTS_NAMESPACE", "exports:")

broker = RedisBroker(url=REDIS_URL, namespace=NAMESPACE + "broker")
broker.add_middleware(
    Results(backend=ResultBackend(url=REDIS_URL, namespace=NAMESPACE + "results"))
)
broker.add_middleware(Abortable(backend=AbortBackend.from_url(REDIS_URL, namespace=NAMESPACE)))
broker.add_middleware(TaskStates())
dramatiq.set_broker(broker)

#: What the Celery code calls the app: ``AbortableAsyncResult(task_id, app=app)``
#: takes the broker.
app = broker

# Celery's include=["tasks"]: the worker (dramatiq celery_app) declares the
# tasks once the broker is set.
import tasks  # noqa: E402, F401
