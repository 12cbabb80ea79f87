"""``Celery``: Celery's app object, building the dramatiq broker and its
middleware from Celery's broker and backend URLs, and ``app.conf``."""

from __future__ import annotations

import datetime
import importlib
from collections.abc import Callable, Iterable
from typing import Any, overload

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.results import Results

from ..checks import check_seconds
from ..dramatiq_internals import middleware_of
from ..middleware import Abortable
from .connections import (
    AMQP_SCHEMES,
    MEMORY_SCHEMES,
    REDIS_SCHEMES,
    abort_backend,
    build_broker,
    check_scheme,
    key_prefix,
    result_backend,
)
from .control import Control
from .decorators import shared_task, task_name
from .middleware import TaskStates
from .options import (
    BASE_CLASS_OPTIONS,
    HONOURED_SETTINGS,
    IGNORED_APP_OPTIONS,
    TASK_DEFAULT_SETTINGS,
    URL_SETTINGS,
)
from .result import AbortableResult, App
from .task import AbortableActor, send_task

__all__ = ["RESULT_EXPIRES", "Celery", "Settings", "result_ttl"]

#: How long results live unless ``result_expires`` says: a day, as in
#: Celery (dramatiq's own ``Results`` keeps them 10 minutes).
RESULT_EXPIRES = datetime.timedelta(days=1)


class Settings(dict[str, Any]):
    """``app.conf``: Celery's settings by name, as a dict (``update()``,
    ``[...]``) that also reads and sets as attributes
    (``app.conf.task_track_started``).

    A setting of :data:`~.options.URL_SETTINGS` other than the
    constructor's is refused: the broker is already built. ``result_expires`` is checked,
    and applies to the results the app's ``Results`` stores from then on.
    """

    # Not a setting: an attribute would read and write a key.
    __slots__ = ("results",)

    def __init__(self, values: dict[str, Any], results: Results | None) -> None:
        #: The ``Results`` middleware the app added, which ``result_expires`` sets.
        object.__setattr__(self, "results", results)
        # The constructor's own values, checked by it already.
        super().__init__(values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no setting {name!r} in app.conf") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __setitem__(self, name: str, value: Any) -> None:
        self.update({name: value})

    def update(self, *args: Any, **kwargs: Any) -> None:
        settings = dict(*args, **kwargs)
        # Every setting is checked before any is stored or applied.
        for name, value in settings.items():
            self._check(name, value)
        super().update(settings)
        if "result_expires" in settings and self.results is not None:
            self.results.result_ttl = result_ttl(settings["result_expires"])

    def setdefault(self, name: str, default: Any = None) -> Any:
        if name not in self:
            self[name] = default
        return self[name]

    def _check(self, name: str, value: Any) -> None:
        if name in URL_SETTINGS and value != self.get(name):
            # The URL may hold a password: it is not repeated.
            raise ValueError(
                f"{name} cannot change the broker or result backend already built by"
                " Celery(): give it there, as Celery(broker=..., backend=...)"
            )
        if name == "result_expires":
            result_ttl(value)


class Celery(App):
    """Celery's app: ``app = Celery("proj", broker=..., backend=...)``, then
    ``@app.task``, ``app.AsyncResult``, ``app.send_task``,
    ``app.control.revoke`` and ``app.control.inspect()`` as in Celery.

    The broker is built from ``broker``: ``redis://`` and ``rediss://`` give
    a ``RedisBroker``, ``amqp://`` and ``pyamqp://`` a ``RabbitmqBroker``,
    ``memory://`` a ``StubBroker``; ``None`` takes the global dramatiq
    broker, configured elsewhere. Whatever it lacks of ``Results`` (on a
    ``redis://`` or ``memory://`` ``backend``; without ``backend`` results
    are off), ``Abortable`` (on the Redis of ``backend``, else of
    ``broker``) and ``TaskStates`` is added, in that order, and the broker
    becomes the global one.

    :param main: The project's name, kept as ``app.main``: the first part of
        the names of the tasks a script run as ``__main__`` declares.
    :param broker: Celery's broker URL.
    :param backend: Celery's result backend URL.
    :param options: Celery's settings (see
        :data:`~.options.HONOURED_SETTINGS`), and the options of
        :data:`~.options.IGNORED_APP_OPTIONS`, accepted and unused.
    """

    def __init__(
        self,
        main: str | None = None,
        *,
        broker: str | None = None,
        backend: str | None = None,
        **options: Any,
    ) -> None:
        if main is not None and not isinstance(main, str):
            raise TypeError(f"main must be the project's name, a str, not {main!r}")
        ignored = {name: options.pop(name) for name in IGNORED_APP_OPTIONS if name in options}
        unknown = sorted(set(options) - set(HONOURED_SETTINGS))
        if unknown:
            raise TypeError(
                f"Celery() options {unknown!r} are not supported here: give broker=,"
                f" backend= and any of {list(HONOURED_SETTINGS)!r}, then set other"
                " settings with app.conf.update()"
            )
        prefix = key_prefix(options.get("broker_transport_options"))
        ttl = result_ttl(options.get("result_expires", RESULT_EXPIRES))
        broker_scheme = check_scheme(
            "broker", broker, (*REDIS_SCHEMES, *AMQP_SCHEMES, *MEMORY_SCHEMES)
        )
        backend_scheme = check_scheme("backend", backend, (*REDIS_SCHEMES, *MEMORY_SCHEMES))
        abort_url = next(
            (
                url
                for url, scheme in ((backend, backend_scheme), (broker, broker_scheme))
                if scheme in REDIS_SCHEMES
            ),
            None,
        )
        current = dramatiq.get_broker() if broker is None else None
        memory = broker_scheme in MEMORY_SCHEMES or isinstance(current, StubBroker)
        has_abortable = current is not None and middleware_of(current, Abortable) is not None
        if abort_url is None and not memory and not has_abortable:
            # A URL may hold a password: only its scheme is repeated.
            given = ", ".join(
                f"{name}='{scheme}://...'"
                for name, scheme in (("broker", broker_scheme), ("backend", backend_scheme))
                if scheme is not None
            )
            raise ValueError(
                f"Celery({given}) has no Redis for abort requests and task states: give"
                " backend='redis://host:6379/0' (or a Redis broker), or add Abortable to the"
                " broker yourself"
            )
        self.main = main
        self.control = Control(self)
        #: The dramatiq broker, which every ``app=`` argument also takes.
        self.broker: dramatiq.Broker = current or build_broker(broker, broker_scheme, prefix)
        results = None
        if middleware_of(self.broker, Results) is None and backend is not None:
            results = Results(backend=result_backend(backend, prefix), result_ttl=ttl)
            self.broker.add_middleware(results)
        #: Celery's settings; see :data:`~.options.HONOURED_SETTINGS`.
        self.conf = Settings(
            {**options, **ignored, "broker_url": broker, "result_backend": backend}, results
        )
        if not has_abortable:
            self.broker.add_middleware(Abortable(backend=abort_backend(abort_url, prefix)))
        if middleware_of(self.broker, TaskStates) is None:
            self.broker.add_middleware(TaskStates())
        dramatiq.set_broker(self.broker)

    def __repr__(self) -> str:
        return f"<Celery {self.main} on {self.broker!r}>"

    @overload
    def task(self, fn: Callable[..., Any], /) -> AbortableActor: ...

    @overload
    def task(self, **options: Any) -> Callable[[Callable[..., Any]], AbortableActor]: ...

    def task(self, *args: Any, **options: Any) -> Any:
        """Celery's ``@app.task``: :func:`~dramatiq_abort.compat.shared_task`
        on this app's broker, with the settings of
        :data:`~.options.TASK_DEFAULT_SETTINGS` as defaults."""
        if args and (len(args) > 1 or options or not callable(args[0])):
            raise TypeError(f"app.task takes keyword options only, not {args!r}")
        options.setdefault("broker", self.broker)
        base = options.get("base", AbortableActor)
        for setting, option in TASK_DEFAULT_SETTINGS:
            # As in Celery, the decorator's options and the base class's
            # attributes (those shared_task reads) win over the app's settings.
            from_base = option in BASE_CLASS_OPTIONS and hasattr(base, option)
            if setting in self.conf and option not in options and not from_base:
                options[option] = self.conf[setting]

        def declare(fn: Callable[..., Any]) -> AbortableActor:
            # A script's tasks are named after the app, as in Celery.
            named = {"name": task_name(fn, self.main), **options}
            return shared_task(**named)(fn)

        return declare(args[0]) if args else declare

    shared_task = task

    def AsyncResult(self, task_id: str, **options: Any) -> AbortableResult:
        """The result of a task of this app, from its id."""
        return AbortableResult(task_id, broker=self.broker, **options)

    def send_task(
        self,
        name: str,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> AbortableResult:
        """Send a task by its name on this app's broker; the options are
        :func:`~dramatiq_abort.compat.send_task`'s. A task not declared in
        this process goes to the ``task_default_queue`` setting's queue,
        unless ``queue`` says otherwise."""
        declared = isinstance(name, str) and name in self.broker.actors
        if not declared and "task_default_queue" in self.conf:
            options.setdefault("queue", self.conf["task_default_queue"])
        return send_task(name, args, kwargs, broker=self.broker, **options)

    def config_from_object(
        self, obj: Any, silent: bool = False, force: bool = False, namespace: str | None = None
    ) -> None:
        """Copy settings into ``app.conf`` from an object or a module (by
        name, ``"module"`` or ``"module:attribute"``), as Celery does: its
        lowercase attributes or, with ``namespace="CELERY"``, those named
        ``CELERY_...``, lowercased and without the prefix. ``silent=True``
        ignores a module that cannot be imported. ``force`` changes nothing:
        the settings are always read at once.

        Settings naming another broker or backend are refused: the broker
        was built by the constructor; give them there.
        """
        if isinstance(obj, str):
            module_name, _, attribute = obj.partition(":")
            try:
                obj = importlib.import_module(module_name)
            except ImportError:
                if silent:
                    return
                raise
            if attribute:
                obj = getattr(obj, attribute)
        settings = {}
        for name in dir(obj):
            if namespace:
                if name.startswith(f"{namespace}_"):
                    settings[name[len(namespace) + 1 :].lower()] = getattr(obj, name)
            elif name.islower() and not name.startswith("_"):
                settings[name] = getattr(obj, name)
        self.conf.update(settings)

    def autodiscover_tasks(
        self,
        packages: Iterable[str] | Callable[[], Iterable[str]] | None = None,
        related_name: str = "tasks",
        force: bool = False,
    ) -> None:
        """Import ``package.tasks`` (or ``package.<related_name>``) of each
        package, now rather than when the worker starts; a package without
        that module is skipped, as in Celery. ``force`` changes nothing: the
        import is always at once.

        Without ``packages`` Celery asks Django for its apps: that is refused;
        name the packages, or give the task modules to the ``dramatiq``
        command.
        """
        if packages is None:
            raise TypeError(
                "autodiscover_tasks() needs the packages to search, such as"
                " autodiscover_tasks(['proj']); or give the task modules to the dramatiq command"
            )
        names = list(packages() if callable(packages) else packages)
        for package in names:
            module = f"{package}.{related_name}" if related_name else package
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as e:
                if e.name != module:
                    raise


def result_ttl(expires: Any) -> int:
    """Celery's ``result_expires`` (seconds, or a ``timedelta``) as the
    milliseconds of dramatiq's ``result_ttl``."""
    seconds = expires.total_seconds() if isinstance(expires, datetime.timedelta) else expires
    # Celery reads None or 0 as never: dramatiq's results always expire.
    if seconds is None or check_seconds("result_expires", seconds) == 0:
        raise ValueError(
            f"result_expires must be a time greater than 0, not {expires!r}: results always"
            " expire here; give how long they should be kept, such as 86400 (a day)"
        )
    return max(1, round(seconds * 1000))
