"""The PostgreSQL backend's tables: their names for a namespace, the
statements filled in with them, their creation, their removal, and the
clean-up of their expired rows."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

from ..files import shipped_text
from .connections import Pool

__all__ = [
    "CLEAN_UP_INTERVAL",
    "DEFAULT_NAMESPACE",
    "NAMESPACE",
    "TABLES",
    "Schema",
    "check_namespace",
    "fetch",
]

#: The namespace of a backend built without one.
DEFAULT_NAMESPACE = "dramatiq_aborts"
#: A namespace: a lower-case SQL name, short enough that the longest name
#: made from it (``<namespace>_outcomes_expiry``) fits PostgreSQL's 63 bytes.
NAMESPACE = re.compile(r"[a-z_][a-z0-9_]{0,39}")
#: Seconds between two clean-ups of a table's expired rows by one process.
CLEAN_UP_INTERVAL = 10.0
#: The tables, by their role: what each is named after, behind the namespace.
TABLES = ("events", "outcomes", "states", "answers")

#: The backend's logger, under the name it has had since 2.0.
logger = logging.getLogger("dramatiq_abort.backends.postgres")

_SCHEMA = shipped_text(__package__, "sql/schema.sql")
_CLEAN_UP = shipped_text(__package__, "sql/clean_up.sql")


def check_namespace(namespace: object) -> str:
    """Return ``namespace`` when it can name a backend's tables, else raise."""
    if not isinstance(namespace, str) or not NAMESPACE.fullmatch(namespace):
        raise ValueError(
            f"namespace must be a lower-case SQL name of at most 40 characters"
            f" (letters a-z, digits and _, not starting with a digit), such as"
            f" {DEFAULT_NAMESPACE!r}, not {namespace!r:.100}"
        )
    return namespace


def fetch(
    connection: psycopg.Connection[Any], statement: sql.Composed, params: Any = None
) -> list[tuple[Any, ...]]:
    """The rows ``statement`` reads; none while the tables do not exist
    (no worker has booted, nothing was sent): a read leaves the schema as
    it is, for a role that may only read, and for a mistyped namespace."""
    try:
        return connection.execute(statement, params).fetchall()
    except psycopg.errors.UndefinedTable:
        return []


class Schema:
    """The four tables of ``namespace`` (``<namespace>_events``, ``_outcomes``,
    ``_states``, ``_answers``), reached through ``pool``. They are created
    by the first write, under an advisory lock, so that processes that
    start together do not race; a read never creates them."""

    def __init__(self, pool: Pool, namespace: str) -> None:
        self.pool = pool
        #: What the tables are named after: a name :func:`check_namespace` took.
        self.namespace = namespace
        #: Each table, by its role.
        self.tables = {name: sql.Identifier(f"{namespace}_{name}") for name in TABLES}
        #: Every table and index name, for the statements' placeholders.
        self._names = {
            **self.tables,
            **{f"{name}_expiry": sql.Identifier(f"{namespace}_{name}_expiry") for name in TABLES},
            "answers_reply_to": sql.Identifier(f"{namespace}_answers_reply_to"),
        }
        #: Each statement, its names filled in, by its template.
        self._statements: dict[str, sql.Composed] = {}
        self._clean_ups = {
            name: sql.SQL(_CLEAN_UP).format(table=table) for name, table in self.tables.items()
        }
        self._lock_key = f"dramatiq-abort:{namespace}"
        #: Whether the tables are known to exist.
        self.ready = False
        self._lock = threading.Lock()
        self._cleaned_at: dict[str, float] = {}

    def sql(self, template: str) -> sql.Composed:
        """``template`` with its placeholders (``{events}``...) filled in
        with this namespace's names; composed once."""
        statement = self._statements.get(template)
        if statement is None:
            statement = self._statements[template] = sql.SQL(template).format(**self._names)
        return statement

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection, once the tables exist: for a write."""
        with self.pool.connection() as connection:
            self._create(connection)
            yield connection

    def drop(self) -> None:
        """Drop the tables, and what they hold."""
        with self.pool.connection() as connection, connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [self._lock_key])
            connection.execute(
                sql.SQL("DROP TABLE IF EXISTS {}").format(sql.SQL(", ").join(self.tables.values()))
            )
        self.ready = False

    def _create(self, connection: psycopg.Connection[Any]) -> None:
        if self.ready:
            return
        with self._lock:
            if self.ready:
                return
            # Looked up first: CREATE ... IF NOT EXISTS needs the right to
            # create, which a user of tables made by another may not have.
            missing = connection.execute(
                "SELECT count(*) FROM unnest(%s::text[]) AS t(name)"
                " WHERE to_regclass(name) IS NULL",
                [[f"{self.namespace}_{name}" for name in self.tables]],
            ).fetchone()
            if missing is not None and missing[0]:
                with connection.transaction():
                    # Processes that start together wait for each other here
                    # instead of failing on each other's CREATE.
                    connection.execute(
                        "SELECT pg_advisory_xact_lock(hashtext(%s))", [self._lock_key]
                    )
                    connection.execute(self.sql(_SCHEMA))
            self.ready = True

    def clean_up(self, connection: psycopg.Connection[Any], table: str) -> None:
        """Delete the expired rows of ``table`` if this process has not
        lately. Called once the write is committed: a failure is logged,
        not raised, since what the caller asked for is done."""
        now = time.monotonic()
        if now - self._cleaned_at.get(table, -CLEAN_UP_INTERVAL) < CLEAN_UP_INTERVAL:
            return
        self._cleaned_at[table] = now
        try:
            connection.execute(self._clean_ups[table])
        except psycopg.Error as e:
            logger.warning(
                "Could not delete the expired rows of %s (%s: %s); trying again in %d s.",
                f"{self.namespace}_{table}",
                type(e).__name__,
                e,
                CLEAN_UP_INTERVAL,
            )
            logger.debug("The clean-up failed with:", exc_info=e)
