"""Asking the backend whether a message about to start was cancelled,
while the watcher has no live push channel to learn it from."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..backend import EventBackend, TimedEvent
from ..mode import AbortMode
from ..wire import event_key

__all__ = ["CancelQuestions"]

#: Seconds between two warnings that the backend could not be asked.
POLL_WARNING_INTERVAL = 10


class CancelQuestions:
    """Asks the backend, for a worker thread whose message is about to
    start, whether a cancel is recorded for it; one warning per
    ``POLL_WARNING_INTERVAL`` while the backend fails, since once per
    message would flood the log."""

    def __init__(
        self,
        backend: EventBackend,
        logger: logging.Logger,
        abort_ttl: int,
        record: Callable[[list[TimedEvent], float], object],
    ) -> None:
        """``abort_ttl``: the TTL, in ms, a request found is kept for;
        ``record``: records the requests of events in the table, given
        ``time.monotonic()``."""
        self.backend = backend
        self.logger = logger
        self.abort_ttl = abort_ttl
        self.record = record
        self._muted_until = 0.0

    def ask(self, message_id: str) -> None:
        """Record the cancel of ``message_id``, if the backend holds one;
        a failure is logged, and the message starts anyway."""
        try:
            event = self.backend.poll(event_key(message_id, AbortMode.CANCEL))
        except Exception as e:
            now = time.monotonic()
            if now >= self._muted_until:
                self._muted_until = now + POLL_WARNING_INTERVAL
                self.logger.warning(
                    "Could not ask the backend whether message %r was aborted; it starts "
                    "anyway (%s: %s). Further failures are not logged for %d s.",
                    message_id,
                    type(e).__name__,
                    e,
                    POLL_WARNING_INTERVAL,
                )
            return
        if event is not None:
            # Called by a worker thread about to start the message: recorded
            # only, the thread finds it as it starts.
            self.record([TimedEvent(event, self.abort_ttl, self.abort_ttl)], time.monotonic())
