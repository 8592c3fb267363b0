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

Timeouts (:class:`~typedstore.connections.Timeouts`) are set on every new
connection, where each database keeps them: SQLite's busy timeout (the lock
timeout); PostgreSQL's ``connect_timeout`` and, through the startup
``options``, ``lock_timeout`` and ``statement_timeout`` (no round trip);
PyMySQL's ``connect_timeout``, its ``read_timeout`` (the connect timeout while
the handshake runs, the read timeout afterwards) and ``write_timeout``, and the
session's ``innodb_lock_wait_timeout``, ``lock_wait_timeout`` and
``max_statement_time`` (MariaDB) or ``max_execution_time`` (MySQL), set in one
statement when the connection opens. Values in ``connect_args`` given by the
caller, and a ``connect_timeout`` or ``read_timeout`` in the URL, win.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.pool import QueuePool, StaticPool

from .connections import CONNECTING, Timeouts
from .deadlines import postgresql_connection_class
from .defaults import SQLITE_PRAGMAS
from .errors import StoreError, UrlError
from .urls import redact


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


#: The driver each server backend runs on, and the extra of typedstore that installs it.
DRIVER_EXTRAS = {"postgresql": ("psycopg", "postgres"), "mysql": ("pymysql", "mysql"),
                 "mariadb": ("pymysql", "mysql")}


def _require_driver(backend: str) -> None:
    """Raise :class:`StoreError` naming the extra to install when the driver of
    ``backend`` is not installed (instead of SQLAlchemy's bare ModuleNotFoundError)."""
    if backend not in DRIVER_EXTRAS:
        return
    module, extra = DRIVER_EXTRAS[backend]
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise StoreError(
            f"{backend} stores need the {module} driver, which is not installed here "
            f"({exc}): pip install 'typedstore[{extra}]'") from exc


def create_store_engine(url: str | sa.URL, timeouts: Timeouts | None = None,
                        **options: Any) -> sa.Engine:
    """Create the engine of a store for a SQLAlchemy URL (no ``#table=`` fragment).

    ``timeouts``: the store's timeouts (default: :meth:`Timeouts.resolve`
    of the defaults); ``options``: more ``sqlalchemy.create_engine`` arguments.
    """
    sa_url = sa.make_url(url)
    timeouts = timeouts or Timeouts.resolve()
    backend = sa_url.get_backend_name()
    _require_driver(backend)
    if backend == "postgresql":
        options["connect_args"] = _postgresql_args(sa_url, timeouts,
                                                   dict(options.get("connect_args", {})))
    elif backend in ("mysql", "mariadb"):
        options["connect_args"] = connect_args = dict(options.get("connect_args", {}))
        read_later = _mysql_args(sa_url, timeouts, connect_args)
    if options.get("poolclass") in (None, QueuePool) and not (
            backend == "sqlite" and sa_url.database in (None, "", ":memory:")):
        # Waiting for a pooled connection is a wait like a lock's (LockTimeout).
        options.setdefault("pool_timeout", timeouts.lock)
    if backend != "sqlite":
        options.setdefault("pool_pre_ping", True)
        # Positional parameters: the drivers take a tuple per row with less
        # work than a mapping (psycopg reorders a dict on every execute).
        options.setdefault("paramstyle", "format")
        engine = sa.create_engine(sa_url, **options)
        _mark_connect_errors(engine, _postgresql_connect(timeouts)
                             if backend == "postgresql" else None)
        if backend in ("mysql", "mariadb"):
            _mysql_session(engine, timeouts, read_later)
        return engine
    connect_args = dict(options.pop("connect_args", {}))
    connect_args.setdefault("timeout", timeouts.lock)
    connect_args.setdefault("check_same_thread", False)
    if sa_url.database in (None, "", ":memory:"):
        options.setdefault("poolclass", StaticPool)
    engine = sa.create_engine(sa_url, connect_args=connect_args, **options)
    _mark_connect_errors(engine)

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


def _mark_connect_errors(engine: sa.Engine,
                         connect: Callable[..., Any] | None = None) -> None:
    """Mark the driver's exceptions raised while a connection is being made,
    so that a connection refused or timed out is told from one lost later
    (SQLAlchemy wraps both alike, and a lost handshake and a lost query give
    the same MySQL error number). ``connect``: makes the driver connection
    (default: the dialect's)."""

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        try:
            if connect is not None:
                return connect(*cargs, **cparams)
            return dialect.connect(*cargs, **cparams)
        except TypeError as exc:  # a URL parameter the driver does not take
            url = redact(engine.url.render_as_string(hide_password=False))
            raise UrlError(f"{url}: the database driver refused the URL's parameters: "
                           f"{exc}") from exc
        except Exception as exc:
            with contextlib.suppress(AttributeError):  # a type without attributes
                setattr(exc, CONNECTING, True)
            raise


def _postgresql_connect(timeouts: Timeouts) -> Callable[..., Any]:
    """Make psycopg connections whose every wait for the server ends after the
    read timeout (:mod:`typedstore.deadlines`: psycopg itself waits without
    limit for a server that stopped answering)."""
    cls = postgresql_connection_class()

    def connect(*cargs: Any, **cparams: Any) -> Any:
        connection = cls.connect(*cargs, **cparams)
        connection.typedstore_read_timeout = timeouts.read
        return connection

    return connect


def _postgresql_args(url: sa.URL, timeouts: Timeouts, args: dict[str, Any]) -> dict[str, Any]:
    """psycopg's connect arguments: ``connect_timeout`` (whole seconds, at least
    2: libpq's rule) and the lock and statement timeouts as startup options,
    before the URL's or the caller's own ``options`` (later ones win)."""
    if "connect_timeout" not in url.query:
        args.setdefault("connect_timeout", max(2, math.ceil(timeouts.connect)))
    settings = [f"-c lock_timeout={_ms(timeouts.lock)}"]
    if timeouts.statement:
        settings.append(f"-c statement_timeout={_ms(timeouts.statement)}")
    given = args.get("options", url.query.get("options", ""))
    if not isinstance(given, str):  # the URL repeated it
        given = " ".join(given)
    args["options"] = " ".join([*settings, given]).strip()
    return args


def _mysql_args(url: sa.URL, timeouts: Timeouts, args: dict[str, Any]) -> bool:
    """PyMySQL's connect arguments; True if the read timeout must be switched
    from the connect timeout (used for the handshake) to the read timeout once
    connected."""
    if "connect_timeout" not in url.query:
        args.setdefault("connect_timeout", timeouts.connect)
    if "write_timeout" not in url.query:
        args.setdefault("write_timeout", timeouts.read)
    if "read_timeout" in url.query or "read_timeout" in args:
        return False
    # PyMySQL reads the server's greeting with the read timeout: a server that
    # accepts the connection and never answers must not hold it for longer
    # than the connect timeout.
    args["read_timeout"] = args.get("connect_timeout", timeouts.connect)
    return True


def _mysql_session(engine: sa.Engine, timeouts: Timeouts, read_later: bool) -> None:
    """Set the session's lock and statement timeouts on every new connection."""
    lock = max(1, math.ceil(timeouts.lock))  # whole seconds, at least 1

    @event.listens_for(engine, "connect")
    def _timeouts(dbapi_connection: Any, _record: Any) -> None:
        settings = [f"innodb_lock_wait_timeout = {lock}", f"lock_wait_timeout = {lock}"]
        if timeouts.statement:
            server = str(getattr(dbapi_connection, "get_server_info", lambda: "")())
            if "mariadb" in server.lower():
                settings.append(f"max_statement_time = {timeouts.statement:g}")
            else:
                settings.append(f"max_execution_time = {_ms(timeouts.statement)}")
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SET SESSION " + ", ".join(settings))
        finally:
            cursor.close()
        if read_later and hasattr(dbapi_connection, "_read_timeout"):
            # Connected: from now on the read timeout (PyMySQL applies it to
            # the socket before each read; it has no public setter).
            dbapi_connection._read_timeout = timeouts.read


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))
