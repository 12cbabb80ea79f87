"""Event backends: where abort requests are recorded and pushed from."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..backend import EventBackend
from ..checks import check_postgres_url, check_redis_url
from .stub import StubBackend

if TYPE_CHECKING:
    from .postgres import PostgresBackend
    from .redis import RedisBackend

__all__ = [
    "PostgresBackend",
    "RedisBackend",
    "StubBackend",
    "backend_name",
    "check_url",
    "from_url",
]

#: The URL schemes :func:`from_url` knows, each with the backend it builds.
SCHEMES = {
    "redis": "RedisBackend",
    "rediss": "RedisBackend",
    "unix": "RedisBackend",
    "postgresql": "PostgresBackend",
    "postgres": "PostgresBackend",
    "memory": "StubBackend",
}


def check_url(url: object) -> str:
    """Return ``url`` when its scheme names a backend that :func:`from_url`
    builds, and the backend's own check of its URLs accepts it; else raise
    ``TypeError`` or ``ValueError``, without repeating the URL, which may
    hold a password."""
    if not isinstance(url, str):
        # Not repeated: bytes may hold a password too.
        raise TypeError(
            f"url must be a str such as 'redis://localhost:6379/0', not a {type(url).__name__}"
        )
    name = backend_name(url)
    if name == "RedisBackend":
        check_redis_url(url)
    elif name == "PostgresBackend":
        check_postgres_url(url)
    return url


def from_url(url: str, **options: Any) -> EventBackend:
    """The event backend that ``url`` names, built with ``options`` (such as
    ``namespace=``) passed to its constructor.

    ``redis://``, ``rediss://`` and ``unix://`` build a
    :class:`RedisBackend` (see :meth:`RedisBackend.from_url` for the URL's
    options); ``postgresql://`` and ``postgres://`` a
    :class:`PostgresBackend` (which needs the ``postgres`` extra, psycopg
    3); ``memory://`` a :class:`StubBackend`, which only the threads of
    one process share. Any other scheme is refused with the list of those
    known (see :func:`check_url`).
    """
    name = backend_name(check_url(url))
    if name == "StubBackend":
        if options:
            raise TypeError(f"memory:// takes no options, not {', '.join(sorted(options))}")
        return StubBackend()
    backend: EventBackend = __getattr__(name).from_url(url, **options)
    return backend


def backend_name(url: str) -> str:
    """The name of the backend class that ``url``'s scheme stands for."""
    # Read apart from the rest, which the backend's own check parses.
    scheme = url.partition("://")[0] if "://" in url else ""
    name = SCHEMES.get(scheme.lower())
    if name is None:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise ValueError(
            f"the backend URL must start with one of {known}"
            + (f", not {scheme}://" if scheme else "")
        )
    return name


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
