"""The executions that carry an ancestry, indexed by ancestor: an abort
finds the descendants of its message running here without a scan."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from .execution import Execution

__all__ = ["Families"]


class Families:
    """The executions registered with ancestors (see
    :mod:`dramatiq_abort.worker.lineage`), by ancestor id. Only messages
    that carry an ancestry take its lock."""

    def __init__(self, registered: Callable[[int], Execution | None]) -> None:
        """``registered``: the execution in the slot of a thread id, if any."""
        self.registered = registered
        self._by_ancestor: dict[str, list[Execution]] = {}
        self._lock = threading.Lock()

    def join(self, execution: Execution) -> None:
        """Index ``execution`` under each of its ancestors."""
        with self._lock:
            for ancestor in execution.ancestors:
                self._by_ancestor.setdefault(ancestor, []).append(execution)

    def leave(self, execution: Execution) -> None:
        """Take ``execution`` out of the index, once its message is done with."""
        with self._lock:
            for ancestor in execution.ancestors:
                family = self._by_ancestor.get(ancestor)
                if family is not None and execution in family:
                    family.remove(execution)
                    if not family:
                        del self._by_ancestor[ancestor]

    def descendants(self, message_ids: Iterable[str]) -> dict[str, list[Execution]]:
        """The executions running now that descend from each of
        ``message_ids``, by ancestor."""
        if not self._by_ancestor:
            return {}
        registered = self.registered
        found: dict[str, list[Execution]] = {}
        with self._lock:
            for message_id in message_ids:
                # Only an execution still in its slot: its thread may have
                # moved on to another message, which must not be hit.
                family = [
                    execution
                    for execution in self._by_ancestor.get(message_id, ())
                    if registered(execution.thread_id) is execution
                ]
                if family:
                    found[message_id] = family
        return found

    def ancestor_ids(self) -> list[str]:
        """The ids of the ancestors of the executions running now."""
        with self._lock:
            return list(self._by_ancestor)
