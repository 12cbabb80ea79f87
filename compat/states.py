"""``celery.states``: see :mod:`dramatiq_abort.compat.states`."""

from dramatiq_abort.compat.states import *  # noqa: F403
from dramatiq_abort.compat.states import precedence, state  # noqa: F401
