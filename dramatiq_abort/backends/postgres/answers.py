"""How the PostgreSQL backend carries the workers' answers to a listing's
inquiry back to the process that asked."""

from __future__ import annotations

import time

from ...checks import check_milliseconds
from ..files import shipped_text
from .connections import Connect, Listener
from .schema import Schema, fetch

__all__ = ["Answers"]

_ANSWER = shipped_text(__package__, "sql/answer.sql")
#: The answers to one reply address that were not read yet, oldest first.
_UNREAD = (
    "SELECT id, payload FROM {answers} WHERE reply_to = %s"
    " AND NOT id = ANY(%s::bigint[]) AND expires_at > now() ORDER BY id"
)


class Answers:
    """The ``<namespace>_answers`` table of ``schema``: each answer is named
    on ``channel`` by its reply address, where a collector listens with a
    connection that ``connect`` makes."""

    def __init__(self, schema: Schema, connect: Connect, channel: str) -> None:
        self.schema = schema
        self.connect = connect
        self.channel = channel

    def answer(self, reply_to: str, payload: str, ttl: int) -> None:
        """See :meth:`~dramatiq_abort.backend.EventBackend.answer`."""
        ttl = check_milliseconds("ttl", ttl, positive=True)
        with self.schema.connection() as connection:
            connection.execute(
                self.schema.sql(_ANSWER),
                {"reply_to": reply_to, "payload": payload, "ttl": ttl, "channel": self.channel},
            )
            self.schema.clean_up(connection, "answers")

    def collect(self, reply_to: str, expected: int | None, timeout: float) -> list[str]:
        """The answers handed to ``reply_to``, read and left to expire, so
        that a listing writes no row: they live no longer than its wait."""
        answers: list[str] = []
        # The ids read: one written earlier may commit later, so no bound on ids would do.
        read: list[int] = []
        deadline = time.monotonic() + timeout
        unread = self.schema.sql(_UNREAD)
        with Listener(self.connect, [self.channel]) as listener:
            # Listening first, so an answer handed while looking is notified.
            while expected is None or len(answers) < expected:
                for answer_id, payload in fetch(listener.connection, unread, [reply_to, read]):
                    read.append(answer_id)
                    answers.append(payload)
                if expected is not None and len(answers) >= expected:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                listener.wait(left)
        return answers
