"""``shared_task``: Celery's task decorator, declaring a dramatiq actor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast, overload

import dramatiq

from ..checks import check_bool
from .options import (
    BASE_CLASS_OPTIONS,
    SATISFIED_TASK_OPTIONS,
    UNSUPPORTED_TASK_OPTIONS,
    pop_time_limit,
)
from .retries import check_retry_kwargs, only_asked_retries
from .task import AbortableActor

__all__ = ["shared_task", "task_name"]


@overload
def shared_task(fn: Callable[..., Any], /) -> AbortableActor: ...


@overload
def shared_task(**options: Any) -> Callable[[Callable[..., Any]], AbortableActor]: ...


def shared_task(*args: Any, **options: Any) -> Any:
    """Declare an actor as Celery's ``@shared_task`` / ``@app.task`` declares
    a task: ``@shared_task``, ``@shared_task(bind=True, base=AbortableTask)``.

    Celery's options map onto dramatiq's: ``name`` and ``queue`` name the
    actor and its queue (by default, as in Celery, the actor is named after
    its module and function, ``proj.tasks.add``: see :func:`task_name`);
    ``ignore_result`` turns ``store_results`` off (results are stored by
    default, with the Results middleware, as in Celery); ``max_retries``
    (3 by default) and ``default_retry_delay`` bound ``self.retry()``;
    failures are not retried unless they are of ``autoretry_for`` and not
    of ``dont_autoretry_for`` (with
    ``retry_backoff``, ``retry_backoff_max``, and ``retry_kwargs``'s
    ``max_retries`` and ``countdown``); ``time_limit`` and
    ``soft_time_limit`` (seconds) become dramatiq's ``time_limit``. ``bind``
    and ``track_started`` are as in Celery. The options of
    :data:`~.options.BASE_CLASS_OPTIONS` may also be class attributes of
    ``base``, as in Celery. Other options are passed to ``dramatiq.actor`` unchanged.
    """
    if args and callable(args[0]) and len(args) == 1 and not options:
        return shared_task()(args[0])
    if args:
        raise TypeError(f"shared_task takes keyword options only, not {args!r}")

    def declare(fn: Callable[..., Any]) -> AbortableActor:
        opts = dict(options)
        base = opts.pop("base", AbortableActor)
        if not (isinstance(base, type) and issubclass(base, AbortableActor)):
            raise TypeError(f"base must be AbortableTask or a subclass of it, not {base!r}")
        for name in BASE_CLASS_OPTIONS:
            if name not in opts and hasattr(base, name):
                opts[name] = getattr(base, name)
        for name in SATISFIED_TASK_OPTIONS:
            opts.pop(name, None)
        for name, instead in UNSUPPORTED_TASK_OPTIONS.items():
            if name in opts:
                raise TypeError(f"{name}={opts[name]!r} is not supported here: {instead}")
        broker = opts.pop("broker", None) or dramatiq.get_broker()
        actor_options: dict[str, Any] = {}
        actor_options["actor_name"] = opts.pop("name", None) or task_name(fn)
        if "queue" in opts:
            actor_options["queue_name"] = opts.pop("queue")
        ignore_result = check_bool("ignore_result", opts.pop("ignore_result", False))
        if "store_results" in broker.actor_options:
            opts.setdefault("store_results", not ignore_result)
        limit = opts.pop("max_retries", base.max_retries)
        delay = opts.pop("default_retry_delay", base.default_retry_delay)
        autoretry_for = tuple(opts.pop("autoretry_for", ()))
        dont_autoretry_for = tuple(opts.pop("dont_autoretry_for", ()))
        retry_kwargs = check_retry_kwargs(opts.pop("retry_kwargs", None) or {})
        backoff = opts.pop("retry_backoff", False)
        backoff_max = opts.pop("retry_backoff_max", 600)
        opts.pop("retry_jitter", None)
        opts["max_retries"] = limit
        # Celery's automatic retries call self.retry(**retry_kwargs): its
        # max_retries bounds them, not the task's.
        auto_limit = retry_kwargs.get("max_retries", limit)
        opts["retry_when"] = only_asked_retries(autoretry_for, dont_autoretry_for, auto_limit)
        if backoff:
            first = 1 if backoff is True else backoff
            opts["min_backoff"] = int(first * 1000)
            opts["max_backoff"] = int(backoff_max * 1000)
        else:
            countdown = retry_kwargs.get("countdown", delay)
            opts["min_backoff"] = opts["max_backoff"] = int(countdown * 1000)
        time_limit = pop_time_limit(opts)
        if time_limit is not None:
            opts["time_limit"] = time_limit
        declared = dramatiq.actor(actor_class=base, broker=broker, **actor_options, **opts)(fn)
        actor = cast(AbortableActor, declared)
        actor.max_retries = limit
        actor.default_retry_delay = delay
        return actor

    return declare


def task_name(fn: Callable[..., Any], main: str | None = None) -> str:
    """The name Celery gives the task of ``fn`` when the decorator names
    none: its module's name and its own, ``proj.tasks.add``; ``main`` (the
    app's) stands for the module of a script run as ``__main__``."""
    module = getattr(fn, "__module__", None) or "__main__"
    if module == "__main__" and main:
        module = main
    return f"{module}.{fn.__name__}"


#: Celery's ``app.task`` decorator is the same without an app.
task = shared_task
