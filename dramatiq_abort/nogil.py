"""Non-blocking reads that keep the GIL.

A CPU-bound actor takes the GIL each time another thread gives it up, and
only hands it back after the interpreter's switch interval (5 ms). The
watcher gives it up while it waits for events; once awake, every further
system call through Python's own ``os``/``socket`` functions would give it
up again and cost another switch interval before the abort lands. The
calls here go straight to libc through ``ctypes.PyDLL``, which keeps the
GIL; they never block, so keeping it costs the other threads nothing.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
from typing import Any, Callable

_READ_SIZE = 65536
_RETRY = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)


class _PollFd(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_int), ("events", ctypes.c_short), ("revents", ctypes.c_short)]


def _load_libc() -> tuple[Callable[..., int], Callable[..., int]] | None:
    try:
        libc: Any = ctypes.PyDLL(None, use_errno=True)
        libc_poll, libc_read = libc.poll, libc.read
    except (OSError, AttributeError):  # pragma: no cover - not a POSIX libc
        return None
    libc_poll.argtypes = [ctypes.POINTER(_PollFd), ctypes.c_ulong, ctypes.c_int]
    libc_poll.restype = ctypes.c_int
    libc_read.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
    libc_read.restype = ctypes.c_ssize_t
    return libc_poll, libc_read


_libc = _load_libc() if hasattr(select, "POLLIN") else None


def readable(fd: int) -> bool:
    """Whether ``fd`` has data to read (or has reached its end), right now."""
    if _libc is None:  # pragma: no cover
        return bool(select.select([fd], [], [], 0)[0])
    poll_fd = _PollFd(fd, select.POLLIN, 0)
    ready = _libc[0](ctypes.byref(poll_fd), 1, 0)
    if ready < 0:
        error = ctypes.get_errno()
        if error in _RETRY:
            return False
        raise OSError(error, os.strerror(error))
    if poll_fd.revents & select.POLLNVAL:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))
    return ready > 0


def read_ready(fd: int) -> bytes | None:
    """The bytes waiting on ``fd``; ``None`` when there are none yet, and
    ``b""`` once the other end has closed."""
    if not readable(fd):
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
