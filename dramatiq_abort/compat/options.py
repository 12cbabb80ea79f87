"""Celery's options and settings, each table named for where it is given
and what becomes of it here, and their translation into dramatiq's terms."""

from __future__ import annotations

from typing import Any

from ..checks import check_bool, check_seconds

__all__ = [
    "BASE_CLASS_OPTIONS",
    "HONOURED_SETTINGS",
    "IGNORED_APP_OPTIONS",
    "RETRY_KWARGS",
    "SATISFIED_TASK_OPTIONS",
    "TASK_DEFAULT_SETTINGS",
    "UNSUPPORTED_SEND_OPTIONS",
    "UNSUPPORTED_TASK_OPTIONS",
    "URL_SETTINGS",
    "pop_time_limit",
    "send_options",
]

# Options of ``shared_task`` / ``app.task``

#: Task options that need nothing here: dramatiq acknowledges messages
#: once processed, and encodes them as JSON.
SATISFIED_TASK_OPTIONS = frozenset({"acks_late", "typing", "trail", "reject_on_worker_lost"})
#: Task options that a base class may set as class attributes
#: (``class BaseTaskWithRetry(AbortableTask): autoretry_for = (...)``), as
#: defaults for the tasks declared with it; the decorator's options win.
BASE_CLASS_OPTIONS = (
    "autoretry_for",
    "dont_autoretry_for",
    "retry_kwargs",
    "retry_backoff",
    "retry_backoff_max",
    "retry_jitter",
    "ignore_result",
    "track_started",
    "time_limit",
    "soft_time_limit",
)
#: What ``retry_kwargs`` may hold: the arguments of ``self.retry()`` that
#: an automatic retry can honour.
RETRY_KWARGS = frozenset({"max_retries", "countdown"})
#: Task options that dramatiq has no place for, and what to use instead.
UNSUPPORTED_TASK_OPTIONS = {
    "rate_limit": "use dramatiq's rate limiters (dramatiq.rate_limits)",
    "serializer": "dramatiq encodes messages with the broker's encoder (JSON by default)",
}

# Options of ``apply_async`` / ``send_task``

#: Sending options that dramatiq has no place for: they are refused rather
#: than silently dropped, with what to use instead.
UNSUPPORTED_SEND_OPTIONS = {
    "link": "pipe the result with dramatiq.pipeline or message.options['pipe_target']",
    "link_error": "use the on_failure option of dramatiq's Callbacks middleware",
    "routing_key": "use queue=",
    "exchange": "use queue=",
    "chord": "use dramatiq.group(...).add_completion_callback",
}

# Options and settings of ``Celery(...)`` and ``app.conf``

#: Options that Celery's constructor takes and that need nothing here:
#: dramatiq's worker is told on its command line which modules to import
#: (``include``), and an app is always the current one (``set_as_current``).
IGNORED_APP_OPTIONS = frozenset({"include", "set_as_current", "autofinalize", "strict_typing"})
#: Settings that ``Celery(..., key=value)`` and ``app.conf`` honour:
#: ``task_track_started``, ``task_ignore_result`` and ``task_default_queue``
#: are the defaults of ``app.task`` (the queue also of ``app.send_task`` for
#: a task not declared here), ``broker_transport_options``'
#: ``global_keyprefix`` puts every Redis key of the app under that prefix,
#: ``result_expires`` is how long the results the app's ``Results`` keeps
#: live. Other keys are stored in ``app.conf`` and not used.
HONOURED_SETTINGS = (
    "task_track_started",
    "task_ignore_result",
    "task_default_queue",
    "broker_transport_options",
    "result_expires",
)
#: The settings that give defaults to ``app.task``, with the task option
#: each gives.
TASK_DEFAULT_SETTINGS = (
    ("task_track_started", "track_started"),
    ("task_ignore_result", "ignore_result"),
    ("task_default_queue", "queue"),
)
#: Settings that name the broker or result backend: they take effect only
#: when given to the constructor, which builds the broker from them.
URL_SETTINGS = ("broker_url", "broker", "result_backend")


def pop_time_limit(options: dict[str, Any]) -> int | None:
    """Take Celery's ``time_limit`` and ``soft_time_limit`` (seconds, either
    may be ``None``) out of ``options``: the smaller one in milliseconds,
    dramatiq's one time limit, or ``None`` when neither is given."""
    given = {name: options.pop(name, None) for name in ("time_limit", "soft_time_limit")}
    limits = [check_seconds(name, value) for name, value in given.items() if value is not None]
    return max(1, int(min(limits) * 1000)) if limits else None


def send_options(options: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``options`` with Celery's sending options in dramatiq's
    terms: the time limits (see :func:`pop_time_limit`), ``ignore_result``
    as ``store_results``."""
    options = dict(options)
    time_limit = pop_time_limit(options)
    if time_limit is not None:
        options["time_limit"] = time_limit
    if "ignore_result" in options:
        options["store_results"] = not check_bool("ignore_result", options.pop("ignore_result"))
    return options
