"""Event backends: where abort requests are recorded and pushed from."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .stub import StubBackend

if TYPE_CHECKING:
    from .redis import RedisBackend

__all__ = ["RedisBackend", "StubBackend"]


def __getattr__(name: str) -> Any:
    # redis is an optional dependency: import it only when asked for.
    if name == "RedisBackend":
        from .redis import RedisBackend

        return RedisBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
