"""What compat needs of dramatiq's Results middleware: its options for a
message, and dropping a stored result."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend, StubBackend

from ..middleware import middleware_of


def result_options(broker: dramatiq.Broker, message: Any) -> tuple[bool, int]:
    """Whether the result of ``message`` (``None``: of any message) is
    stored, and for how many milliseconds; ``(False, 0)`` without Results."""
    results = middleware_of(broker, Results)
    if results is None:
        return False, 0
    if message is None:
        return bool(results.store_results), int(results.result_ttl)
    actor = broker.actors.get(message.actor_name)
    actor_options = actor.options if actor is not None else {}
    store = message.options.get(
        "store_results", actor_options.get("store_results", results.store_results)
    )
    ttl = message.options.get("result_ttl", actor_options.get("result_ttl", results.result_ttl))
    return bool(store), int(ttl)


def delete_result(backend: Any, message: dramatiq.Message[Any]) -> None:
    """Drop the result stored for ``message`` in a Results ``backend``.

    dramatiq's backends have no call for it: this knows how the Redis and
    stub backends keep results, and raises ``NotImplementedError`` for others.
    """
    key = backend.build_message_key(message)
    if isinstance(backend, RedisBackend):
        backend.client.delete(key)
    elif isinstance(backend, StubBackend):
        backend.results.pop(key, None)
    else:
        raise NotImplementedError(f"cannot forget results kept by {type(backend).__name__}")
