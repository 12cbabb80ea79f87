"""``celery.contrib.abortable``: see :mod:`dramatiq_abort.compat`."""

from dramatiq_abort.compat import ABORTED, AbortableAsyncResult, AbortableTask

__all__ = ["ABORTED", "AbortableAsyncResult", "AbortableTask"]
