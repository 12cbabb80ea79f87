"""The PostgreSQL event backend: abort events kept in tables until they
expire, and pushed to workers with LISTEN/NOTIFY."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from ...backend import Event, EventBackend, MessageRecords, TimedEvent
from ...checks import check_milliseconds, check_postgres_url
from ...mode import AbortMode
from ...wire import event_key, is_inquiry
from ..files import shipped_text
from ..pushed import encode_batch, encode_params
from .answers import Answers
from .connections import Connect, Listener, Pool
from .outcomes import Outcomes
from .schema import DEFAULT_NAMESPACE, Schema, check_namespace, fetch
from .subscription import Deliveries, PostgresSubscription

__all__ = [
    "CHUNK_SIZE",
    "CONNECT_TIMEOUT",
    "FRAGMENT_SIZE",
    "POOL_SIZE",
    "POOL_TIMEOUT",
    "PostgresBackend",
]

#: Most connections of the pool that the callers' threads share, and how
#: long a thread waits for one of them, in seconds.
POOL_SIZE = 10
POOL_TIMEOUT = 20
#: Seconds ``from_url``'s connections wait for the server, unless the URL
#: says otherwise.
CONNECT_TIMEOUT = 10
#: Characters of a batch's JSON carried by one notification: PostgreSQL
#: refuses a payload of 8000 bytes or more, and the JSON is ASCII, so a
#: character is a byte. A larger batch is sent in fragments, all notified
#: in one transaction, that a subscription puts together again.
FRAGMENT_SIZE = 7900
#: Most events pushed as one batch: a larger notify pushes several, in
#: the same transaction.
CHUNK_SIZE = 1000

#: The name under which it logs since 2.0, its subscriptions too: the
#: package's rather than this module's.
logger = logging.getLogger("dramatiq_abort.backends.postgres")

# The statements, each in a file of its own, which says what it does atop
# it; their placeholders (``{events}``...) stand for the namespace's tables.
_NOTIFY = shipped_text(__package__, "sql/notify.sql")
_PUSH = shipped_text(__package__, "sql/push.sql")
_RECORD_STATE = shipped_text(__package__, "sql/record_state.sql")
_RECORDS = shipped_text(__package__, "sql/records.sql")


def _check_url_options(url: str) -> dict[str, Any]:
    """The options libpq reads in ``url``; its error repeats the URL's
    faulty part, which may be the password, so it is shown only when the
    URL holds none."""
    try:
        return conninfo_to_dict(url)
    except psycopg.ProgrammingError as e:
        parts = urlsplit(url)
        # A query string may hold the password too (?password=...).
        hidden = parts.password is not None or "password" in parts.query.lower()
        detail = "it may hold a password, so libpq's error is not shown" if hidden else str(e)
        raise ValueError(f"the PostgreSQL URL cannot be read ({detail})") from None


class PostgresBackend(EventBackend):
    """An event backend for PostgreSQL 9.6 or later, on psycopg 3.

    Four tables hold what is recorded, each named after ``namespace``:
    ``<namespace>_events`` (abort requests and rules, until they expire),
    ``_outcomes``, ``_states`` and ``_answers``. They are created by the
    first write or subscription, under an advisory lock, so that processes
    that start together do not race; a read never creates them, and reads
    nothing while they do not exist. Every row expires by the server's clock.
    A listing writes no row: its inquiry is notified, not recorded, and
    the workers' answers are left to expire.
    Workers listen on the channel ``<namespace>_events``, one connection
    per process, named ``dramatiq-abort:<namespace>`` for
    :meth:`subscribers`; they issue no statement while nothing is aborted.

    :param connect: What makes a connection: a callable with no argument
        that returns a ``psycopg.Connection``. Each connection is then put
        in autocommit mode. Defaults to ``psycopg.connect()``, which reads
        libpq's environment variables (``PGHOST``, ``PGDATABASE``...).
        For a URL, use :meth:`from_url`.
    :param namespace: What the tables and channels are named after.
        Applications that share a database but not their messages use
        different namespaces.
    :param pool_size: Most connections that the threads of one process
        use at once, besides each process's subscription; a thread waits
        up to ``POOL_TIMEOUT`` seconds for a free one.
    """

    pushes = True
    records_outcomes = True
    records_reasons = True
    stores_states = True
    carries_answers = True

    def __init__(
        self,
        *,
        connect: Connect | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        pool_size: int = POOL_SIZE,
    ) -> None:
        self._namespace = check_namespace(namespace)
        if connect is not None and not callable(connect):
            hint = (
                ": for a URL, use PostgresBackend.from_url(url)" if isinstance(connect, str) else ""
            )
            raise TypeError(
                f"connect must be a callable that returns a psycopg.Connection,"
                f" not {type(connect).__name__}{hint}"
            )
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size <= 0:
            raise ValueError(
                f"pool_size must be a positive number of connections, not {pool_size!r}"
            )
        self.connect: Connect = connect if connect is not None else psycopg.connect
        self.pool = Pool(self.connect, pool_size, POOL_TIMEOUT)
        #: The namespace's tables, and the statements on them.
        self.schema = Schema(self.pool, namespace)
        #: The channel every batch of events is notified on.
        self.channel = f"{namespace}_events"
        #: The channel on which a recorded outcome names its message.
        self.outcomes_channel = f"{namespace}_outcomes"
        #: The channel on which an answer names its reply address.
        self.answers_channel = f"{namespace}_answers"
        #: What ``pg_stat_activity`` shows of a subscription's connection.
        self.application_name = f"dramatiq-abort:{namespace}"
        #: What is recorded of each message's end, and what answers a listing.
        self.outcomes = Outcomes(self.schema, self.connect, self.outcomes_channel)
        self.answers = Answers(self.schema, self.connect, self.answers_channel)
        #: The subscriptions open in this process, which ``notify`` waits for.
        self.deliveries = Deliveries()

    @property
    def namespace(self) -> str:
        """What the tables and channels are named after; given to the
        constructor only: they are built from it once."""
        return self._namespace

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> PostgresBackend:
        """Build the backend on connections to ``url``
        (``postgresql://[user[:password]@]host[:port]/database``, with
        libpq's options in the query string, such as ``?sslmode=require``).
        Extra arguments go to the constructor. The URL is checked before
        anything connects; its errors never repeat its password.
        """
        url = check_postgres_url(url)
        options = _check_url_options(url)
        # The URL's own connect_timeout, if it has one, wins.
        timeout = options.get("connect_timeout", CONNECT_TIMEOUT)

        # A function rather than a partial, whose repr would show the URL.
        def connect() -> psycopg.Connection[Any]:
            return psycopg.connect(url, connect_timeout=timeout)

        return cls(connect=connect, **kwargs)

    def close(self) -> None:
        """Close the pool's idle connections. Subscriptions are closed by
        their owners."""
        self.pool.close()

    def drop(self) -> None:
        """Drop the namespace's tables, and what they hold."""
        self.schema.drop()

    def _listener(
        self, channel: str, application_name: str | None = None, *, create: bool = False
    ) -> Listener:
        """A connection of its own listening on ``channel``; with ``create``,
        once the tables exist."""
        if create and not self.schema.ready:
            with self.schema.connection():
                pass
        return Listener(self.connect, [channel], application_name)

    def notify(self, events: Iterable[Event], ttl: int) -> None:
        """Record and notify ``events``; inquiries are notified only, so
        that a listing writes no row. PostgreSQL hands a notification to
        the listening connections a moment after the commit; so that the
        messages running in this process see the events once this returns
        (as they would with Redis), it waits a moment at most (see
        :class:`~.subscription.Deliveries`) until they reached each
        subscription of this process.
        Other processes receive them within the server's delivery time."""
        ttl = check_milliseconds("ttl", ttl, positive=True)
        events = list(events)
        if not events:
            return
        encoded = encode_params(events)
        # One row per key, the last one given, as a later notify replaces it.
        rows = {
            key: encoded[id(params)] for key, params in events if not is_inquiry(Event(key, params))
        }
        fragments: list[str] = []
        for start in range(0, len(events), CHUNK_SIZE):
            batch = encode_batch(events[start : start + CHUNK_SIZE], ttl, encoded)
            pieces = [batch[i : i + FRAGMENT_SIZE] for i in range(0, len(batch), FRAGMENT_SIZE)]
            name = uuid.uuid4().hex
            fragments += [f"{name} {i} {len(pieces)} {piece}" for i, piece in enumerate(pieces)]
        if not rows:
            # An inquiry: a worker that subscribes while the asker waits
            # misses it, and the listing says that one process did not answer.
            with self.pool.connection() as connection:
                connection.execute(_PUSH, {"channel": self.channel, "fragments": fragments})
        else:
            with self.schema.connection() as connection:
                connection.execute(
                    self.schema.sql(_NOTIFY),
                    {
                        "ttl": ttl,
                        "keys": list(rows),
                        "params": list(rows.values()),
                        "channel": self.channel,
                        "fragments": fragments,
                    },
                )
                self.schema.clean_up(connection, "events")
        # Those of one transaction arrive in order: the last batch comes last.
        self.deliveries.wait(name)

    def poll(self, key: str) -> Event | None:
        with self.pool.connection() as connection:
            return self._read_event(connection, [key])

    def _read_event(self, connection: psycopg.Connection[Any], keys: list[str]) -> Event | None:
        """The first valid event among ``keys``, if any."""
        for key, params in fetch(
            connection,
            self.schema.sql(
                "SELECT key, params FROM {events}"
                " WHERE key = ANY(%s::text[]) AND expires_at > now()"
            ),
            [keys],
        ):
            event = self._decode_event(key, params)
            if event is not None:
                return event
        return None

    def wait_many(self, keys: Iterable[str], timeout: int) -> Event | None:
        wanted = list(keys)
        deadline = time.monotonic() + timeout / 1000
        with self._listener(self.channel) as listener:
            # Listening first, so an event notified while looking is pushed.
            while True:
                event = self._read_event(listener.connection, wanted)
                if event is not None:
                    return event
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                listener.wait(left)

    def record_outcome(
        self, message_id: str, outcome: str, ttl: int, *, reason: str | None = None
    ) -> None:
        self.outcomes.record(message_id, outcome, ttl, reason)

    def outcome_reason(self, message_id: str) -> str | None:
        return self.outcomes.reason(message_id)

    def wait_outcome(self, message_id: str, timeout: float | None) -> str | None:
        return self.outcomes.wait(message_id, timeout)

    def record_state(self, message_id: str, state: str, ttl: int) -> None:
        ttl = check_milliseconds("ttl", ttl, positive=True)
        with self.schema.connection() as connection:
            connection.execute(
                self.schema.sql(_RECORD_STATE),
                {"message_id": message_id, "state": state, "ttl": ttl},
            )
            self.schema.clean_up(connection, "states")

    def records(self, message_id: str) -> MessageRecords:
        abort_key = event_key(message_id, AbortMode.ABORT)
        cancel_key = event_key(message_id, AbortMode.CANCEL)
        with self.pool.connection() as connection:
            rows = fetch(
                connection,
                self.schema.sql(_RECORDS),
                {"abort": abort_key, "cancel": cancel_key, "message_id": message_id},
            )
        abort, cancel, outcome, state = rows[0] if rows else (None, None, None, None)
        return MessageRecords(
            None if abort is None else self._decode_event(abort_key, abort),
            None if cancel is None else self._decode_event(cancel_key, cancel),
            outcome,
            state,
        )

    def forget(self, message_id: str) -> None:
        with self.schema.connection() as connection, connection.transaction():
            connection.execute(
                self.schema.sql("DELETE FROM {outcomes} WHERE message_id = %s"), [message_id]
            )
            connection.execute(
                self.schema.sql("DELETE FROM {states} WHERE message_id = %s"), [message_id]
            )

    def answer(self, reply_to: str, payload: str, ttl: int) -> None:
        self.answers.answer(reply_to, payload, ttl)

    def collect_answers(self, reply_to: str, expected: int | None, timeout: float) -> list[str]:
        """The answers handed to ``reply_to``, read and left to expire, so
        that a listing writes no row: they live no longer than its wait."""
        return self.answers.collect(reply_to, expected, timeout)

    def subscribers(self) -> int | None:
        """How many connections of this database bear the name of this
        namespace's subscriptions (``pg_stat_activity``); ``None`` when
        the server cannot be asked."""
        try:
            with self.pool.connection() as connection:
                row = connection.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name = %s",
                    [self.application_name],
                ).fetchone()
        except psycopg.Error:
            return None
        return None if row is None else int(row[0])

    def subscribe(self) -> PostgresSubscription:
        return PostgresSubscription(self)

    def recorded(self) -> list[TimedEvent]:
        """Every event still valid, with the milliseconds it has left."""
        with self.pool.connection() as connection:
            rows = fetch(
                connection,
                self.schema.sql(
                    "SELECT key, params, ttl,"
                    " ceil(extract(epoch FROM expires_at - now()) * 1000)::bigint"
                    " FROM {events} WHERE expires_at > now()"
                ),
            )
        events = []
        for key, params, ttl, left in rows:
            event = self._decode_event(key, params)
            if event is not None:
                events.append(TimedEvent(event, max(1, int(left)), int(ttl)))
        return events

    def _decode_event(self, key: str, params: str) -> Event | None:
        try:
            decoded = json.loads(params)
            if not isinstance(decoded, dict):
                raise ValueError("the parameters are not an object")
        except ValueError as e:
            logger.warning("Skipping malformed abort record %r (%s): %.200r", key, e, params)
            return None
        return Event(key, decoded)
