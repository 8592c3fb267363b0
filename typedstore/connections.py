"""Connection handling of the SQL store: its own driver connection, the pooled
ones, timeouts, and what becomes of a driver's errors.

A :class:`~typedstore.sql.SqlStore` runs its record statements on one driver
connection of its own, in autocommit mode (:class:`StoreConnection`), and its
queries on pooled ones (:meth:`StoreConnection.stream`). This module keeps them
alive and turns every driver error into a typedstore error naming the store:

* **Dead connections** (a server restart, ``pg_terminate_backend``, MariaDB
  ``KILL``, ``wait_timeout``). A server that ends a connection writes an error
  or an end of file to it, and nothing else arrives unasked on an idle
  connection; so before each statement the store asks the kernel, without a
  round trip, whether its socket has anything to read (``poll`` with a zero
  timeout, about a microsecond). If it has, the connection is dropped: outside
  a transaction a new one is opened and the statement runs on it; inside a
  transaction, whose work the server threw away, :class:`ConnectionLostError`
  says that nothing of it was written. A connection that dies while a
  statement is under way is recognised from the error
  (``dialect.is_disconnect``, the driver's own state): a read, ``BEGIN`` or
  ``SET`` is run once more on a new connection; a write in autocommit mode or
  a ``COMMIT`` raises :class:`OutcomeUnknownError` (the server may have
  committed it); any statement inside a transaction raises
  :class:`ConnectionLostError` (nothing was written). The next operation
  opens a new connection.
* **Timeouts** (:class:`Timeouts`, defaults in :mod:`typedstore.defaults`):
  lock waits end in :class:`LockTimeout`, statements running too long in
  :class:`ServerTimeout`, a connected server that stops answering in
  :class:`ReadTimeout` (the connection closed; never retried), connecting in
  :class:`ConnectTimeout`; failing to connect at all in :class:`ConnectError`.
* **Oversized statements** on MySQL/MariaDB: the server's
  ``max_allowed_packet`` is read once per connection, and a statement larger
  than it is refused before it is sent (:class:`SaveError` with the record's
  id, size and the limit): sending it would make the server drop the
  connection.
* Any other driver error becomes a :class:`SaveError` (writes),
  :class:`LoadError` (reads) or :class:`StoreError`, with the driver's error
  as ``__cause__``.
"""

from __future__ import annotations

import logging
import math
import os
import select
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from time import monotonic
from typing import Any, TypeVar

import sqlalchemy as sa

from . import defaults
from .deadlines import NO_ANSWER
from .errors import (
    ConnectError,
    ConnectionLostError,
    ConnectTimeout,
    DeadlockError,
    LoadError,
    LockTimeout,
    OutcomeUnknownError,
    QueryError,
    ReadTimeout,
    SaveError,
    ServerTimeout,
    StoreError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Set (True) by the engine (typedstore.engine) on a driver's exception raised
#: while a connection was being made: such an error says nothing of what a
#: statement did, and a lost handshake and a lost query can look alike.
CONNECTING = "typedstore_connecting"

# What a driver error means (classify()).
DISCONNECT = "disconnect"  # the connection is gone
SILENT = "silent"  # no answer within the read timeout; the connection was closed
POOL = "pool"  # every connection of the pool in use for longer than its timeout
LOCK = "lock"  # a lock wait timed out
STATEMENT = "statement"  # the statement timed out
PACKET = "packet"  # a statement larger than the server's max_allowed_packet
CONNECT = "connect"  # connecting failed
CONNECT_TIMEOUT = "connect timeout"  # connecting timed out
OTHER = "other"  # anything else the database said

# MySQL/MariaDB error numbers.
_MYSQL_LOCK = {1205}  # ER_LOCK_WAIT_TIMEOUT
_MYSQL_STATEMENT = {1969, 3024}  # MariaDB max_statement_time, MySQL max_execution_time
_MYSQL_PACKET = {1153}  # ER_NET_PACKET_TOO_LARGE
_MYSQL_CONNECT = {1044, 1045, 1049, 2003, 2005}  # access denied, unknown db, can't connect
_MYSQL_DISCONNECT = {1053, 1927, 2006, 2013, 2014, 2045, 2055, 4031}
# SQLite result codes (the low byte of sqlite_errorcode).
_SQLITE_BUSY = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED

#: Statements that may run again on a new connection when the connection died
#: under them outside a transaction: they change nothing that could have been
#: committed.
_REPEATABLE = ("SELECT", "BEGIN", "SET", "SHOW")


# ---------------------------------------------------------------- timeouts


#: The longest timeout a store takes, in seconds: PostgreSQL's settings hold at
#: most 2**31 - 1 milliseconds (about 24.8 days); the servers refuse more.
MAX_TIMEOUT = 2_000_000.0


@dataclass(frozen=True)
class Timeouts:
    """A store's timeouts, in seconds (see :mod:`typedstore.defaults` for each).

    Attributes:
        connect (float): connecting, handshake included (ConnectTimeout).
        lock (float): waiting for a lock (LockTimeout).
        statement (float): a statement's run time on the server, 0 for no limit
            (ServerTimeout).
        read (float): the longest wait for a connected server's answer to one
            statement or fetch (ReadTimeout): PyMySQL's read and write timeouts,
            PostgreSQL's client-side deadline (typedstore.deadlines).
    """

    connect: float
    lock: float
    statement: float
    read: float

    @classmethod
    def resolve(cls, connect: float | None = None, lock: float | None = None,
                statement: float | None = None, read: float | None = None) -> Timeouts:
        """The timeouts given, the others from :mod:`typedstore.defaults` (read
        when called, so a changed default applies to stores opened afterwards).

        Raises ValueError for a timeout that is not a positive number
        (``statement`` may be 0: no limit), or a ``read`` timeout shorter than
        the lock or statement timeout (a lock wait would end as a lost
        connection).
        """
        values = {
            "connect_timeout": defaults.CONNECT_TIMEOUT if connect is None else connect,
            "lock_timeout": defaults.LOCK_TIMEOUT if lock is None else lock,
            "statement_timeout": defaults.STATEMENT_TIMEOUT if statement is None else statement,
        }
        for name, value in [*values.items(), ("read_timeout", read)]:
            if name == "read_timeout" and value is None:
                continue
            if (not isinstance(value, (int, float)) or isinstance(value, bool)
                    or math.isnan(value) or value < 0
                    or (value == 0 and name != "statement_timeout")
                    or value > MAX_TIMEOUT):
                raise ValueError(f"{name} must be a positive number of seconds, at most "
                                 f"{MAX_TIMEOUT:g} (PostgreSQL's limit), not {value!r}")
        lock_s, statement_s = float(values["lock_timeout"]), float(values["statement_timeout"])
        if read is None:
            read_s = max(defaults.READ_TIMEOUT, lock_s + defaults.READ_TIMEOUT_MARGIN,
                         statement_s + defaults.READ_TIMEOUT_MARGIN)
        else:
            if not isinstance(read, (int, float)) or isinstance(read, bool) or not read > 0:
                raise ValueError(f"read_timeout must be a positive number of seconds, "
                                 f"not {read!r}")
            read_s = float(read)
            if read_s <= lock_s or (statement_s and read_s <= statement_s):
                raise ValueError(
                    f"read_timeout ({read_s:g} s) must be longer than lock_timeout "
                    f"({lock_s:g} s) and statement_timeout ({statement_s:g} s): the client "
                    "would give up on the connection before the server ends the wait")
        return cls(float(values["connect_timeout"]), lock_s, statement_s, read_s)


# ---------------------------------------------------------------- errors


#: Errors of a transaction the server ended to break a deadlock (or to keep
#: transactions serializable): PostgreSQL SQLSTATEs, MySQL/MariaDB error numbers.
_DEADLOCK_SQLSTATES = frozenset({"40P01", "40001"})
_DEADLOCK_MYSQL = frozenset({1213})


def is_deadlock(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) says the server broke a deadlock."""
    for item in _chain(exc):
        if getattr(item, "sqlstate", None) in _DEADLOCK_SQLSTATES:
            return True
        args = getattr(item, "args", ())
        if args and isinstance(args[0], int) and args[0] in _DEADLOCK_MYSQL \
                and type(item).__module__.startswith("pymysql"):
            return True
    return False


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, what SQLAlchemy wrapped, and its causes and contexts."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo += [getattr(item, "orig", None), getattr(item, "original_exception", None),
                 item.__cause__, item.__context__]


def _timed_out(exc: BaseException) -> bool:
    return any(isinstance(e, TimeoutError) or type(e).__name__ == "ConnectionTimeout"
               or "timed out" in str(e) or "timeout expired" in str(e) for e in _chain(exc))


def _driver_broken(connection: Any) -> bool:
    """True if the driver connection knows itself closed or broken."""
    if connection is None:
        return False
    if getattr(connection, "broken", False):  # psycopg
        return True
    closed = getattr(connection, "closed", None)  # psycopg: a bool property
    if isinstance(closed, bool) and closed:
        return True
    is_open = getattr(connection, "open", None)  # PyMySQL: a bool property
    return isinstance(is_open, bool) and not is_open


def classify(exc: BaseException, dialect: sa.Dialect, connection: Any = None,
             cursor: Any = None) -> str:
    """What a driver (or SQLAlchemy) error means: one of the module's kinds
    (``DISCONNECT``, ``LOCK``, ``STATEMENT``, ``PACKET``, ``CONNECT``,
    ``CONNECT_TIMEOUT``, ``OTHER``)."""
    if isinstance(exc, sa.exc.TimeoutError):  # SQLAlchemy's pool, not the server
        return POOL
    if any(getattr(e, CONNECTING, False) for e in _chain(exc)):
        return CONNECT_TIMEOUT if _timed_out(exc) else CONNECT
    if any(getattr(e, NO_ANSWER, False) for e in _chain(exc)):
        return SILENT  # PostgreSQL: the read deadline (deadlines.py) expired
    orig: BaseException = exc
    if isinstance(exc, sa.exc.DBAPIError):
        orig = exc.orig or exc
        if exc.connection_invalidated:
            return DISCONNECT
    name = dialect.name
    if name == "postgresql":
        state = getattr(orig, "sqlstate", None) or ""
        if type(orig).__name__ == "ConnectionTimeout":
            return CONNECT_TIMEOUT
        if state == "55P03":  # lock_not_available: lock_timeout
            return LOCK
        if state == "57014" and "statement timeout" in str(orig):
            return STATEMENT  # query_canceled by statement_timeout (not by a user's
            # pg_cancel_backend, which says "due to user request": an OTHER error)
        if state in ("57P01", "57P02", "57P03") or state.startswith("08"):
            return DISCONNECT  # admin or crash shutdown, connection exceptions
        if not state and "pipeline mode" in str(orig):
            # psycopg's executemany pipeline left busy by a connection that died
            # under it ("cannot exit pipeline mode while busy"), before libpq
            # saw the end of file: the connection is unusable either way.
            return DISCONNECT
    elif name in ("mysql", "mariadb"):
        args = getattr(orig, "args", ())
        code = args[0] if args and isinstance(args[0], int) else None
        if code in _MYSQL_LOCK:
            return LOCK
        if code in _MYSQL_STATEMENT:
            return STATEMENT
        if code in _MYSQL_PACKET:
            return PACKET
    elif name == "sqlite" and isinstance(orig, sqlite3.OperationalError):
        code = getattr(orig, "sqlite_errorcode", None)
        if (code is not None and code & 0xFF in _SQLITE_BUSY) or "locked" in str(orig):
            return LOCK
    try:
        if dialect.is_disconnect(orig, connection, cursor):  # type: ignore[arg-type]
            return SILENT if name in ("mysql", "mariadb") and _timed_out(orig) \
                else DISCONNECT
    except Exception:  # a dialect that cannot judge this error
        log.debug("is_disconnect failed on %r", orig, exc_info=True)
    if name in ("mysql", "mariadb"):
        args = getattr(orig, "args", ())
        code = args[0] if args and isinstance(args[0], int) else None
        if code in _MYSQL_DISCONNECT:
            # PyMySQL's socket timeout (read_timeout) reads "... (timed out)".
            return SILENT if _timed_out(orig) else DISCONNECT
    if _driver_broken(connection) or isinstance(orig, OSError):
        return DISCONNECT
    return OTHER


def _said(exc: BaseException) -> str:
    """The driver's own words, for a message."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {text[0] if text else ''}".rstrip(": ")


def _first_word(sql: str) -> str:
    return sql.lstrip()[:12].split(None, 1)[0].upper() if sql.strip() else ""


def _is_database_error(exc: BaseException, dialect: sa.Dialect) -> bool:
    """An error of the database, its driver or SQLAlchemy (not a bug of ours)."""
    if isinstance(exc, (sa.exc.SQLAlchemyError, OSError, sqlite3.Error)):
        return True
    dbapi = getattr(dialect, "loaded_dbapi", None)
    error = getattr(dbapi, "Error", None)
    return isinstance(error, type) and isinstance(exc, error)


# ---------------------------------------------------------------- statements


@dataclass
class _Statement:
    label: str  # "the read", "the update"...
    key: int | None  # position of the record id among the parameters


#: How a store's statements (attributes of RecordStatements, keys of the
#: counter statements) are named in messages.
_LABELS = {
    "insert": "the insert", "replace": "the replace", "update_checked": "the update",
    "upsert": "the write", "read": "the read", "read_version": "the version check",
    "delete": "the removal", "ids": "the listing of ids", "bump": "the id counter update",
    "get": "the id counter read", "init": "the id counter creation",
    "max": "the largest id read", "raise": "the id counter update",
}


# ---------------------------------------------------------------- the store's connection


class StoreConnection:
    """A store's own driver connection, in autocommit mode, opened on first use.

    The store runs its record statements on :attr:`cursor`, a stand-in for
    the driver's cursor that stays the same object across reconnections (the
    store may hold it); :meth:`begin`, :meth:`commit` and :meth:`rollback`
    delimit transactions. Not thread-safe: the store calls it under its lock.

    Args:
        engine: the store's engine (its pool gives the connections).
        describe: returns the store's name for messages (password hidden).
        timeouts: the store's timeouts, for messages.
        statements: returns the store's precompiled statements (objects whose
            attributes, or dicts whose values, have ``sql`` and ``names``), so
            that messages name the statement and the record; called only when
            an error is being described.
        txn_ids: returns the records the open transaction wrote (for messages).
    """

    def __init__(self, engine: sa.Engine, describe: Callable[[], str], timeouts: Timeouts,
                 statements: Callable[[], Iterable[Any]] = tuple,
                 txn_ids: Callable[[], Iterable[Any]] = tuple) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self._mysql = engine.dialect.name in ("mysql", "mariadb")
        self._network = engine.dialect.name != "sqlite"
        self.describe = describe
        self.timeouts = timeouts
        self._statements = statements
        self._txn_ids = txn_ids
        self._index: dict[str, _Statement] | None = None
        self.connection: Any = None  # the driver connection
        self.cursor = LinkCursor(self)
        #: A poll object watching the connection's socket (None: nothing to watch).
        self._poller: Any = None
        #: A BEGIN was sent and neither COMMIT nor ROLLBACK since.
        self.in_txn = False
        #: The error that ended the open transaction; raised again by every
        #: statement until :meth:`rollback`.
        self.lost: ConnectionLostError | None = None
        #: MySQL/MariaDB: the server's max_allowed_packet (0: no check).
        self.max_packet = 0
        #: The last max_allowed_packet read from the server (kept across
        #: reconnections, for queries on pooled connections; 0: not read yet).
        self.server_packet = 0
        self._pid = os.getpid()

    # ------------------------------------------------------------ opening, closing

    def open(self) -> Any:
        """Open the connection; return the driver cursor. Raises ConnectError
        (ConnectTimeout) naming the store when the server cannot be reached."""
        self.drop()
        store = self.describe()
        try:
            pooled = self.engine.raw_connection()
        except Exception as exc:
            raise self._connect_error(exc) from exc
        conn: Any = pooled.driver_connection
        try:
            if not isinstance(self.engine.pool, sa.pool.StaticPool):
                pooled.detach()  # ours alone: never handed to another pool user
            name = self.dialect.name
            if name == "sqlite":
                conn.isolation_level = None
            elif name == "postgresql":
                conn.autocommit = True
            else:
                conn.autocommit(True)
            raw = conn.cursor()
            if self._mysql:
                raw.execute("SELECT @@max_allowed_packet")
                self.max_packet = self.server_packet = int(raw.fetchone()[0])
        except Exception as exc:
            try:
                conn.close()
            except Exception:
                log.debug("%s: closing a connection that failed to open", store, exc_info=True)
            if _is_database_error(exc, self.dialect):
                raise ConnectError(f"{store}: the new connection failed: {_said(exc)}",
                                   store) from exc
            raise
        self.connection = conn
        self._pid = os.getpid()
        self._poller = self._watch(conn)
        self.cursor._bind(raw, self._poller, self.max_packet)
        return raw

    def _watch(self, conn: Any) -> Any:
        """A poll object on the connection's socket, or None (no socket, or no poll())."""
        if not self._network or not hasattr(select, "poll"):
            return None
        try:
            if self.dialect.name == "postgresql":
                fd = conn.pgconn.socket
            else:
                sock = getattr(conn, "_sock", None)  # PyMySQL keeps no public handle
                fd = sock.fileno() if sock is not None else -1
        except Exception:
            log.debug("no socket to poll for this connection", exc_info=True)
            return None
        if fd < 0:
            return None
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        return poller

    def drop(self) -> None:
        """Close the connection (without waiting for the server) and forget it."""
        conn, self.connection = self.connection, None
        self.cursor._bind(None, None, 0)
        self._poller = None
        self.in_txn = False
        self.max_packet = 0
        if conn is not None and self._pid == os.getpid():
            try:
                conn.close()
            except Exception:
                log.debug("%s: closing a dead connection", self.describe(), exc_info=True)

    def forget(self) -> None:
        """In a forked child: drop the parent's connection without touching it."""
        self.connection = None
        self.cursor._bind(None, None, 0)
        self._poller = None
        self.in_txn = False
        self.lost = None
        self.max_packet = 0

    def close(self) -> None:
        """Close the connection, logging (not raising) a failure."""
        conn, self.connection = self.connection, None
        self.forget()
        if conn is not None and self._pid == os.getpid():
            try:
                conn.close()
            except Exception:
                log.exception("%s: closing the connection failed", self.describe())

    def backend_id(self) -> int | None:
        """The server's id of the connection (PostgreSQL backend pid, MySQL
        thread id), None when not connected."""
        conn = self.connection
        if conn is None:
            return None
        if self.dialect.name == "postgresql":
            return int(conn.info.backend_pid)
        if self._mysql:
            return int(conn.thread_id())
        return None

    # ------------------------------------------------------------ transactions

    def begin(self, sql: str) -> None:
        """Start a transaction with ``sql`` (``BEGIN``, ``BEGIN IMMEDIATE``)."""
        if self.lost is not None:
            raise self._again()
        self.cursor.execute(sql)  # run again on a new connection if the old one died
        self.in_txn = True

    def commit(self) -> None:
        """Send COMMIT.

        Raises ConnectionLostError (nothing written) if the connection was
        found dead before COMMIT was sent, OutcomeUnknownError if it died
        after.
        """
        if self.lost is not None:
            raise self._again()
        ids = self._txn_ids
        raw = self.cursor._raw
        if raw is None or (self._poller is not None and self._poller.poll(0)):
            self.drop()
            self.lost = ConnectionLostError(
                f"{self.describe()}: the server closed the connection inside a transaction, "
                f"before its COMMIT was sent: nothing of the transaction (records "
                f"{_ids_text(ids())}) was written. The store reconnects on its next "
                "operation; run the transaction again.",
                self.describe(), _safe_ids(ids))
            raise self.lost
        try:
            raw.execute("COMMIT")
        except BaseException as exc:
            kind = classify(exc, self.dialect, self.connection, raw) \
                if isinstance(exc, Exception) else DISCONNECT
            if kind == SILENT:
                raise self._silent(self.cursor, "COMMIT", None, False, exc) from exc
            if kind == DISCONNECT:
                self.drop()
                if not isinstance(exc, Exception):
                    raise
                raise OutcomeUnknownError(
                    f"{self.describe()}: the connection was lost after COMMIT was sent and "
                    f"before the server answered ({_said(exc)}): the transaction writing "
                    f"records {_ids_text(ids())} may or may not have been committed; load "
                    "them to find out. The store reconnects on its next operation.",
                    self.describe(), _safe_ids(ids)) from exc
            raise self._translate(kind, exc, "COMMIT", None, False) from exc
        self.in_txn = False

    def rollback(self) -> None:
        """End the transaction; never raises for a connection that is gone."""
        self.lost = None
        if not self.in_txn:
            return
        self.in_txn = False
        raw = self.cursor._raw
        if raw is None:
            return
        try:
            raw.execute("ROLLBACK")
        except BaseException as exc:
            self.drop()  # the server ends the transaction with the connection
            if not isinstance(exc, Exception):
                raise
            log.info("%s: ROLLBACK failed (%s); the connection was dropped",
                     self.describe(), _said(exc))

    def _again(self) -> ConnectionLostError:
        assert self.lost is not None
        return type(self.lost)(
            f"{self.lost} (the transaction is over: roll it back by leaving its block)",
            self.lost.store, self.lost.ids)

    # ------------------------------------------------------------ statements

    def new_cursor(self) -> LinkCursor:
        """A second cursor on the connection (for a query inside a transaction)."""
        if self.cursor._raw is None or (self._poller is not None and self._poller.poll(0)):
            self._revive(self.cursor, "SELECT", None, False)
        cursor = LinkCursor(self, conn=self.connection)
        cursor._bind(self.connection.cursor(), self._poller, self.max_packet)
        return cursor

    def _revive(self, cursor: LinkCursor, sql: str, params: Any, many: bool) -> Any:
        """Before a statement: the connection is not open, or its server has
        closed it. Open a new one and return its cursor, unless a transaction
        was under way on the old one: then raise ConnectionLostError."""
        if self.lost is not None:
            raise self._again()
        if cursor is not self.cursor:
            # A second cursor belongs to its connection (and its transaction).
            in_txn = self.in_txn and cursor._conn is self.connection
            if cursor._conn is self.connection:
                self.drop()
            raise self._lost_txn(sql, params, many, None, remember=in_txn)
        if self.cursor._raw is not None:  # the poll saw the server end the connection
            in_txn = self.in_txn
            log.info("%s: the server closed the connection; %s", self.describe(),
                     "the transaction is lost" if in_txn else "reconnecting")
            self.drop()
            if in_txn:
                raise self._lost_txn(sql, params, many, None)
        return self.open()

    def _lost_txn(self, sql: str, params: Any, many: bool, exc: BaseException | None,
                  remember: bool = True) -> ConnectionLostError:
        """The error for a connection lost inside a transaction; with
        ``remember``, every statement raises it again until :meth:`rollback`."""
        what, ids = self._statement(sql, params, many)
        if remember:
            ids = tuple(dict.fromkeys((*_safe_ids(self._txn_ids), *ids)))
        cause = f" ({_said(exc)})" if exc is not None else ""
        lost = ConnectionLostError(
            f"{self.describe()}: the connection was lost inside a transaction, at {what}"
            f"{cause}: nothing of the transaction (records {_ids_text(ids)}) was written "
            "(the server discards it). The store reconnects on its next operation; run the "
            "transaction again.", self.describe(), ids)
        if remember:
            self.lost = lost
        return lost

    def _failed(self, cursor: LinkCursor, exc: BaseException, sql: str, params: Any,
                many: bool) -> None:
        """A statement raised ``exc``: raise the typedstore error for it, or
        (a repeatable statement on a connection that died outside a
        transaction) run it again on a new connection and return."""
        if not isinstance(exc, Exception):  # KeyboardInterrupt...: the connection's
            in_txn = self.in_txn  # state is unknown, drop it
            self.drop()
            if in_txn:
                self._lost_txn(sql, params, many, exc)
            raise exc
        if not _is_database_error(exc, self.dialect) and not _driver_broken(self.connection):
            raise exc  # a bug (bad parameters...), not the database's answer
        kind = classify(exc, self.dialect, self.connection, cursor._raw)
        if kind == SILENT:
            raise self._silent(cursor, sql, params, many, exc) from exc
        if kind == DISCONNECT:
            in_txn = self.in_txn
            self.drop()
            if in_txn or cursor is not self.cursor:
                raise self._lost_txn(sql, params, many, exc, remember=in_txn) from exc
            what, ids = self._statement(sql, params, many)
            if _first_word(sql) not in _REPEATABLE:
                raise OutcomeUnknownError(
                    f"{self.describe()}: the connection was lost after {what} was sent and "
                    f"before the server answered ({_said(exc)}): it may or may not have "
                    f"been committed; load record {_ids_text(ids)} to find out. The store "
                    "reconnects on its next operation.", self.describe(), ids) from exc
            log.info("%s: the connection was lost during %s (%s); running it again on a "
                     "new connection", self.describe(), what, _said(exc))
            raw = self.open()
            try:
                _run(raw, sql, params, many)
                return
            except Exception as again:
                kind = classify(again, self.dialect, self.connection, raw)
                if kind == SILENT:
                    raise self._silent(cursor, sql, params, many, again) from again
                if kind == DISCONNECT:
                    self.drop()
                    raise ConnectionLostError(
                        f"{self.describe()}: the connection was lost twice during {what} "
                        f"({_said(again)}); nothing was written. The store reconnects on "
                        "its next operation.", self.describe(), ids) from again
                raise self._translate(kind, again, sql, params, many) from again
        raise self._translate(kind, exc, sql, params, many) from exc

    def _silent(self, cursor: LinkCursor, sql: str, params: Any, many: bool,
                exc: BaseException) -> ReadTimeout:
        """The server did not answer ``sql`` within the read timeout and the
        connection was closed: drop it, and say what became of the statement."""
        mine = cursor is self.cursor or cursor._conn is self.connection
        in_txn = self.in_txn and mine
        if mine:
            self.drop()
        store = self.describe()
        what, ids = self._statement(sql, params, many)
        if in_txn:
            ids = tuple(dict.fromkeys((*_safe_ids(self._txn_ids), *ids)))
        read = self.timeouts.read
        head = (f"{store}: the server did not answer {what} within read_timeout={read:g} s "
                f"(stopped, overloaded or unreachable?) and the connection was closed")
        word = _first_word(sql)
        if word == "COMMIT":
            error = ReadTimeout(
                f"{head}: the transaction writing records {_ids_text(ids)} may or may not "
                "have been committed; load them to find out. The store reconnects on its "
                "next operation.", store, what, read, ids, None)
        elif in_txn:
            error = ReadTimeout(
                f"{head}: nothing of the transaction (records {_ids_text(ids)}) was "
                "written. The store reconnects on its next operation; run the transaction "
                "again.", store, what, read, ids, False)
            self.lost = error
        elif word in _REPEATABLE:
            error = ReadTimeout(f"{head}; nothing was written. The store reconnects on its "
                                "next operation.", store, what, read, ids, False)
        else:
            error = ReadTimeout(
                f"{head}: it may or may not have been written; load record "
                f"{_ids_text(ids)} to find out. The store reconnects on its next "
                "operation.", store, what, read, ids, None)
        log.warning("%s (%s)", error, _said(exc))
        return error

    def _translate(self, kind: str, exc: BaseException, sql: str, params: Any,
                   many: bool) -> StoreError:
        """The typedstore error for a driver error of ``kind`` (not a disconnect).

        A lock or statement timeout reports the timeout that expired as the
        wait (the server, or SQLite's busy handler, waited that long): the hot
        path reads no clock.
        """
        store = self.describe()
        what, ids = self._statement(sql, params, many)
        lock_s = self.timeouts.lock
        if self._mysql:  # the server counts whole seconds, at least 1 (engine.py)
            lock_s = float(max(1, math.ceil(lock_s)))
        waited = self.timeouts.statement if kind == STATEMENT else lock_s
        nothing = "nothing of the transaction was written" if self.in_txn \
            else "nothing was written"
        if kind == LOCK:
            if self.dialect.name == "sqlite":
                lock = f"the write lock of SQLite database {self.engine.url.database}"
                holder = "another connection"
            elif ids:
                lock = f"a lock on record {_ids_text(ids)}"
                holder = "another client"
            else:
                lock = f"a lock needed by {what}"
                holder = "another client"
            return LockTimeout(
                f"{store}: {what} waited for {lock}, held by {holder}, longer than "
                f"lock_timeout={lock_s:g} s"
                f"{' (whole seconds on this server)' if lock_s != self.timeouts.lock else ''}"
                f"; {nothing}", lock, waited, store)
        if kind == STATEMENT:
            return ServerTimeout(
                f"{store}: {what} ran longer than statement_timeout="
                f"{self.timeouts.statement:g} s and was cancelled; {nothing}",
                store, what, waited)
        if kind == PACKET:
            return self._too_large(sql, params, many, None, ids)
        if kind in (CONNECT, CONNECT_TIMEOUT, POOL):
            return self._connect_error(exc)
        if is_deadlock(exc):
            return DeadlockError(
                f"{store}: {what} was ended by the server to break a deadlock with another "
                f"client ({_said(exc)}); the server rolled the whole transaction back, "
                f"{nothing}: run it again (store.retry does)", ids)
        message = f"{store}: {what} failed: {_said(exc)}"
        if _first_word(sql) == "SELECT":
            return LoadError(message, ids[0] if ids else None)
        return SaveError(message, ids[0] if ids else None)

    def _connect_error(self, exc: BaseException) -> ConnectError | LockTimeout:
        store = self.describe()
        kind = classify(exc, self.dialect)
        if kind == POOL:
            pool = self.engine.pool
            size = f" ({pool.size()} + {pool._max_overflow} overflow)" \
                if isinstance(pool, sa.pool.QueuePool) else ""
            waited = float(getattr(pool, "_timeout", self.timeouts.lock))
            return LockTimeout(
                f"{store}: every pooled connection{size} was in use for longer than "
                f"{waited:g} s (lock_timeout): threads hold too many query results open "
                "(read them to the end, or close them), or the pool is too small "
                "(engine_options={'pool_size': ..., 'max_overflow': ...})",
                "a pooled connection", waited, store)
        if kind == CONNECT_TIMEOUT or _timed_out(exc):
            seconds = self._connect_seconds()
            return ConnectTimeout(
                f"{store}: connecting to the server took longer than connect_timeout="
                f"{seconds:g} s (a server that accepts connections but does "
                f"not answer?): {_said(exc)}", store, "connecting", seconds)
        return ConnectError(f"{store}: cannot connect to the server: {_said(exc)}", store)

    def _connect_seconds(self) -> float:
        """The connect timeout in effect: the URL's ``connect_timeout`` wins over
        the store's (engine.py); libpq counts whole seconds, at least 2."""
        seconds = self.timeouts.connect
        given = self.engine.url.query.get("connect_timeout")
        if isinstance(given, str):
            try:
                seconds = float(given)
            except ValueError:
                log.debug("connect_timeout=%r in the URL is not a number", given)
        if self.dialect.name == "postgresql":
            seconds = float(max(2, math.ceil(seconds)))
        return seconds

    def _statement(self, sql: str, params: Any, many: bool) -> tuple[str, tuple[Any, ...]]:
        """How to name a statement in a message, and the records it is about."""
        if self._index is None:
            self._index = {}
            for holder in self._statements():
                items = holder.items() if isinstance(holder, Mapping) else vars(holder).items()
                for name, compiled in items:
                    names = getattr(compiled, "names", None)
                    text = getattr(compiled, "sql", None)
                    if not isinstance(text, str) or not isinstance(names, list):
                        continue
                    key = next((i for i, n in enumerate(names) if n in ("id", "k_id")), None)
                    self._index.setdefault(text, _Statement(_LABELS.get(name) or str(name), key))
        found = self._index.get(sql)
        ids: tuple[Any, ...] = ()
        if found is not None and found.key is not None and params is not None:
            try:
                rows = params if many else [params]
                ids = tuple(row[found.key] for row in rows)
            except (IndexError, KeyError, TypeError):
                ids = ()
        if found is None:
            word = _first_word(sql)
            label = word if word in ("BEGIN", "COMMIT", "ROLLBACK") else f"a {word} statement"
        else:
            label = found.label
        return (f"{label} of record {_ids_text(ids)}" if ids else label), ids

    # ------------------------------------------------------------ MySQL packets

    def _check_packet(self, raw: Any, sql: str, params: Any, many: bool) -> None:
        """Refuse a statement larger than the server's max_allowed_packet
        before sending it (the server would drop the connection)."""
        limit = self.max_packet
        for row in (params if many else (params,)):
            values = row.values() if isinstance(row, Mapping) else row
            # An upper bound first, cheap: PyMySQL sends bytes as hex, strings
            # escaped (at most 2 bytes a byte), anything else in a few bytes.
            bound = len(sql) + 1
            for value in values:
                if isinstance(value, (bytes, bytearray, memoryview)):
                    bound += 2 * len(value) + 12
                elif isinstance(value, str):
                    bound += 4 * len(value) + 2  # UTF-8: at most 4 bytes a character
                else:
                    bound += 32
            if bound <= limit:
                continue
            size = len(raw.mogrify(sql, row).encode(self.connection.encoding,
                                                    "surrogateescape")) + 1
            if size > limit:
                raise self._too_large(sql, row, False, size, None)

    def check_query(self, cursor: Any, sql: str, params: Any, what: str) -> None:
        """MySQL/MariaDB: refuse a query larger than the server's
        max_allowed_packet before sending it on ``cursor`` (a pooled
        connection's), with a QueryError giving both sizes: the server would
        drop the connection, and a retry would too."""
        if not self._mysql:
            return
        bound = len(sql) + 1 + sum(
            2 * len(v) + 12 if isinstance(v, (bytes, bytearray, memoryview))
            else 4 * len(v) + 2 if isinstance(v, str) else 32
            for v in (params.values() if isinstance(params, Mapping) else params or ()))
        if bound <= (self.server_packet or 1 << 20):
            # Within the server's limit (read when the store's connection
            # opened); before that, below 1 MiB (MySQL 5.5's default, the
            # smallest any release had) the limit is not asked for.
            return
        if not self.server_packet:
            cursor.execute("SELECT @@max_allowed_packet")
            self.server_packet = int(cursor.fetchone()[0])
        size = len(cursor.mogrify(sql, params).encode(cursor.connection.encoding,
                                                      "surrogateescape")) + 1
        if size > self.server_packet:
            raise QueryError(
                f"{self.describe()}: {what} is a {size}-byte statement, larger than the "
                f"server's max_allowed_packet ({self.server_packet} bytes); nothing was "
                "sent. Ask with fewer or shorter values (a long IN list: split it), or "
                "raise max_allowed_packet on the server.")

    def _too_large(self, sql: str, row: Any, many: bool, size: int | None,
                   ids: tuple[Any, ...] | None) -> SaveError:
        store = self.describe()
        if ids is None:
            _, ids = self._statement(sql, row, many)
        rows = (row if many else [row]) if row is not None else []
        payload = max((len(v) for r in rows
                       for v in (r.values() if isinstance(r, Mapping) else r)
                       if isinstance(v, (bytes, bytearray, memoryview))), default=0)
        sent = f"a {size}-byte statement" if size else "its statement"
        limit = self.max_packet or "max_allowed_packet"
        id_ = ids[0] if ids else None
        return SaveError(
            f"{store}: record {id_ if id_ is not None else '(new)'} is {payload} bytes "
            f"pickled, {sent}, larger than the server's max_allowed_packet ({limit} "
            f"bytes); nothing was written. Records are sent in hexadecimal: the largest "
            f"that fits is about half of max_allowed_packet; raise it on the server "
            f"(SET GLOBAL max_allowed_packet=..., or in its configuration) to store this one.",
            id_, "data")

    # ------------------------------------------------------------ other connections

    @contextmanager
    def translating(self, what: str) -> Iterator[None]:
        """Turn database errors raised by the block (SQLAlchemy or driver errors
        of other connections than the store's) into typedstore errors."""
        started = monotonic()
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:
            if not _is_database_error(exc, self.dialect):
                raise
            raise self._translate_other(exc, what, started) from exc

    def _translate_other(self, exc: BaseException, what: str, started: float) -> StoreError:
        kind = classify(exc, self.dialect)
        store = self.describe()
        if kind in (CONNECT, CONNECT_TIMEOUT, POOL):
            return self._connect_error(exc)
        if kind == SILENT:
            return ReadTimeout(
                f"{store}: the server did not answer within read_timeout="
                f"{self.timeouts.read:g} s while {what} (stopped, overloaded or "
                "unreachable?) and the connection was closed; nothing was written. The "
                "store reconnects on its next operation.", store, what, self.timeouts.read)
        if kind == DISCONNECT:
            return ConnectionLostError(
                f"{store}: the connection was lost while {what} ({_said(exc)}); nothing "
                "was written. The store reconnects on its next operation.", store)
        if kind == LOCK:
            waited = monotonic() - started
            return LockTimeout(
                f"{store}: {what} waited {waited:.1f} s for a lock held by another client "
                f"(lock_timeout={self.timeouts.lock:g} s); nothing was written",
                f"a lock needed for {what}", waited, store)
        if kind == STATEMENT:
            return ServerTimeout(
                f"{store}: {what} ran longer than statement_timeout="
                f"{self.timeouts.statement:g} s and was cancelled", store, what,
                monotonic() - started)
        return StoreError(f"{store}: {what} failed: {_said(exc)}")

    def guard(self, fn: Callable[..., T], what: str, retry: bool = False) -> Callable[..., T]:
        """``fn`` with its database errors translated; with ``retry``, run once
        more when its connection died (``fn`` must then be safe to repeat)."""

        def guarded(*args: Any, **kwargs: Any) -> T:
            attempts = 2 if retry else 1
            for attempt in range(1, attempts + 1):
                started = monotonic()
                try:
                    return fn(*args, **kwargs)
                except StoreError:
                    raise
                except Exception as exc:
                    if not _is_database_error(exc, self.dialect):
                        raise
                    if attempt < attempts and classify(exc, self.dialect) == DISCONNECT:
                        log.info("%s: the connection was lost while %s (%s); trying again",
                                 self.describe(), what, _said(exc))
                        continue
                    raise self._translate_other(exc, what, started) from exc
            raise AssertionError("unreachable")

        return guarded

    def stream(self, run: Callable[[Any], Iterator[T]], what: str = "a query") -> Iterator[T]:
        """Yield what ``run(driver_connection)`` yields, on a pooled connection
        returned to the pool at the end. A connection that dies before the
        first item is replaced and ``run`` called again once; later, the
        error is a ConnectionLostError. Other errors are translated."""
        for attempt in (1, 2):
            try:
                pooled = self.engine.raw_connection()
            except Exception as exc:
                if not _is_database_error(exc, self.dialect):
                    raise
                raise self._connect_error(exc) from exc
            started = monotonic()
            given = False
            try:
                for item in run(pooled.driver_connection):
                    given = True
                    yield item
                return
            except StoreError:
                raise
            except Exception as exc:
                if not _is_database_error(exc, self.dialect):
                    raise
                kind = classify(exc, self.dialect, pooled.driver_connection)
                if kind != DISCONNECT:  # a silent server included: not tried again
                    if kind == SILENT:
                        pooled.invalidate()
                    raise self._translate_other(exc, what, started) from exc
                pooled.invalidate()
                if given or attempt == 2:
                    store = self.describe()
                    raise ConnectionLostError(
                        f"{store}: the connection was lost while reading the results of "
                        f"{what} ({_said(exc)}); run it again.", store) from exc
                log.info("%s: the connection was lost at the start of %s (%s); trying again",
                         self.describe(), what, _said(exc))
            finally:
                self._end_read(pooled)

    def _end_read(self, pooled: Any) -> None:
        """Return a query's pooled connection, its read transaction rolled back
        here: one the server ended meanwhile is dropped quietly (the pool's
        own rollback would log an ERROR with a traceback for it)."""
        if pooled.is_valid:
            try:
                pooled.driver_connection.rollback()
            except Exception as exc:
                log.info("%s: a query's connection was lost before it was returned (%s); "
                         "dropped", self.describe(), _said(exc))
                pooled.invalidate()
        pooled.close()


def _run(raw: Any, sql: str, params: Any, many: bool) -> None:
    if many:
        raw.executemany(sql, params)
    elif params is None:
        raw.execute(sql)
    else:
        raw.execute(sql, params)


def _ids_text(ids: Iterable[Any]) -> str:
    ids = list(ids)
    if not ids:
        return "(none known)"
    text = ", ".join(str(i) for i in ids[:10])
    return text + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")


def _safe_ids(ids: Callable[[], Iterable[Any]]) -> tuple[Any, ...]:
    try:
        return tuple(ids())
    except Exception:
        log.debug("the ids of a failed statement could not be named", exc_info=True)
        return ()


def _no_result(*_args: Any) -> Any:
    raise StoreError("no result to fetch: the statement failed or its connection was closed")


class LinkCursor:
    """The store's cursor: the driver's cursor of the current connection, with
    the checks and error handling of :class:`StoreConnection` around
    ``execute`` and ``executemany``. The same object across reconnections.

    It is on the path of every record statement, so it holds what it needs
    itself: the driver cursor, the socket's poll (``None`` on SQLite), the
    packet limit (0 but on MySQL), and the driver cursor's own fetch methods.
    """

    __slots__ = ("_conn", "_link", "_packet", "_poll", "_raw", "fetchall", "fetchmany",
                 "fetchone")

    def __init__(self, link: StoreConnection, conn: Any = None) -> None:
        self._link = link
        self._conn = conn
        self._bind(None, None, 0)

    def _bind(self, raw: Any, poller: Any, packet: int) -> None:
        self._raw = raw
        self._poll = poller.poll if poller is not None else None
        self._packet = packet
        self.fetchone: Callable[[], Any] = raw.fetchone if raw is not None else _no_result
        self.fetchmany: Callable[[int], Any] = raw.fetchmany if raw is not None else _no_result
        self.fetchall: Callable[[], Any] = raw.fetchall if raw is not None else _no_result

    def execute(self, sql: str, params: Any = None) -> LinkCursor:
        raw = self._raw
        poll = self._poll
        if raw is None or (poll is not None and poll(0)):
            raw = self._link._revive(self, sql, params, False)
        if self._packet and params is not None:
            self._link._check_packet(raw, sql, params, False)
        try:
            if params is None:
                raw.execute(sql)
            else:
                raw.execute(sql, params)
        except BaseException as exc:
            self._link._failed(self, exc, sql, params, False)
        return self

    def executemany(self, sql: str, rows: Sequence[Any]) -> LinkCursor:
        raw = self._raw
        poll = self._poll
        if raw is None or (poll is not None and poll(0)):
            raw = self._link._revive(self, sql, rows, True)
        if self._packet:
            self._link._check_packet(raw, sql, rows, True)
        try:
            raw.executemany(sql, rows)
        except BaseException as exc:
            self._link._failed(self, exc, sql, rows, True)
        return self

    def __iter__(self) -> Iterator[Any]:
        return iter(self._raw)

    @property
    def rowcount(self) -> int:
        return int(self._raw.rowcount)

    @property
    def lastrowid(self) -> Any:
        return self._raw.lastrowid

    @property
    def description(self) -> Any:
        return self._raw.description

    def close(self) -> None:
        raw = self._raw
        if raw is not None and self is not self._link.cursor:
            self._bind(None, None, 0)
            try:
                raw.close()
            except Exception:
                log.debug("closing a cursor", exc_info=True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)
