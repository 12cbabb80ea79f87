"""A table whose entries expire, for the tables a worker process and the
stub backend keep in memory (internal: not a public name).

The entries sit in a dict, read as any dict is; a heap of expiries lets
:meth:`ExpiringTable.forget_expired` drop the expired ones in the order
they expire, without looking at the others.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["ExpiringTable"]

V = TypeVar("V")


class ExpiringTable(Generic[V]):
    """Values by key, each expiring at the ``time.monotonic()`` that its
    value says. An expired entry stays until :meth:`forget_expired` drops
    it: readers of :attr:`entries` compare the expiry themselves, or use
    :meth:`get`.

    Takes no lock: its owner guards it as it guards the rest of its state.
    """

    def __init__(self, expiry: Callable[[V], float]) -> None:
        """``expiry`` gives the ``time.monotonic()`` at which a value
        expires; ``math.inf`` for one that stays until it is replaced or
        popped."""
        #: The entries, expired ones not forgotten yet included. Changed in
        #: place, never replaced: a reader may bind ``entries.get`` once.
        self.entries: dict[str, V] = {}
        self._expiry = expiry
        #: ``(expires_at, key)`` of each value put that expires; an entry
        #: whose key was put again, or popped, since is passed over.
        self._expiries: list[tuple[float, str]] = []

    def __len__(self) -> int:
        """How many entries are held, expired ones not forgotten yet included."""
        return len(self.entries)

    @property
    def scheduled(self) -> int:
        """How many expiries wait in the heap, stale ones included."""
        return len(self._expiries)

    def get(self, key: str, now: float) -> V | None:
        """The value of ``key`` unless it expired by ``now``."""
        value = self.entries.get(key)
        if value is None or self._expiry(value) <= now:
            return None
        return value

    def put(self, key: str, value: V) -> None:
        """Hold ``value`` for ``key``, in place of any value it had."""
        self.entries[key] = value
        expires_at = self._expiry(value)
        if expires_at != math.inf:
            heapq.heappush(self._expiries, (expires_at, key))

    def pop(self, key: str) -> V | None:
        """Drop the value of ``key``, expired or not, and return it."""
        return self.entries.pop(key, None)

    def next_expiry(self) -> float | None:
        """``time.monotonic()`` at which the next value expires, if any.
        It may be that of a value replaced since: forgetting then drops nothing."""
        return self._expiries[0][0] if self._expiries else None

    def forget_expired(self, now: float) -> bool:
        """Drop the values expired by ``now``; whether any was dropped."""
        forgot = False
        expiries, entries = self._expiries, self.entries
        while expiries and expiries[0][0] <= now:
            _expires_at, key = heapq.heappop(expiries)
            value = entries.get(key)
            # A value put again since expires at a time of its own.
            if value is not None and self._expiry(value) <= now:
                del entries[key]
                forgot = True
        return forgot
