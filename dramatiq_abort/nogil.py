"""Non-blocking reads that keep the GIL.

A CPU-bound actor takes the GIL each time another thread gives it up, and
only hands it back after the interpreter's switch interval (5 ms). The
watcher gives it up while it waits for events; once awake, every further
system call through Python's own ``os``/``socket`` functions would give it
up again and cost another switch interval before the abort lands. The
calls here go straight to libc through ``ctypes.PyDLL``, which keeps the
GIL; they never block, so keeping it costs the other threads nothing.

Two calls make the interface: a :class:`ReadinessProbe` tells any thread
whether a descriptor has data (worker threads ask it once per message, so
it is one system call with no Python frame), and :func:`read_ready` reads
what is there. ``ReadinessProbe(fd, plain=True)`` uses ``select`` instead,
for subscriptions read the plain way (see
:mod:`dramatiq_abort.backends.redis.channels`).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import select
from collections.abc import Callable
from typing import Any

__all__ = ["ReadinessProbe", "read_ready"]

_READ_SIZE = 65536
_RETRY = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)


class _PollFd(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_int), ("events", ctypes.c_short), ("revents", ctypes.c_short)]


def _load_libc() -> tuple[Callable[..., int], Callable[..., int]] | None:
    try:
        # poll without argument conversion nor errno kept, which halves the
        # cost of a call: a failure is asked again through select.
        libc_poll: Any = ctypes.PyDLL(None).poll
        libc_read: Any = ctypes.PyDLL(None, use_errno=True).read
    except (OSError, AttributeError):  # pragma: no cover - not a POSIX libc
        return None
    libc_poll.restype = ctypes.c_int
    libc_read.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
    libc_read.restype = ctypes.c_ssize_t
    return libc_poll, libc_read


_libc = _load_libc() if hasattr(select, "POLLIN") else None


class ReadinessProbe:
    """Tells whether one file descriptor has data to read (or has reached
    its end), right now; safe to call from any thread.

    Made once per descriptor: a call is one ``poll(2)`` and nothing else.
    With ``plain``, a call is ``select.select()``, which gives the GIL up.
    """

    def __init__(self, fd: int, *, plain: bool = False) -> None:
        self.fd = fd
        # Shared by every caller: the call keeps the GIL, so no two threads
        # are ever in it at once.
        self._poll_fd = _PollFd(fd, select.POLLIN, 0)
        #: The bare system call, for a hot path: 0 when nothing is to be
        #: read, else 1 (or -1 on an error, or without libc), which
        #: calling the probe itself makes sure of. A C call: no Python frame.
        self.ready_count: Callable[[], int] = (
            # One descriptor, no wait: plain ints, converted at a third of
            # the cost of ctypes objects (libffi widens an int argument to
            # its register, so poll's unsigned long count reads 1).
            functools.partial(_libc[0], ctypes.byref(self._poll_fd), 1, 0)
            if _libc is not None and not plain
            else functools.partial(_select_count, fd)
        )

    def __call__(self) -> bool:
        ready = self.ready_count()
        if ready < 0:
            # Rare (EINTR): ask again the plain way, which raises what went wrong.
            return _select_count(self.fd) > 0
        if self._poll_fd.revents & select.POLLNVAL:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return ready > 0


def _select_count(fd: int) -> int:
    return len(select.select([fd], [], [], 0)[0])


def read_ready(fd: int) -> bytes | None:
    """The bytes waiting on ``fd``; ``None`` when there are none yet, and
    ``b""`` once the other end has closed."""
    if not ReadinessProbe(fd)():
        return None
    if _libc is None:  # pragma: no cover
        return os.read(fd, _READ_SIZE)
    buffer = ctypes.create_string_buffer(_READ_SIZE)
    count = _libc[1](fd, buffer, _READ_SIZE)
    if count < 0:
        error = ctypes.get_errno()
        if error in _RETRY:
            return None
        raise OSError(error, os.strerror(error))
    return buffer.raw[:count]
