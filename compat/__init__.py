"""Celery's abortable API on dramatiq, under Celery's module names with
``celery`` replaced by ``compat``: ``from compat import AbortableTask``.

The code lives in :mod:`dramatiq_abort.compat`; import it from there when
a module of your project is itself named ``compat``.
"""

from dramatiq_abort.compat import *  # noqa: F403
from dramatiq_abort.compat import __all__  # noqa: F401
