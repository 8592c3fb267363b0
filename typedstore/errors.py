"""The one error hierarchy of typedstore, rooted at :class:`StoreError`.

Every error a store raises on purpose is a :class:`StoreError`, so callers can
catch one class. Errors carry the data that explains them (the id, the field,
the URL with its password hidden) as attributes as well as in the message.

A not-found error (:class:`NotFoundError`, raised by ``load``/``replace``/``remove``
of an id that is not stored) is also a :class:`KeyError`, so plain Python code
that catches ``KeyError`` keeps working. It is a :class:`LoadError` too, because
GC3Pie code catches ``LoadError`` when a job is missing. After
``typedstore.compat.gc3pie.install()``, :class:`LoadError` is also a subclass of
``gc3libs.exceptions.LoadError``, so GC3Pie's own ``except`` clauses catch it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class StoreError(Exception):
    """Root of every error raised by typedstore on purpose."""


class UrlError(StoreError, ValueError):
    """A store URL that cannot be understood (bad syntax, unknown scheme).

    Attributes:
        url (str): the offending URL, with any password replaced by ``***``.
    """

    def __init__(self, message: str, url: str = "") -> None:
        super().__init__(message)
        self.url = url


class LoadError(StoreError):
    """An object could not be loaded.

    Attributes:
        id: the id that was asked for (``None`` when unknown).
    """

    def __init__(self, message: str, id_: Any = None) -> None:
        super().__init__(message)
        self.id = id_


class NotFoundError(LoadError, KeyError):
    """No object is stored under the given id."""

    def __str__(self) -> str:
        # KeyError would otherwise print the repr of the message.
        return str(self.args[0]) if self.args else ""


class UnsafeLoadError(LoadError):
    """A payload names a class that the store's allow-list does not permit.

    Attributes:
        id: the record being loaded.
        global_name (str): ``module.qualname`` of the refused class.
    """

    def __init__(self, message: str, id_: Any = None, global_name: str = "") -> None:
        super().__init__(message, id_)
        self.global_name = global_name


class DamagedRecordError(LoadError):
    """A record's payload does not match the checksum stored with it: its bytes
    were damaged (bit rot, a truncated copy, a bad disk) after it was written.

    Nothing of it was unpickled. The file store tries the record's ``.OLD``
    backup first; this is raised when there is none (or it fails too).

    Attributes:
        id: the damaged record.
    """


class SignatureError(UnsafeLoadError):
    """A record of a signed store whose MAC is missing or does not verify with any
    of the store's signing keys: it was written without the key (planted,
    modified, copied from another id) or damaged. Refused before unpickling.

    Attributes:
        id: the refused record.
        reason (str): ``"missing"`` or ``"wrong"``.
    """

    def __init__(self, message: str, id_: Any = None, reason: str = "wrong") -> None:
        super().__init__(message, id_)
        self.reason = reason


class SaveError(StoreError):
    """An object could not be saved; nothing of that save was written.

    Attributes:
        id: the id of the object being saved (``None`` if it had none yet).
        field (str | None): the row field that failed, when one did.
    """

    def __init__(self, message: str, id_: Any = None, field: str | None = None) -> None:
        super().__init__(message)
        self.id = id_
        self.field = field


class ConflictError(SaveError):
    """A write over a record that another writer changed since it was read.

    Attributes:
        ids (tuple): every id whose stored version did not match.
        expected (int | None): the version this store had read.
        found (int | None): the version stored now (``None`` if the record is gone).
    """

    def __init__(
        self,
        message: str,
        ids: Iterable[Any],
        expected: int | None = None,
        found: int | None = None,
    ) -> None:
        ids = tuple(ids)
        super().__init__(message, ids[0] if ids else None)
        self.ids = ids
        self.expected = expected
        self.found = found


class ReferencedError(StoreError):
    """A remove of a record that other stored records still reference.

    Removing it would leave them with references to nothing (they could no
    longer be loaded). Remove them first, pass ``cascade=True`` when they are
    being removed with it, or ``force=True`` to remove it anyway.

    Attributes:
        id: the record asked to be removed.
        referrers (tuple): ids of the stored records referencing it.
    """

    def __init__(self, message: str, id_: Any, referrers: Iterable[Any]) -> None:
        super().__init__(message)
        self.id = id_
        self.referrers = tuple(referrers)


class SchemaError(StoreError):
    """The stored schema does not match what the code needs.

    Attributes:
        table (str): the store table.
        current (str | None): the revision the database is at.
        required (str | None): the revision the code needs.
        command (str | None): the exact command that fixes it, when there is one.
        missing_columns (tuple[str, ...]): columns the row model has and the table lacks.
    """

    def __init__(
        self,
        message: str,
        table: str = "",
        current: str | None = None,
        required: str | None = None,
        command: str | None = None,
        missing_columns: Iterable[str] = (),
    ) -> None:
        super().__init__(message)
        self.table = table
        self.current = current
        self.required = required
        self.command = command
        self.missing_columns = tuple(missing_columns)


class QueryError(StoreError, ValueError):
    """A query that cannot be asked, refused before anything is sent.

    A condition whose value the field's column can never hold (NaN, a naive
    datetime, text longer than ``max_length``, an integer beyond 64 bits, a
    value that is not a member of the field's enum...): raised when the query
    is built, with the same words on every backend (``field`` is set). Also a
    statement larger than the server takes (MariaDB's ``max_allowed_packet``).
    Also a :class:`ValueError`.

    Attributes:
        field (str | None): the row field (column) of the condition.
        value: the value that was refused.
    """

    def __init__(self, message: str, field: str | None = None, value: Any = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class TransactionError(StoreError):
    """A transaction was used wrongly (for example nested across threads)."""


class LockTimeout(StoreError):
    """A lock was not obtained in time: a row lock another client holds
    (PostgreSQL ``lock_timeout``, MariaDB ``innodb_lock_wait_timeout``),
    SQLite's write lock (busy timeout), a file store's lock file.

    Attributes:
        lock (str): what was waited for (a lock file's path, a table's row lock).
        waited (float): seconds waited before giving up.
        store (str): the store (URL or directory, password hidden), when known.
    """

    def __init__(self, message: str, lock: str = "", waited: float = 0.0,
                 store: str = "") -> None:
        super().__init__(message)
        self.lock = lock
        self.waited = waited
        self.store = store


class ConnectError(StoreError):
    """The database server could not be reached or refused the connection
    (down, unknown host, authentication); the store tries again on its next
    operation.

    Attributes:
        store (str): the store, its URL's password hidden.
    """

    def __init__(self, message: str, store: str = "") -> None:
        super().__init__(message)
        self.store = store


class ServerTimeout(StoreError):
    """The database server did not answer in time: a statement ran longer than
    the store's ``statement_timeout``, or no answer came within
    ``read_timeout`` (:class:`ReadTimeout`). Lock waits are
    :class:`LockTimeout`, connecting :class:`ConnectTimeout`.

    Attributes:
        store (str): the store, its URL's password hidden.
        what (str): the statement or step that timed out.
        waited (float): seconds waited (the timeout that expired).
    """

    def __init__(self, message: str, store: str = "", what: str = "",
                 waited: float = 0.0) -> None:
        super().__init__(message)
        self.store = store
        self.what = what
        self.waited = waited


class ConnectTimeout(ConnectError, ServerTimeout):
    """Connecting to the database server took longer than ``connect_timeout``
    (a server that accepts connections but never answers, a dropped route)."""

    def __init__(self, message: str, store: str = "", what: str = "connecting",
                 waited: float = 0.0) -> None:
        ServerTimeout.__init__(self, message, store, what, waited)


class ConnectionLostError(StoreError):
    """The connection to the database server ended during an operation.

    The store drops that connection and opens a new one on its next operation.
    ``committed`` tells what became of the writes: ``False`` when nothing was
    written (the connection died inside a transaction before its COMMIT was
    sent, or during a read); see :class:`OutcomeUnknownError` for ``None``.

    Attributes:
        store (str): the store, its URL's password hidden.
        id: the record concerned (the first of ``ids``), or ``None``.
        ids (tuple): every record the lost statement or transaction wrote or read.
        committed (bool | None): ``False``: nothing was written; ``None``: unknown.
    """

    committed: bool | None = False

    def __init__(self, message: str, store: str = "", ids: Iterable[Any] = ()) -> None:
        super().__init__(message)
        self.store = store
        self.ids = tuple(ids)
        self.id = self.ids[0] if self.ids else None


class OutcomeUnknownError(ConnectionLostError):
    """The connection ended after a write or its COMMIT was sent and before the
    server answered: the write may or may not have been committed
    (``committed`` is ``None``). Load the records named by ``ids`` to find out
    (a new object that was committed exists under its id; a changed one
    raises ConflictError on its next save, so it is reloaded, never
    overwritten)."""

    committed = None


class ReadTimeout(ServerTimeout, ConnectionLostError):
    """A connected server did not answer a statement within the store's
    ``read_timeout`` (a stopped or frozen server, a partition, an overloaded
    host): the store closed the connection and reconnects on its next
    operation. PostgreSQL's is a client-side deadline (psycopg waits without
    limit, see :mod:`typedstore.deadlines`), MySQL/MariaDB's PyMySQL's own
    ``read_timeout``.

    ``committed`` says what became of a write, as for
    :class:`ConnectionLostError`: ``False`` for a read or a statement inside a
    transaction (the server discards the transaction with the connection),
    ``None`` for a write outside one or a COMMIT (load the records to find out).

    Attributes:
        store (str): the store, its URL's password hidden.
        what (str): the statement that got no answer.
        waited (float): the read timeout, in seconds.
        ids (tuple): the records concerned; ``id`` the first of them.
        committed (bool | None): ``False``: nothing was written; ``None``: unknown.
    """

    def __init__(self, message: str, store: str = "", what: str = "", waited: float = 0.0,
                 ids: Iterable[Any] = (), committed: bool | None = False) -> None:
        ConnectionLostError.__init__(self, message, store, ids)
        self.what = what
        self.waited = waited
        self.committed = committed


class DeadlockError(ConflictError):
    """The server ended the transaction to break a deadlock (or a serialization
    failure): nothing of it was written. Running it again is the cure, as for
    any conflict (``store.retry`` does).

    PostgreSQL SQLSTATE 40P01/40001, MySQL/MariaDB error 1213: the server rolls
    the whole transaction back (MariaDB's InnoDB too), so no half of it remains.
    """
