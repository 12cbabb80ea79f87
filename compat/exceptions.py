"""``celery.exceptions``: see :mod:`dramatiq_abort.compat.exceptions`."""

from dramatiq_abort.compat.exceptions import *  # noqa: F403
