"""SQLAlchemy engines for stores, with each dialect's settings in one place.

SQLite: every connection gets :data:`~typedstore.defaults.SQLITE_PRAGMAS` (WAL,
synchronous=NORMAL) and a busy timeout, and the ``sqlite3`` module's own
transaction handling is switched off (``isolation_level=None``) so typedstore
decides where transactions begin. SQLAlchemy-level transactions start with a
plain ``BEGIN``; a connection run with the execution option
``sqlite_immediate=True`` starts with ``BEGIN IMMEDIATE`` instead, taking the
write lock up front: a deferred transaction that reads and then writes fails
at once with "database is locked" when another writer is active, because
SQLite cannot wait for the lock without risking a deadlock (see "BEGIN
IMMEDIATE" in https://www.sqlite.org/lang_transaction.html). An in-memory
database (``sqlite://``) lives in one connection shared by the whole store
(StaticPool), since each new connection would see an empty database.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.pool import StaticPool

from .defaults import SQLITE_BUSY_TIMEOUT, SQLITE_PRAGMAS


def _pragma(cursor: Any, name: str, value: str) -> None:
    """Apply one pragma. Switching a new database to WAL needs an exclusive lock, and
    SQLite may refuse it at once ("database is locked") instead of waiting while
    other processes open the same new file; WAL is persistent, so it is set only
    when not in effect yet, retrying briefly."""
    if name == "journal_mode":
        current = cursor.execute("PRAGMA journal_mode").fetchone()[0]
        if str(current).lower() == value.lower():
            return
        for attempt in range(50):
            try:
                cursor.execute(f"PRAGMA {name}={value}")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.05)
    cursor.execute(f"PRAGMA {name}={value}")


def is_sqlite(engine: sa.Engine) -> bool:
    return engine.dialect.name == "sqlite"


def create_store_engine(url: str | sa.URL, **options: Any) -> sa.Engine:
    """Create the engine of a store for a SQLAlchemy URL (no ``#table=`` fragment)."""
    sa_url = sa.make_url(url)
    if sa_url.get_backend_name() != "sqlite":
        options.setdefault("pool_pre_ping", True)
        # Positional parameters: the drivers take a tuple per row with less
        # work than a mapping (psycopg reorders a dict on every execute).
        options.setdefault("paramstyle", "format")
        return sa.create_engine(sa_url, **options)
    connect_args = dict(options.pop("connect_args", {}))
    connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT)
    connect_args.setdefault("check_same_thread", False)
    if sa_url.database in (None, "", ":memory:"):
        options.setdefault("poolclass", StaticPool)
    engine = sa.create_engine(sa_url, connect_args=connect_args, **options)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for name, value in SQLITE_PRAGMAS.items():
            _pragma(cursor, name, value)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        immediate = connection.get_execution_options().get("sqlite_immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
