"""Subscribed connections to Redis: how a worker's subscription reads what
Redis pushes.

Two readers, one interface (:class:`Channel`): :class:`RawChannel` reads
the socket itself, through :mod:`dramatiq_abort.nogil`'s calls that keep
the GIL, with a RESP parser of its own; :class:`PubSubChannel` is redis-py's
``PubSub``. The first is the default; ``plain_reads=True`` (or the
environment variable ``DRAMATIQ_ABORT_PLAIN_READS=1``) picks the second.
"""

from __future__ import annotations

import abc
import logging
import select
import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any

import redis

from ... import nogil
from ..sockets import keep_alive

__all__ = ["Channel", "PubSubChannel", "RawChannel", "text"]

#: The name under which it logs since 2.0, from when it was a module of
#: its own beside the backend's.
logger = logging.getLogger("dramatiq_abort.backends.redis_channels")


def text(value: Any) -> str:
    """``value`` as Redis returned it, as a str."""
    return value.decode() if isinstance(value, bytes) else str(value)


class Channel(abc.ABC):
    """One connection subscribed to one channel, read by one thread.

    Once lost it stays lost: its owner notices (a read raises) and catches
    up from what is recorded, instead of being silently resubscribed.
    """

    #: The connection's socket.
    _sock: socket.socket

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def fileno(self) -> int:
        """The connection's descriptor: readable while messages wait."""
        return int(self._sock.fileno())

    @abc.abstractmethod
    def probe(self) -> nogil.ReadinessProbe:
        """A probe of :meth:`fileno`, made the way the channel reads."""

    @abc.abstractmethod
    def ready_payloads(self) -> list[Any]:
        """The payloads of the messages received so far; never blocks."""

    @abc.abstractmethod
    def payloads(self, timeout: float | None) -> Iterator[Any]:
        """The payloads of the messages that come within ``timeout`` seconds."""

    @abc.abstractmethod
    def close(self) -> None:
        """Drop the connection. Safe to call more than once."""


class RawChannel(Channel):
    """A connection of its own, read here rather than by redis-py's
    parser, with reads that keep the GIL (see :mod:`dramatiq_abort.nogil`).

    The connection is made for the subscription and never returned to the
    client's pool.
    """

    def __init__(self, client: Any, channel: str, max_payload: int) -> None:
        # Made apart from the pool, which would count it against its limit
        # for good.
        pool = client.connection_pool
        self._connection = pool.connection_class(**pool.connection_kwargs)
        self._replies = _ReplyReader(max_payload)
        try:
            self._connection.connect()
            self._sock = self._connection._sock
            keep_alive(self._sock)
            self._tls = isinstance(self._sock, ssl.SSLSocket)
            if self._tls:
                self._sock.setblocking(False)
            self._connection.send_command("SUBSCRIBE", channel)
            connection = self._connection
            timeout = connection.socket_connect_timeout or connection.socket_timeout or 10.0
            deadline = time.monotonic() + timeout
            while not self._replies.pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._wait(remaining):
                    raise redis.TimeoutError(f"no reply to SUBSCRIBE {channel!r}")
            reply = self._replies.pending.pop(0)
            if not isinstance(reply, list) or text(reply[0]) != "subscribe":
                raise redis.ConnectionError(f"unexpected reply to SUBSCRIBE: {reply!r:.200}")
        except BaseException:
            self._connection.disconnect()
            raise

    def probe(self) -> nogil.ReadinessProbe:
        return nogil.ReadinessProbe(self.fileno())

    def ready_payloads(self) -> list[Any]:
        """The payloads of the messages received so far; never blocks."""
        self._read_available()
        replies, self._replies.pending = self._replies.pending, []
        return [
            reply[2]
            for reply in replies
            if isinstance(reply, list) and len(reply) == 3 and text(reply[0]) == "message"
        ]

    def payloads(self, timeout: float | None) -> Iterator[Any]:
        """The payloads of the messages that come within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            yield from self.ready_payloads()
            remaining = None if deadline is None else deadline - time.monotonic()
            if (remaining is not None and remaining <= 0) or not self._wait(remaining):
                return

    def close(self) -> None:
        self._connection.disconnect()

    def _wait(self, timeout: float | None) -> bool:
        if not self._replies.pending and select.select([self._sock], [], [], timeout)[0]:
            self._read_available()
        return bool(self._replies.pending)

    def _read_available(self) -> None:
        while True:
            if self._tls:
                try:
                    data: bytes | None = self._sock.recv(65536)
                except (ssl.SSLWantReadError, BlockingIOError):
                    data = None
            else:
                data = nogil.read_ready(self._sock.fileno())
            if data is None:
                return
            if not data:
                raise redis.ConnectionError("the subscription was closed by the server")
            self._replies.feed(data)


class _ReplyReader:
    """Splits the bytes of a subscribed connection into replies: RESP2
    arrays or RESP3 pushes of strings and integers."""

    def __init__(self, max_payload: int) -> None:
        self.max_payload = max_payload
        self._buffer = bytearray()
        #: Complete replies not handed over yet.
        self.pending: list[Any] = []

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while True:
            parsed = self._parse(0)
            if parsed is None:
                return
            reply, end = parsed
            del self._buffer[:end]
            self.pending.append(reply)

    def _parse(self, start: int) -> tuple[Any, int] | None:
        line_end = self._buffer.find(b"\r\n", start)
        if line_end < 0:
            return None
        kind = bytes(self._buffer[start : start + 1])
        header = bytes(self._buffer[start + 1 : line_end])
        position = line_end + 2
        if kind in (b"*", b">"):
            items = []
            for _ in range(int(header)):
                parsed = self._parse(position)
                if parsed is None:
                    return None
                item, position = parsed
                items.append(item)
            return items, position
        if kind == b"$":
            size = int(header)
            if size < 0:
                return None, position
            if size > self.max_payload:
                # Refused before it is read: the connection is dropped, and
                # its owner catches up from the records when it reconnects.
                logger.warning("Refusing a pushed payload of %d bytes: too large.", size)
                raise redis.ConnectionError(f"a pushed payload of {size} bytes is too large")
            if len(self._buffer) < position + size + 2:
                return None
            return bytes(self._buffer[position : position + size]), position + size + 2
        if kind == b":":
            return int(header), position
        if kind in (b"+", b"-"):
            return header, position
        if kind == b"_":
            return None, position
        raise redis.ConnectionError(f"unexpected reply type {kind!r} on the abort subscription")


class PubSubChannel(Channel):
    """One redis-py ``PubSub`` subscribed to one channel: the plain reads.

    redis-py reconnects and resubscribes a ``PubSub`` by itself; a
    reconnection is noticed here and the channel counted as lost, so that
    its owner catches up. A payload larger than ``max_payload`` is refused
    once read, not before.
    """

    def __init__(self, client: Any, channel: str, max_payload: int) -> None:
        self.max_payload = max_payload
        self._lost = False
        self._pubsub = client.pubsub()
        try:
            self._pubsub.subscribe(channel)
            connection = self._pubsub.connection
            timeout = connection.socket_connect_timeout or connection.socket_timeout or 10.0
            deadline = time.monotonic() + timeout
            while True:
                remaining = deadline - time.monotonic()
                reply = self._pubsub.get_message(timeout=max(0.0, remaining))
                if reply is not None and reply["type"] == "subscribe":
                    break
                if remaining <= 0:
                    raise redis.TimeoutError(f"no reply to SUBSCRIBE {channel!r}")
            # The one private attribute read here: select() needs the socket.
            self._sock = connection._sock
            keep_alive(self._sock)
            connection.register_connect_callback(self._reconnected)
        except BaseException:
            self._pubsub.close()
            raise

    def probe(self) -> nogil.ReadinessProbe:
        return nogil.ReadinessProbe(self.fileno(), plain=True)

    def ready_payloads(self) -> list[Any]:
        payloads = []
        while (reply := self._read(0.0)) is not None:
            payloads.append(reply)
        return payloads

    def payloads(self, timeout: float | None) -> Iterator[Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            payload = self._read(remaining)
            if payload is not None:
                yield payload

    def close(self) -> None:
        self._pubsub.close()

    def _read(self, timeout: float | None) -> Any:
        # get_message() waits for ever on None.
        reply = self._pubsub.get_message(timeout=1.0 if timeout is None else timeout)
        if self._lost:
            raise redis.ConnectionError("the subscription was lost and made again")
        if reply is None or reply["type"] != "message":
            return None
        payload = reply["data"]
        if len(payload) > self.max_payload:
            logger.warning("Refusing a pushed payload of %d bytes: too large.", len(payload))
            return None
        return payload

    def _reconnected(self, connection: Any) -> None:
        self._lost = True
