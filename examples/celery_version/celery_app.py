"""The Celery app: broker and result backend on Redis.

Configuration: this file has no line-for-line port. The dramatiq version
of the project has its own ``celery_app.py`` with the same role.
"""

import os

from celery import Celery

REDIS_URL = os.environ.get("EXPORTS_REDIS_URL", "redis://localhost:6379/0")

app = Celery("exports", broker=REDIS_URL, backend=REDIS_URL, include=["tasks"])
app.conf.result_expires = 24 * 3600
