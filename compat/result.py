"""``celery.result``: see :mod:`dramatiq_abort.compat.result`."""

from dramatiq_abort.compat import AsyncResult  # noqa: F401
from dramatiq_abort.compat.result import *  # noqa: F403
