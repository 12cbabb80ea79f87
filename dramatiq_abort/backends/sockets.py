"""What the backends' connections share: TCP keepalive on the sockets that
wait, idle, for pushed events."""

from __future__ import annotations

import socket

__all__ = ["KEEPALIVE", "keep_alive"]

#: TCP keepalive of a connection that waits for pushes, in seconds: idle
#: time before the first probe, time between probes, and probes unanswered
#: before the connection is dropped. Such a connection sends nothing while
#: no abort comes, so a host gone without closing it would otherwise go
#: unnoticed for hours.
KEEPALIVE = (10, 5, 3)


def keep_alive(sock: socket.socket) -> None:
    """Turn TCP keepalive on for ``sock`` (see ``KEEPALIVE``)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in zip(
        ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"), KEEPALIVE, strict=False
    ):
        # Not every platform has all three.
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
