"""What the PostgreSQL backend records of each message's end: its outcome
and the reason of the request that reached it, and the waits for them."""

from __future__ import annotations

import time
from typing import Any

import psycopg

from ...checks import check_milliseconds
from ..files import shipped_text
from .connections import Connect, Listener
from .schema import Schema, fetch

__all__ = ["Outcomes"]

_RECORD_OUTCOME = shipped_text(__package__, "sql/record_outcome.sql")
_READ_OUTCOME = "SELECT outcome FROM {outcomes} WHERE message_id = %s AND expires_at > now()"
_READ_REASON = "SELECT reason FROM {outcomes} WHERE message_id = %s AND expires_at > now()"


class Outcomes:
    """The ``<namespace>_outcomes`` table of ``schema``: each recorded
    outcome is named on ``channel``, where a wait listens with a connection
    that ``connect`` makes."""

    def __init__(self, schema: Schema, connect: Connect, channel: str) -> None:
        self.schema = schema
        self.connect = connect
        self.channel = channel

    def record(self, message_id: str, outcome: str, ttl: int, reason: str | None) -> None:
        """See :meth:`~dramatiq_abort.backend.EventBackend.record_outcome`."""
        ttl = check_milliseconds("ttl", ttl, positive=True)
        with self.schema.connection() as connection:
            connection.execute(
                self.schema.sql(_RECORD_OUTCOME),
                {
                    "message_id": message_id,
                    "outcome": outcome,
                    "reason": reason,
                    "ttl": ttl,
                    "channel": self.channel,
                },
            )
            self.schema.clean_up(connection, "outcomes")

    def reason(self, message_id: str) -> str | None:
        """See :meth:`~dramatiq_abort.backend.EventBackend.outcome_reason`."""
        with self.schema.pool.connection() as connection:
            rows = fetch(connection, self.schema.sql(_READ_REASON), [message_id])
        return rows[0][0] if rows else None

    def wait(self, message_id: str, timeout: float | None) -> str | None:
        """See :meth:`~dramatiq_abort.backend.EventBackend.wait_outcome`."""
        if timeout is not None and timeout <= 0:
            with self.schema.pool.connection() as connection:
                return self._read(connection, message_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        with Listener(self.connect, [self.channel]) as listener:
            # Listening first, so an outcome recorded while looking is notified.
            while True:
                outcome = self._read(listener.connection, message_id)
                if outcome is not None:
                    return outcome
                while True:
                    left = 1.0 if deadline is None else deadline - time.monotonic()
                    if left <= 0:
                        return None
                    if any(payload == message_id for _, payload in listener.wait(left)):
                        break

    def _read(self, connection: psycopg.Connection[Any], message_id: str) -> str | None:
        rows = fetch(connection, self.schema.sql(_READ_OUTCOME), [message_id])
        return str(rows[0][0]) if rows else None
