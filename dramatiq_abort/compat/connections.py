"""The dramatiq broker and backends that Celery's broker and result backend
URLs name, each URL checked before anything is built.

The clients of Redis and RabbitMQ are optional dependencies: each is
imported only where a URL asks for it."""

from __future__ import annotations

import urllib.parse
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.results.backend import ResultBackend
from dramatiq.results.backends import StubBackend as StubResultBackend

from ..backend import EventBackend
from ..backends import StubBackend as StubAbortBackend
from ..checks import check_redis_url

__all__ = [
    "AMQP_SCHEMES",
    "MEMORY_SCHEMES",
    "REDIS_SCHEMES",
    "abort_backend",
    "build_broker",
    "check_scheme",
    "key_prefix",
    "result_backend",
]

#: URL schemes of a Redis server, for the broker and the result backend.
REDIS_SCHEMES = ("redis", "rediss")
#: URL schemes of a RabbitMQ server; ``pyamqp`` is Celery's name for
#: ``amqp`` through the py-amqp client.
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
#: URL schemes of an in-memory broker or result backend: one process only.
MEMORY_SCHEMES = ("memory", "cache+memory")


def check_scheme(name: str, url: str | None, schemes: tuple[str, ...]) -> str | None:
    """The scheme of ``url``, checked to be one of ``schemes``; a Redis URL
    is checked whole (see ``check_redis_url``)."""
    if url is None:
        return None
    scheme = url.partition("://")[0] if isinstance(url, str) and "://" in url else None
    if scheme not in schemes:
        # A URL may hold a password: only its scheme is repeated.
        if scheme is not None:
            given = f"{name}='{scheme}://...'"
        elif isinstance(url, str):
            given = f"{name} (a URL without a scheme)"
        else:
            given = f"{name}={url!r:.100}"
        raise ValueError(
            f"{given} is not supported: give a URL starting with one of"
            f" {[s + '://' for s in schemes]!r}"
        )
    if scheme in REDIS_SCHEMES:
        try:
            check_redis_url(url)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    return scheme


def key_prefix(transport_options: Any) -> str:
    """The ``global_keyprefix`` of ``broker_transport_options``, or ``""``."""
    if transport_options is None:
        return ""
    if not isinstance(transport_options, dict):
        raise TypeError(
            f"broker_transport_options must be a dict such as {{'global_keyprefix': 'proj:'}},"
            f" not {transport_options!r}"
        )
    unknown = sorted(set(transport_options) - {"global_keyprefix"})
    if unknown:
        raise TypeError(
            f"broker_transport_options {unknown!r} are not supported here: only"
            " 'global_keyprefix' is"
        )
    prefix = transport_options.get("global_keyprefix", "")
    if not isinstance(prefix, str):
        raise TypeError(f"global_keyprefix must be a str such as 'proj:', not {prefix!r}")
    return prefix


def result_backend(url: str, prefix: str) -> ResultBackend:
    """dramatiq's result backend for Celery's ``backend`` URL, of a checked
    scheme; with a ``prefix`` its keys start with it."""
    if url.partition("://")[0] in MEMORY_SCHEMES:
        return StubResultBackend()
    from dramatiq.results.backends import RedisBackend

    if not prefix:
        backend: ResultBackend = RedisBackend(url=url)
    else:
        backend = RedisBackend(
            url=url, namespace=prefix + "dramatiq-results", use_namespace_prefix_keys=True
        )
    return backend


def abort_backend(url: str | None, prefix: str) -> EventBackend:
    """The abort backend on the Redis of ``url``, in-memory without one; with
    a ``prefix`` its keys start with it."""
    if url is None:
        return StubAbortBackend()
    from ..backends.redis import DEFAULT_NAMESPACE, RedisBackend

    return RedisBackend.from_url(url, namespace=prefix + DEFAULT_NAMESPACE)


def build_broker(url: str | None, scheme: str | None, prefix: str) -> dramatiq.Broker:
    """The dramatiq broker for Celery's broker URL, of a checked ``scheme``."""
    if scheme in REDIS_SCHEMES:
        from dramatiq.brokers.redis import RedisBroker

        return RedisBroker(url=url, namespace=prefix + "dramatiq")
    if scheme in AMQP_SCHEMES:
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=_pika_url(str(url)))
    return StubBroker()


def _pika_url(url: str) -> str:
    """Celery's AMQP URL as pika reads it: ``pyamqp`` is ``amqp``, and the
    virtual host ``/``, which Celery writes ``//``, is pika's ``%2F``."""
    parts = urllib.parse.urlsplit(url)
    scheme = "amqp" if parts.scheme == "pyamqp" else parts.scheme
    vhost = parts.path[1:] if parts.path.startswith("/") else parts.path
    path = "/" + urllib.parse.quote(vhost, safe="") if vhost else ""
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, parts.query, parts.fragment))
