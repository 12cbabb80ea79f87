"""The PostgreSQL event backend, on psycopg 3: the backend (:mod:`.backend`),
built from its tables (:mod:`.schema`), its outcome records
(:mod:`.outcomes`) and a listing's answers (:mod:`.answers`); its
statements (``sql/``), its connections (:mod:`.connections`) and a
worker's subscription (:mod:`.subscription`)."""

from .backend import PostgresBackend
from .subscription import PostgresSubscription

__all__ = ["PostgresBackend", "PostgresSubscription"]
