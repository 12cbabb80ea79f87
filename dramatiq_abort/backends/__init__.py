"""Event backends: where abort requests are recorded and pushed from."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..backend import EventBackend
from .stub import StubBackend

if TYPE_CHECKING:
    from .postgres import PostgresBackend
    from .redis import RedisBackend

__all__ = ["PostgresBackend", "RedisBackend", "StubBackend", "from_url"]

#: The URL schemes :func:`from_url` knows, each with the backend it builds.
SCHEMES = {
    "redis": "RedisBackend",
    "rediss": "RedisBackend",
    "unix": "RedisBackend",
    "postgresql": "PostgresBackend",
    "postgres": "PostgresBackend",
    "memory": "StubBackend",
}


def from_url(url: str, **options: Any) -> EventBackend:
    """The event backend that ``url`` names, built with ``options`` (such as
    ``namespace=``) passed to its constructor.

    ``redis://``, ``rediss://`` and ``unix://`` build a
    :class:`RedisBackend` (see :meth:`RedisBackend.from_url` for the URL's
    options); ``postgresql://`` and ``postgres://`` a
    :class:`PostgresBackend` (which needs the ``postgres`` extra, psycopg
    3); ``memory://`` a :class:`StubBackend`, which only the
    processes of one interpreter share. Any other scheme is refused with
    the list of those known; the error never repeats the URL, which may
    hold a password.
    """
    if not isinstance(url, str):
        raise TypeError(f"url must be a str such as 'redis://localhost:6379/0', not {url!r:.100}")
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        scheme = ""
    name = SCHEMES.get(scheme.lower())
    if name is None:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise ValueError(
            f"the backend URL must start with one of {known}"
            + (f", not {scheme}://" if scheme else "")
        )
    if name == "StubBackend":
        if options:
            raise TypeError(f"memory:// takes no options, not {', '.join(sorted(options))}")
        return StubBackend()
    backend: EventBackend = __getattr__(name).from_url(url, **options)
    return backend


def __getattr__(name: str) -> Any:
    # Each backend's client library is imported only when asked for.
    if name == "RedisBackend":
        from .redis import RedisBackend

        return RedisBackend
    if name == "PostgresBackend":
        try:
            from .postgres import PostgresBackend
        except ImportError as e:
            raise ImportError(
                f"PostgresBackend needs psycopg 3 ({e}): install dramatiq-abort[postgres]"
            ) from e
        return PostgresBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
