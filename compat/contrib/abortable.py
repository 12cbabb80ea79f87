"""``celery.contrib.abortable``: see :mod:`dramatiq_abort.compat`."""

from dramatiq_abort.compat import (  # noqa: F401
    ABORTED,
    AbortableAsyncResult,
    AbortableTask,
)
