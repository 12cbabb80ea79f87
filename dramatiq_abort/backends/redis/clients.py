"""The redis-py clients of the Redis backend: the one built for a URL, and
what the backend reads of a client (its database, its socket timeout, the
node that holds a key)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

__all__ = [
    "POOL_SIZE",
    "POOL_TIMEOUT",
    "client_for_url",
    "database",
    "node_client",
    "socket_timeout",
]

#: Connections in the pool of a client made by :func:`client_for_url`, and
#: how long a thread waits for one of them, in seconds.
POOL_SIZE = 100
POOL_TIMEOUT = 20


def client_for_url(url: str) -> Any:
    """A client for ``url``, a URL that ``check_redis_url`` took: a
    ``RedisCluster`` with ``cluster=true`` in its query string, else a
    ``redis.Redis`` whose pool makes a thread wait for a free connection
    rather than fail."""
    url, cluster = _split_cluster_flag(url)
    if cluster:
        try:
            return RedisCluster.from_url(url)
        except RedisClusterException as e:
            # The cluster client connects at once, and its errors are
            # not RedisErrors: make them one, as every other failure to
            # reach Redis is.
            raise redis.RedisError(f"Redis Cluster: {e}") from e
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=POOL_SIZE, timeout=POOL_TIMEOUT
    )
    return redis.Redis.from_pool(pool)


def _split_cluster_flag(url: str) -> tuple[str, bool]:
    """``url`` without its ``cluster`` query parameter, and that parameter."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    flags = [value.lower() for name, value in query if name == "cluster"]
    if not flags:
        return url, False
    if flags[-1] not in ("true", "yes", "1", "false", "no", "0"):
        # Not the URL itself: it may hold a password.
        raise ValueError(f"cluster must be true or false in a Redis URL, not {flags[-1]!r}")
    rest = urlencode([(name, value) for name, value in query if name != "cluster"])
    return urlunsplit(parts._replace(query=rest)), flags[-1] in ("true", "yes", "1")


def database(client: Any) -> int:
    """The number of the database that ``client`` selects: 0 on a cluster,
    which has no other."""
    if isinstance(client, RedisCluster):
        return 0
    return int(client.connection_pool.connection_kwargs.get("db") or 0)


def socket_timeout(client: Any) -> float | None:
    """How long, in seconds, the connections of ``client`` (a ``redis.Redis``)
    wait for a reply before they fail (``None``: for ever). Read from a
    connection made the way its pool makes them: the pool's settings leave
    out redis-py's default, which differs between its versions."""
    pool = client.connection_pool
    timeout = pool.connection_class(**pool.connection_kwargs).socket_timeout
    return None if timeout is None else float(timeout)


def node_client(client: Any, key: str) -> Any:
    """The ``redis.Redis`` of the node that holds ``key``: ``client`` itself,
    unless it is a cluster's."""
    if isinstance(client, RedisCluster):
        return client.get_redis_connection(client.get_node_from_key(key))
    return client
