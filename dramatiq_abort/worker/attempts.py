"""The watcher's attempts to reach a backend that fails: how long it
waits before the next, and what it logs of them."""

from __future__ import annotations

import logging
import random

__all__ = ["MAX_BACKOFF", "Attempts", "backoff"]

#: Longest wait between two attempts to reach a backend that fails.
MAX_BACKOFF = 30.0


def backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` failures in a row: exponential, jittered."""
    return min(MAX_BACKOFF, 0.05 * 2.0 ** min(failures, 16)) * random.uniform(0.5, 1.0)


class Attempts:
    """The failed attempts in a row to do one thing with the backend
    (``what``: "reach", "poll"): one log line per failure, the traceback
    only at DEBUG, where it does not drown the log while the backend stays
    down, and one line once an attempt succeeds again."""

    def __init__(self, logger: logging.Logger, what: str, again: str) -> None:
        """``again``: the past tense said once the backend answers again
        ("reached", "polled")."""
        self.logger = logger
        self.what = what
        self.again = again
        #: Failures in a row since the last success.
        self.failures = 0

    def failed(self, error: Exception, at_least: float = 0.0) -> float:
        """Log the failure ``error``; the seconds to wait, at least
        ``at_least``, before the next attempt."""
        self.failures += 1
        delay = max(at_least, backoff(self.failures))
        self.logger.warning(
            "Abort watcher cannot %s its backend (attempt %d, %s: %.200s); retrying in %.2f s.",
            self.what,
            self.failures,
            type(error).__name__,
            error,
            delay,
        )
        self.logger.debug("Attempt %d failed with:", self.failures, exc_info=error)
        return delay

    def succeeded(self) -> None:
        """Say that the backend answers again, if it failed before."""
        if self.failures:
            self.logger.info(
                "Abort watcher %s its backend again after %d failed attempt(s).",
                self.again,
                self.failures,
            )
            self.failures = 0
