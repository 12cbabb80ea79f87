"""``celery.result``: see :mod:`dramatiq_abort.compat.result`."""

# "as": an explicit re-export, which mypy --strict lets projects import.
from dramatiq_abort.compat import AsyncResult as AsyncResult
from dramatiq_abort.compat.result import *  # noqa: F403
