"""The configuration of an :class:`~dramatiq_abort.Abortable` built with no
backend: Django's ``DRAMATIQ_ABORT`` setting, the ``DRAMATIQ_ABORT_URL``
environment variable, or django_dramatiq's Redis broker."""

from __future__ import annotations

import enum
import importlib
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple, TypeAlias, TypeVar

from .backend import EventBackend
from .checks import EXAMPLE_REDIS_URL, check_bool, check_milliseconds, check_seconds, shown_url
from .metrics import check_metrics

__all__ = [
    "BACKEND",
    "BACKEND_OPTIONS",
    "BROKER_NAMESPACE",
    "BROKER_SETTING",
    "EXAMPLE_SETTING",
    "KEYS",
    "MIDDLEWARE_OPTIONS",
    "PARAMETERS",
    "SETTING",
    "UNSET",
    "URL_VARIABLE",
    "Configuration",
    "OrUnset",
    "Unset",
    "check_parameters",
    "configuration",
    "resolve",
]

#: The Django setting read, a dict with the keys below.
SETTING = "DRAMATIQ_ABORT"
#: The key of the backend's URL, as :func:`~dramatiq_abort.backends.from_url` takes it.
BACKEND = "BACKEND"
#: The key of the backend's keyword arguments, such as ``namespace``.
BACKEND_OPTIONS = "BACKEND_OPTIONS"
#: The key of Abortable's own parameters, by name.
MIDDLEWARE_OPTIONS = "MIDDLEWARE_OPTIONS"
#: The keys of the setting: those of django_dramatiq's ``DRAMATIQ_RESULT_BACKEND``.
KEYS = (BACKEND, BACKEND_OPTIONS, MIDDLEWARE_OPTIONS)

#: The environment variable read for the backend's URL when the setting
#: gives none; the command line reads it too.
URL_VARIABLE = "DRAMATIQ_ABORT_URL"

#: django_dramatiq's setting of the broker, whose Redis is the backend's
#: when neither of the above names one.
BROKER_SETTING = "DRAMATIQ_BROKER"
#: The namespace of a RedisBroker that is given none.
BROKER_NAMESPACE = "dramatiq"

#: Abortable's parameters other than ``backend``, each with its check,
#: which takes the value and the name an error gives it.
PARAMETERS: dict[str, Callable[[object, str], object]] = {
    "abortable": lambda value, name: check_bool(name, value),
    "abort_children": lambda value, name: check_bool(name, value),
    "abort_ttl": lambda value, name: check_milliseconds(name, value, positive=True),
    "boot_timeout": lambda value, name: check_seconds(name, value),
    "metrics": check_metrics,
}


class Unset(enum.Enum):
    """The type of :data:`UNSET`."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


#: Stands for a parameter of Abortable that the caller did not give: the
#: setting applies, else the parameter's default.
UNSET = Unset.UNSET

_T = TypeVar("_T")
#: A parameter that may be left :data:`UNSET`.
OrUnset: TypeAlias = _T | Literal[Unset.UNSET]


def check_parameters(parameters: Mapping[str, object], key: str | None = None) -> dict[str, Any]:
    """Abortable's ``parameters``, each checked, else raise naming it: as an
    argument, or under ``key`` of the setting when ``key`` is given."""
    checked = {}
    for name, value in parameters.items():
        check = PARAMETERS.get(name) if isinstance(name, str) else None
        if check is None:
            raise ValueError(
                f"{key} has the unknown key {name!r:.100}: the keys are {', '.join(PARAMETERS)}"
            )
        checked[name] = check(value, name if key is None else f"{key}[{name!r}]")
    return checked


def resolve(backend: object, given: Mapping[str, object]) -> tuple[EventBackend, dict[str, Any]]:
    """The backend and the checked parameters of an Abortable built with
    ``backend`` and the parameters ``given`` (``UNSET`` when not given).

    With no ``backend``, both come from :func:`configuration`, whose
    parameters the given ones win over; else nothing is read. Raise naming
    a bad parameter, setting or backend before anything is built.
    """
    parameters = check_parameters({k: v for k, v in given.items() if v is not UNSET})
    if backend is None:
        configured = configuration()
        return configured.backend(), {**configured.parameters, **parameters}
    if not isinstance(backend, EventBackend):
        # A URL given here may hold a password.
        shown = shown_url(backend) if isinstance(backend, str) else f"{backend!r:.100}"
        raise TypeError(
            f"backend must be an EventBackend, such as backends.from_url(url),"
            f" or None to build it from the settings, not {shown}"
        )
    return backend, parameters


class Configuration(NamedTuple):
    """What the configuration gives an Abortable, every part checked."""

    #: The backend's URL.
    url: str
    #: The setting or variable that gave the URL, for errors.
    source: str
    #: The backend's keyword arguments.
    backend_options: dict[str, Any]
    #: Abortable's parameters that the setting gives, checked.
    parameters: dict[str, Any]

    def backend(self) -> EventBackend:
        """The backend, built with :func:`~dramatiq_abort.backends.from_url`;
        raise naming the setting (and the URL, with no password) it refuses."""
        from .backends import from_url

        try:
            return from_url(self.url, **self.backend_options)
        except (TypeError, ValueError) as e:
            options = f" with {SETTING}[{BACKEND_OPTIONS!r}]" if self.backend_options else ""
            error = TypeError if isinstance(e, TypeError) else ValueError
            raise error(
                f"no abort backend can be built from {self.source} = {shown_url(self.url)}"
                f"{options}: {e}"
            ) from e


#: What an error shows as an example of the setting.
EXAMPLE_SETTING = f"{{{BACKEND!r}: {EXAMPLE_REDIS_URL!r}}}"


def configuration() -> Configuration:
    """The configuration of an Abortable built with no backend, checked in
    full before anything is built.

    The backend's URL is the first of: the setting's ``BACKEND``; the
    environment variable :data:`URL_VARIABLE`; the ``url`` of the broker
    that django_dramatiq's ``DRAMATIQ_BROKER`` setting names, when it is a
    ``RedisBroker``. Django's settings are read only when Django is
    imported and its settings configured: this never imports Django.

    :raises TypeError, ValueError: naming the setting or variable that is wrong.
    :raises TypeError: when none of them names a backend.
    """
    django_settings = _django_settings()
    setting = {} if django_settings is None else _checked(getattr(django_settings, SETTING, None))
    backend_options: dict[str, Any] = setting.get(BACKEND_OPTIONS, {})
    parameters: dict[str, Any] = setting.get(MIDDLEWARE_OPTIONS, {})
    variable = os.environ.get(URL_VARIABLE)
    if BACKEND in setting:
        url, source = setting[BACKEND], f"{SETTING}[{BACKEND!r}]"
    elif variable is not None:
        url, source = _checked_url(variable, URL_VARIABLE), URL_VARIABLE
    else:
        broker = None if django_settings is None else _broker_url(django_settings, backend_options)
        if broker is None:
            raise TypeError(
                "Abortable() was given no backend, and nothing configures one: pass"
                f" backend=..., set the Django setting {SETTING} = {EXAMPLE_SETTING},"
                f" or set the environment variable {URL_VARIABLE}={EXAMPLE_REDIS_URL}"
            )
        url, source = broker
    return Configuration(url, source, backend_options, parameters)


def _django_settings() -> Any | None:
    """Django's settings when Django is imported and they are configured,
    else ``None``. A process that has not imported Django has no settings
    to read: it is not imported here."""
    conf = sys.modules.get("django.conf")
    if conf is None:
        return None
    settings = conf.settings
    return settings if settings.configured else None


def _checked(setting: object) -> dict[str, Any]:
    """The ``DRAMATIQ_ABORT`` setting, every part checked; empty when it is not set."""
    if setting is None:
        return {}
    if not isinstance(setting, Mapping):
        shown = shown_url(setting) if isinstance(setting, str) else f"{setting!r:.100}"
        raise TypeError(f"{SETTING} must be a dict such as {EXAMPLE_SETTING}, not {shown}")
    for key in setting:
        if key not in KEYS:
            raise ValueError(
                f"{SETTING} has the unknown key {key!r:.100}: the keys are {', '.join(KEYS)}"
            )
    checked: dict[str, Any] = {}
    if BACKEND in setting:
        checked[BACKEND] = _checked_url(setting[BACKEND], f"{SETTING}[{BACKEND!r}]")
    for key in (BACKEND_OPTIONS, MIDDLEWARE_OPTIONS):
        options = setting.get(key, {})
        where = f"{SETTING}[{key!r}]"
        if not isinstance(options, Mapping):
            raise TypeError(f"{where} must be a dict of keyword arguments, not {options!r:.100}")
        for name in options:
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"{where} has the key {name!r:.100}, which names no argument")
        checked[key] = dict(options)
    checked[MIDDLEWARE_OPTIONS] = check_parameters(
        checked[MIDDLEWARE_OPTIONS], f"{SETTING}[{MIDDLEWARE_OPTIONS!r}]"
    )
    return checked


def _checked_url(url: object, where: str) -> str:
    """``url`` when it is a str shaped as a URL, else raise naming ``where``;
    its scheme is left to :func:`~dramatiq_abort.backends.from_url`."""
    if not isinstance(url, str):
        raise TypeError(
            f"{where} must be the backend's URL, a str such as {EXAMPLE_REDIS_URL!r},"
            f" not {url!r:.100}"
        )
    if not url.strip():
        raise ValueError(f"{where} is empty: give the backend's URL, such as {EXAMPLE_REDIS_URL!r}")
    if "://" not in url:
        # Such as a class's dotted path, which DRAMATIQ_RESULT_BACKEND takes.
        raise ValueError(
            f"{where} must be the backend's URL, such as {EXAMPLE_REDIS_URL!r},"
            f" not {shown_url(url)}"
        )
    return url


def _broker_url(django_settings: Any, backend_options: Mapping[str, Any]) -> tuple[str, str] | None:
    """The ``url`` of the RedisBroker that django_dramatiq's setting names,
    and where it is; ``None`` for any other broker, or one with no URL.

    Refused when that broker has a namespace of its own and the backend
    does not: several projects on one Redis would otherwise share one
    namespace of aborts, where one's ``abort_where(actor=...)`` stops the
    other's messages of an actor of the same name.
    """
    broker = getattr(django_settings, BROKER_SETTING, None)
    if not isinstance(broker, Mapping):
        return None
    path = broker.get("BROKER")
    options = broker.get("OPTIONS") or {}
    if not isinstance(path, str) or not isinstance(options, Mapping):
        return None
    url = options.get("url")
    if not isinstance(url, str) or not url or not _is_redis_broker(path):
        return None
    namespace = options.get("namespace", BROKER_NAMESPACE)
    if namespace != BROKER_NAMESPACE and "namespace" not in backend_options:
        raise ValueError(
            f"{BROKER_SETTING}['OPTIONS'] gives the broker the namespace {namespace!r:.100}:"
            f" give the aborts one of their own too, as {SETTING} ="
            f" {{{BACKEND_OPTIONS!r}: {{'namespace': '{namespace!s:.100}:aborts:'}}}}"
        )
    return url, f"{BROKER_SETTING}['OPTIONS']['url']"


def _is_redis_broker(path: str) -> bool:
    """Whether the class at the dotted ``path`` is dramatiq's RedisBroker or
    one derived from it; ``False`` when it cannot be imported."""
    from dramatiq.brokers.redis import RedisBroker

    module, _, name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return False
    return isinstance(found, type) and issubclass(found, RedisBroker)
