"""A shorter switch interval while an Abort waits to be raised.

A thread raises the Abort set for it only once it holds the GIL, and a
CPU-bound thread that holds it gives it up after the interpreter's switch
interval (5 ms by default); with many such threads, the aborted one may
wait many intervals. While an Abort is on its way, the interval is made
short, and put back as soon as every Abort on its way has landed, or has
had ``MAX_WAIT`` seconds to.
"""

from __future__ import annotations

import sys
import threading
import time

__all__ = ["FAST_INTERVAL", "MAX_WAIT", "FastSwitching"]

#: The switch interval while an Abort is on its way, in seconds.
FAST_INTERVAL = 0.0002
#: The longest an Abort keeps the interval short, in seconds: a thread
#: blocked in a system call may not raise it for a long time.
MAX_WAIT = 0.1


class FastSwitching:
    """Holds the interpreter's switch interval at ``FAST_INTERVAL`` while
    any Abort is on its way, and restores the interval it found.

    Every :meth:`hold` is matched by a :meth:`release` (from the aborted
    thread, once its Abort landed or its message ended) or expires after
    ``MAX_WAIT`` (see :meth:`expire`, called by the watcher).
    """

    def __init__(self) -> None:
        # Taken only on the way of an abort, never per message.
        self._lock = threading.Lock()
        #: Keys of the Aborts on their way, and when each stops counting.
        self._held: dict[int, float] = {}
        #: The interval found when the first hold began.
        self._saved: float | None = None

    @property
    def expires_at(self) -> float | None:
        """``time.monotonic()`` at which the next hold expires, if any."""
        if not self._held:
            return None
        with self._lock:
            return min(self._held.values(), default=None)

    def hold(self, key: int) -> None:
        """Shorten the interval until ``key`` is released."""
        with self._lock:
            if self._saved is None:
                self._saved = sys.getswitchinterval()
                sys.setswitchinterval(min(FAST_INTERVAL, self._saved))
            self._held[key] = time.monotonic() + MAX_WAIT

    def release(self, key: int) -> None:
        """``key``'s Abort landed, or will not: restore the interval if it
        was the last one on its way. Releasing twice is harmless."""
        with self._lock:
            if self._held.pop(key, None) is not None:
                self._restore_if_idle()

    def expire(self, now: float) -> None:
        """Release the holds older than ``MAX_WAIT``, ``now`` being ``time.monotonic()``."""
        if not self._held:
            return
        with self._lock:
            for key in [key for key, until in self._held.items() if until <= now]:
                del self._held[key]
            self._restore_if_idle()

    def _restore_if_idle(self) -> None:
        if not self._held and self._saved is not None:
            sys.setswitchinterval(self._saved)
            self._saved = None
