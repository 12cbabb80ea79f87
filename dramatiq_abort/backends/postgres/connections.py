"""Connections to PostgreSQL: a pool shared by the callers' threads, and
connections of their own that listen for notifications.

Every connection is in autocommit mode: a statement is a transaction,
unless a caller opens one with ``connection.transaction()``.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import psycopg
from psycopg import pq, sql

from ... import nogil
from ..sockets import keep_alive

__all__ = ["Connect", "Listener", "Pool", "PoolTimeout", "open_connection"]

#: What makes a new connection: a callable with no argument that returns
#: an open ``psycopg.Connection``.
Connect = Callable[[], "psycopg.Connection[Any]"]


class PoolTimeout(psycopg.OperationalError):
    """No pooled connection came free in time."""


def open_connection(
    connect: Connect, application_name: str | None = None
) -> psycopg.Connection[Any]:
    """A new connection made by ``connect``, in autocommit mode, probed by
    TCP keepalive, and named ``application_name`` if given (what
    ``pg_stat_activity`` shows of it)."""
    connection = connect()
    if not isinstance(connection, psycopg.Connection):
        raise TypeError(f"connect must return a psycopg.Connection, not {connection!r:.100}")
    try:
        connection.autocommit = True
        if application_name is not None:
            connection.execute(
                "SELECT set_config('application_name', %s, false)", [application_name]
            )
        # A dup of the descriptor: its options are the socket's own.
        with socket.socket(fileno=os.dup(connection.fileno())) as sock:
            keep_alive(sock)
    except BaseException:
        connection.close()
        raise
    return connection


class Pool:
    """Connections shared by the callers' threads: opened when needed, at
    most ``size`` at once; a thread waits up to ``timeout`` seconds for a
    free one. A connection found broken, or that the server has written
    to while it sat idle (it was terminated, or the server stopped), is
    dropped rather than handed out, so a lost server costs one failed call
    at most and the next call connects again."""

    def __init__(self, connect: Connect, size: int, timeout: float) -> None:
        self.connect = connect
        self.size = size
        self.timeout = timeout
        self._start_afresh()
        # Weakly: a pool must not live for ever for its callback's sake.
        pool = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _start_afresh(pool()))

    def _start_afresh(self) -> None:
        """No connection and every slot free. Also in a forked child: the
        parent's connections are the parent's, not used and not closed
        either, which would end them for the parent; and the slots and
        the lock its other threads held are not held here."""
        self._slots = threading.BoundedSemaphore(self.size)
        self._lock = threading.Lock()
        self._idle: list[psycopg.Connection[Any]] = []

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection for the duration of the block."""
        # The slot is given back to the semaphore it was taken from.
        slots = self._slots
        if not slots.acquire(timeout=self.timeout):
            raise PoolTimeout(
                f"no connection to PostgreSQL came free within {self.timeout} s:"
                f" all {self.size} of the pool are in use"
            )
        try:
            connection = self._take()
            try:
                yield connection
            finally:
                self._give_back(connection)
        finally:
            slots.release()

    def close(self) -> None:
        """Close the idle connections. The pool stays usable: a later call
        opens a connection again."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _take(self) -> psycopg.Connection[Any]:
        with self._lock:
            while self._idle:
                connection = self._idle.pop()
                if _healthy(connection):
                    return connection
                connection.close()
        return open_connection(self.connect)

    def _give_back(self, connection: psycopg.Connection[Any]) -> None:
        if connection.broken or connection.closed or not _healthy(connection):
            connection.close()
            return
        with self._lock:
            self._idle.append(connection)


def _start_afresh(pool: Pool | None) -> None:
    if pool is not None:
        pool._start_afresh()


def _healthy(connection: psycopg.Connection[Any]) -> bool:
    """Whether an idle connection can be handed out: open, out of any
    transaction, and with nothing sent to it since its last reply."""
    if connection.closed or connection.pgconn.status != pq.ConnStatus.OK:
        return False
    if connection.info.transaction_status != pq.TransactionStatus.IDLE:
        return False
    return not select.select([connection.fileno()], [], [], 0)[0]


class Listener:
    """A connection of its own that listens on ``channels``, read by one
    thread. Statements may run on it too: notifications that come
    meanwhile are kept for :meth:`ready`. Once lost it stays lost."""

    def __init__(
        self, connect: Connect, channels: Iterable[str], application_name: str | None = None
    ) -> None:
        self.connection = open_connection(connect, application_name)
        #: Notifications read while a statement ran on the connection.
        self._pending: deque[tuple[str, str]] = deque()
        self.connection.add_notify_handler(
            lambda notify: self._pending.append((notify.channel, notify.payload))
        )
        try:
            for channel in channels:
                self.connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            self._probe = nogil.ReadinessProbe(self.connection.fileno())
        except BaseException:
            self.connection.close()
            raise

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def fileno(self) -> int:
        """The connection's descriptor: readable while notifications wait."""
        return self.connection.fileno()

    def ready(self) -> list[tuple[str, str]]:
        """The (channel, payload) of every notification received so far;
        never blocks. Raises ``psycopg.OperationalError`` once the
        connection is lost."""
        pgconn = self.connection.pgconn
        encoding = self.connection.info.encoding
        # Everything the socket holds is read, so that it is readable
        # again only when more comes.
        while True:
            pgconn.consume_input()
            while (notify := pgconn.notifies()) is not None:
                self._pending.append(
                    (notify.relname.decode(encoding), notify.extra.decode(encoding))
                )
            if pgconn.status != pq.ConnStatus.OK:
                raise psycopg.OperationalError("the connection to PostgreSQL was lost")
            if not self._probe():
                break
        ready = list(self._pending)
        self._pending.clear()
        return ready

    def wait(self, timeout: float) -> list[tuple[str, str]]:
        """The notifications that come within ``timeout`` seconds: those
        received already, or else the first that come."""
        if not self._pending:
            select.select([self.fileno()], [], [], max(0.0, timeout))
        return self.ready()

    def close(self) -> None:
        """Drop the connection. Safe to call more than once."""
        self.connection.close()
