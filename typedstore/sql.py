"""SqlStore: objects as rows of a SQL table, on SQLite, PostgreSQL and MySQL/MariaDB.

Each record is one row: ``id`` (integer primary key), ``data`` (the pickle),
``state`` and the row model's extracted columns, and the bookkeeping columns
``version`` and ``updated_at``.

How a save runs: the object is pickled (children first, in the same
transaction), its row values are extracted and validated, and one statement
writes the row -- ``INSERT`` for a new id, ``UPDATE ... WHERE id AND version``
for an object this store read (0 rows matched means someone else wrote it:
:class:`ConflictError`), an upsert otherwise. Statements are precompiled
(:mod:`typedstore.statements`) and run on a driver connection the store keeps
in autocommit mode. A transaction that writes only one statement runs it
alone, which the database makes atomic by itself: one round trip. A second
statement opens a real transaction (``BEGIN IMMEDIATE`` on SQLite, to take the
write lock up front) and replays the first in it.

Ids: a small counter table (``typedstore_ids``) holds the next free id of each
store table; a process takes a block of ids at once
(:data:`~typedstore.defaults.ID_BLOCK_SIZE`), so most saves cost no extra
round trip, and ids stay unique across processes and hosts and are never
reused (numbers of a block left unused are gaps).
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from typing import Any

import sqlalchemy as sa
from sqlmodel import SQLModel

from . import mounts
from .connections import OTHER, StoreConnection, Timeouts, classify
from .defaults import (
    COUNTER_ATTEMPTS,
    DEFAULT_PROTOCOL,
    ID_BLOCK_SIZE,
    NETWORK_FILESYSTEM,
    STREAM_BATCH_SIZE,
)
from .engine import create_store_engine, is_sqlite
from .errors import (
    ConflictError,
    LoadError,
    NotFoundError,
    SaveError,
    SchemaError,
    StoreError,
)
from .gc3pie_ids import Gc3PieCounter
from .ids import BlockSequence, IdFactory, IntId, new_int_id
from .integrity import CHECKSUM_COLUMN, MAC_COLUMN, Record
from .query import Query, QuerySource, row_class
from .references import (
    CHILD,
    PACK_BATCH,
    PACK_SAMPLE,
    REFERENCED_ROOT,
    ROOT,
    ROOT_COLUMN,
    PackReport,
    referenced_ids,
)
from .rows import RowBuilder, now
from .schema import (
    TableState,
    add_missing_columns,
    check_store,
    inspect_store,
    migrate,
    refuse_foreign,
    schema_transaction,
    typedstore_upgrade_command,
    upgrade_command,
    version_table,
    widen_payload,
)
from .statements import Compiled, RecordStatements
from .store import Store
from .tables import (
    build_table,
    counter_table,
    new_metadata,
    refs_table,
    refs_table_name,
    store_table_name,
)
from .urls import StoreUrl, parse_store_url, redact

log = logging.getLogger(__name__)


class _CounterRaceLost(Exception):
    """Creating the counter row lost a race that ended the whole transaction."""


class _PsycopgStream:
    """A psycopg cursor read with ``stream()``, behind the DB-API calls a query uses.

    The server sends the rows in chunks of :data:`STREAM_BATCH_SIZE` as they
    are read: one round trip and constant memory, where a named (server-side)
    cursor costs a round trip per batch plus DECLARE and CLOSE.
    """

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor
        self._stream: Any = None
        self._rows: Iterator[Any] = iter(())

    def execute(self, sql: str, params: Any) -> None:
        self._stream = stream = self._cursor.stream(sql, params, size=STREAM_BATCH_SIZE)
        # The first chunk arrives with the description of the columns.
        first = next(stream, None)
        self._rows = stream if first is None else itertools.chain([first], stream)

    @property
    def description(self) -> Any:
        return self._cursor.description

    def fetchmany(self, size: int) -> list[Any]:
        return list(itertools.islice(self._rows, size))

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()  # psycopg cancels a query left half read
        self._cursor.close()


_Check = Callable[[int], None]


class SqlStore(Store, QuerySource, schemes=("sqlite", "postgresql", "mysql", "mariadb")):
    """Save, load and query objects as rows of a SQL table.

    Args:
        url: a SQLAlchemy URL (``sqlite:jobs.db``, ``sqlite://`` in memory,
            ``postgresql+psycopg://...``, ``mysql+pymysql://...``), optionally
            with ``#table=NAME``.
        table_name: the table; wins over ``#table=``; default the row model's
            ``__tablename__``, else ``store``.
        idfactory: an :class:`IdFactory` issuing :class:`IntId` values; by
            default ids come from the database's counter table.
        extra_fields: GC3Pie's ``{sqlalchemy.Column: extractor}``; extractor
            errors leave the column NULL (logged).
        create: create missing tables; with ``False`` the store never writes schema.
        row_model: a SQLModel table class derived from :class:`StoreRow` whose
            extracted fields become typed, validated columns.
        protocol: pickle protocol of new records.
        allowed_classes: allow-list of classes records may name (``None``: any).
        signing_keys: secret keys; the first signs each record written (an
            HMAC-SHA256 of its id and payload in column ``_mac``), any verifies
            each record read, and a record without a valid MAC is refused
            (:class:`SignatureError`). ``None``: ``$TYPEDSTORE_SIGNING_KEYS``
            (comma-separated), if set; ``[]``: no signing. docs/security.md.
        engine_options: extra ``sqlalchemy.create_engine`` arguments.
        connect_timeout: seconds for connecting (:class:`ConnectTimeout`).
            Each timeout's ``None`` means the default of
            :mod:`typedstore.defaults`; see
            :class:`~typedstore.connections.Timeouts`.
        lock_timeout: seconds waiting for a row lock or SQLite's write lock
            (:class:`LockTimeout`).
        statement_timeout: seconds of a statement's run time on the server, 0
            for none (:class:`ServerTimeout`).
        read_timeout: seconds, the longest wait for a connected server's answer
            (:class:`ReadTimeout`; on PostgreSQL a client-side deadline,
            :mod:`typedstore.deadlines`).
        network_filesystem: SQLite: ``"warn"`` (once), ``"error"`` or
            ``"ignore"`` when the database file is on a network file system,
            where SQLite's locking is unreliable (:mod:`typedstore.mounts`);
            ``None``: :data:`~typedstore.defaults.NETWORK_FILESYSTEM`.
        gc3pie_compatible: share the table with GC3Pie 2.6.8: write ids into
            payloads as GC3Pie's ``IntId`` class (pickle protocol at most 3), so
            GC3Pie's ``load`` reads typedstore's records and its ``save`` of one
            updates that record's row; and take new ids from GC3Pie's counter
            file (``$GC3PIE_ID_FILE``, default ``~/.gc3/next_id.txt``, under
            GC3Pie's lock, moved past the largest id in the table and the
            database's counter, which is moved past them in turn), so GC3Pie
            processes writing the table never reissue one of typedstore's ids.
            ``None`` (default): on for a table GC3Pie created, read as it is
            or adopted (its ``state`` column is nullable:
            :attr:`typedstore.schema.TableState.gc3pie_layout`).
        **extra: accepted and ignored, for compatibility with ``FilesystemStore``.

    Attributes:
        engine (sqlalchemy.Engine): the store's engine.
        table (sqlalchemy.Table): the record table as this store uses it.
        row_model: the row model (``None`` for the base columns only).
        gc3pie_compatible (bool): payloads are written for GC3Pie to read.
    """

    def __init__(
        self,
        url: str | StoreUrl,
        table_name: str | None = None,
        idfactory: IdFactory | None = None,
        extra_fields: Mapping[sa.Column[Any], Callable[[Any], Any]] | None = None,
        create: bool = True,
        row_model: type[SQLModel] | None = None,
        protocol: int = DEFAULT_PROTOCOL,
        allowed_classes: Any = None,
        missing_classes: str = "error",
        signing_keys: Any = None,
        engine_options: Mapping[str, Any] | None = None,
        gc3pie_compatible: bool | None = None,
        connect_timeout: float | None = None,
        lock_timeout: float | None = None,
        statement_timeout: float | None = None,
        read_timeout: float | None = None,
        network_filesystem: str | None = None,
        conflicts: str = "error",
        **extra: Any,
    ) -> None:
        parsed = parse_store_url(url)
        if parsed.scheme == "file":
            raise StoreError(f"SqlStore needs a SQLAlchemy URL, got the path {parsed.redacted}")
        #: The store's timeouts (:class:`~typedstore.connections.Timeouts`).
        self.timeouts = Timeouts.resolve(connect_timeout, lock_timeout, statement_timeout,
                                         read_timeout)
        super().__init__(parsed, idfactory, protocol, allowed_classes, missing_classes,
                         signing_keys, conflicts)
        if self.idfactory.id_class is not IntId and not issubclass(self.idfactory.id_class, int):
            raise StoreError(f"{parsed.redacted}: SqlStore needs integer ids "
                             "(IdFactory(id_class=IntId))")
        self.row_model = row_model
        self.table_name = store_table_name(table_name, parsed.table, row_model)
        self._identity.stamp = self._describe()
        self._lock_wait = self.timeouts.lock
        self._ignore_options(extra)
        if parsed.scheme == "sqlite" and parsed.target.partition("?")[0] != f"{parsed.scheme}://":
            # As GC3Pie's make_sqlstore does: create the database file's folder.
            folder = os.path.dirname(sa.make_url(parsed.target).database or "")
            if folder:
                os.makedirs(folder, exist_ok=True)
                mounts.check(folder, f"SQLite store {parsed.redacted}",
                             network_filesystem or NETWORK_FILESYSTEM)
        self.engine = create_store_engine(parsed.target, self.timeouts,
                                          **dict(engine_options or {}))
        self._sqlite = is_sqlite(self.engine)
        # The store's own connection (record statements, transactions).
        self._link = StoreConnection(self.engine, self._describe, self.timeouts,
                                     self._statement_sources, self._txn_ids)
        metadata = new_metadata()
        wanted = build_table(self.table_name, metadata, row_model, extra_fields)
        self._counter = counter_table(metadata)
        self._counter_checked = False
        try:
            with self._link.translating(f"opening table {self.table_name!r}"):
                state = self._open_table(wanted, create, row_model, extra_fields)
        except BaseException:
            self.engine.dispose()
            raise
        if state.legacy:
            log.warning("%s: table %r has no typedstore bookkeeping columns (a GC3Pie table?); "
                        "using it without version checks until it is upgraded",
                        parsed.redacted, self.table_name)
            self.table = build_table(self.table_name, new_metadata(), row_model, extra_fields,
                                     bookkeeping=False, only=set(state.columns))
        else:
            self.table = wanted
        self._rows = RowBuilder(self.table, row_model, state.not_null)
        self._versioned = not state.legacy
        # A payload column narrower than typedstore's (GC3Pie's BLOB on MySQL, in a
        # table read with create=False): larger records are refused before sending.
        self._payload_limit = state.payload_limit if state.payload_limit is not None \
            else sys.maxsize
        self._payload_type = state.payload_type
        self.gc3pie_compatible = self._gc3pie_payloads = (
            state.gc3pie_layout if gc3pie_compatible is None else bool(gc3pie_compatible))
        # GC3Pie numbers its objects from its counter file and overwrites the row
        # of an id it issues again: sharing the table, take ids from that file.
        self._gc3pie_counter = Gc3PieCounter(floor=self._gc3pie_floor) \
            if self.gc3pie_compatible else None
        self._counter_exists: bool | None = None
        self._stmts = RecordStatements(self.table, self.engine.dialect, self._rows.names,
                                       self._versioned)
        self._is_mysql = self.engine.dialect.name in ("mysql", "mariadb")
        # Reference tracking (revision ts0005): the reference table and its statements.
        self._tracks_references = self._stmts.tracking
        self._references_known = False
        #: Records written without a version check whose references were not
        #: replaced, by the version this store knew of them (see _record_version).
        self._assumed_unreferencing: dict[Any, int] = {}
        #: Records whose references could not be read from their payloads.
        self._unscannable: dict[Any, str] = {}
        refs = refs_table(refs_table_name(self.table_name, self.engine.dialect.name),
                          new_metadata())
        quote = self.engine.dialect.identifier_preparer.quote
        self._q = {"table": quote(self.table_name), "refs": quote(refs.name),
                   "id": quote("id"), "data": quote("data"), "root": quote(ROOT_COLUMN)}
        ref_types = {"source": refs.c.source.type, "target": refs.c.target.type}
        self._refs_sql = {
            "delete": Compiled(refs.delete().where(
                refs.c.source == sa.bindparam("source", type_=refs.c.source.type)),
                self.engine.dialect, ref_types),
            "insert": Compiled(refs.insert().values(
                source=sa.bindparam("source", type_=refs.c.source.type),
                target=sa.bindparam("target", type_=refs.c.target.type)),
                self.engine.dialect, ref_types),
        }
        if self._signer is not None and not self._can_sign():
            self.engine.dispose()
            fix = typedstore_upgrade_command(parsed.text, self.table_name)
            raise SchemaError(
                f"{parsed.redacted}: signing keys were given, but table {self.table_name!r} "
                f"has no {MAC_COLUMN} column for the records' MACs (a GC3Pie table read "
                f"without adoption); adopt it with: {fix}", table=self.table_name, command=fix)
        self._counter_sql = self._compile_counter()
        self._deferred: tuple[Compiled, Mapping[str, Any], _Check | None] | None = None
        self._in_db_txn = False
        self._inserts: list[Any] = []
        # Taking a block of ids again after a lost connection is safe: numbers
        # of a block taken twice are gaps.
        self._sequence = BlockSequence(
            self._link.guard(self._fetch_block, "taking a block of ids", retry=True),
            ID_BLOCK_SIZE)
        self.idfactory = self.idfactory.with_sequence(self._sequence)

    def _open_table(self, wanted: sa.Table, create: bool, row_model: Any,
                    extra_fields: Any) -> TableState:
        """Check the table against ``wanted``; create or adopt it first when allowed.

        With ``create``: a missing table is created, a GC3Pie table adopted
        (bookkeeping columns added, payload column widened on MySQL/MariaDB),
        a table dropped by hand whose version table remained is created again,
        and a payload column narrower than typedstore's is widened. Returns
        the table's state. Raises SchemaError (with the command that fixes it)
        for a missing table with ``create=False``, a table behind or ahead of
        the code, or missing row-model columns.
        """
        assert self.url is not None
        url = self.url.text
        table = self.table_name
        try:
            with self.engine.connect() as conn:
                state: TableState | None = inspect_store(conn, table)
        except sa.exc.OperationalError as busy:
            if not create or classify(busy, self.engine.dialect) != OTHER:
                raise  # not a table being changed: the server is unreachable, or slow
            # MariaDB: another process is changing the table (error 1684):
            # look again under the schema lock, which it holds.
            log.debug("%s: table %r is being changed elsewhere: %s", self.url.redacted,
                      table, busy)
            state = None
        if state is not None:
            refuse_foreign(state, table, url)  # never adopt a table someone else made
        if state is None or (create and not self._ready(state, wanted, url)):
            state = self._prepare_table(table, url, row_model, extra_fields)
        if not state.exists and not create:
            if state.stale:
                fix = typedstore_upgrade_command(url, table)
                raise SchemaError(
                    f"{self.url.redacted}: table {table!r} does not exist, but its version "
                    f"table {version_table(table, self.engine.dialect)!r} says it is at "
                    f"{', '.join(state.revisions or ())} (the table was dropped by hand?); "
                    f"with create=False nothing is changed; create it again by opening the "
                    f"store with create=True or with: {fix}",
                    table=table, current=(state.revisions or (None,))[0], command=fix,
                )
            fix = upgrade_command(url, table)
            raise SchemaError(
                f"{self.url.redacted}: table {table!r} does not exist and create=False; "
                f"create it with: {fix}",
                table=table, command=fix,
            )
        check_store(state, wanted, url, row_model)
        return state

    def _prepare_table(self, table: str, url: str, row_model: Any, extra_fields: Any
                       ) -> TableState:
        """Create, adopt or widen the table, deciding under its schema lock.

        Another process may be doing the same work right now (MariaDB commits
        each DDL statement, so a half-adopted table is visible): the state is
        read again under the lock, which that process holds meanwhile.
        """
        with self.engine.connect().execution_options(sqlite_immediate=True) as conn, \
                schema_transaction(conn, table):
            state = inspect_store(conn, table)
            if not state.exists or state.revisions is None:
                if state.exists:
                    log.warning("%s: adopting table %r (no typedstore version table: "
                                "written by GC3Pie?): adding typedstore's bookkeeping "
                                "columns", redact(url), table)
                # migrate() also clears a stale version table and widens the payload.
                migrate(conn, url, table)
                add_missing_columns(conn, table, row_model, extra_fields)
            elif state.payload_limit is not None:
                # Adopted by a typedstore that kept GC3Pie's BLOB.
                widen_payload(conn, table)
        with self.engine.connect() as conn:
            return inspect_store(conn, table)

    @staticmethod
    def _ready(state: TableState, wanted: sa.Table, url: str) -> bool:
        """Whether the table needs no schema work: it exists, is typedstore's, at the
        code's revision, with every wanted column and a wide enough payload column."""
        # No revision yet (MariaDB: Alembic's version table is committed empty
        # before the first revision runs) or no bookkeeping columns: another
        # process may be adopting it right now; look again under the lock.
        if not state.exists or not state.revisions or state.legacy \
                or state.payload_limit is not None:
            return False
        try:
            check_store(state, wanted, url)
        except SchemaError:
            return False
        return True

    def _default_idfactory(self) -> IdFactory:
        return IdFactory(id_class=IntId)

    # ------------------------------------------------------------ connection

    # The store's own connection lives in self._link (typedstore.connections):
    # opened on first use, reopened when the server ended it, its driver errors
    # turned into typedstore's. Its cursor stays the same object throughout.

    def _driver(self) -> Any:
        """The cursor of the store's own connection (autocommit, opened on first use)."""
        return self._link.cursor

    def _run(self, compiled: Compiled, values: Mapping[str, Any]) -> Any:
        cursor = self._link.cursor
        cursor.execute(compiled.sql, compiled.params(values))
        return cursor

    def _sql(self, text: str) -> None:
        self._link.cursor.execute(text)

    def _statement_sources(self) -> list[Any]:
        """The precompiled statements, for naming them in error messages."""
        return [getattr(self, "_stmts", {}), getattr(self, "_counter_sql", {})]

    def _txn_ids(self) -> list[Any]:
        """The records the open transaction wrote, for error messages."""
        txn = self._txn
        ids = [getattr(obj, "persistent_id", None) for obj, *_ in getattr(txn, "undo", ())]
        return [id_ for id_ in dict.fromkeys(ids) if id_ is not None]

    # ------------------------------------------------------------ transactions

    def _begin(self) -> None:
        self._deferred = None
        self._in_db_txn = False

    def _open_db_txn(self) -> None:
        """Start a real transaction and replay the deferred statement in it."""
        if self._in_db_txn:
            return
        self._link.begin("BEGIN IMMEDIATE" if self._sqlite else "BEGIN")
        self._in_db_txn = True
        deferred, self._deferred = self._deferred, None
        if deferred is not None:
            self._execute_now(*deferred)

    def _execute_now(self, compiled: Compiled, params: Any, check: _Check | None) -> None:
        cursor = self._link.cursor
        cursor.execute(compiled.sql, params)
        if check is not None:
            check(cursor.rowcount)

    def _write_statement(self, compiled: Compiled, params: Any,
                         check: _Check | None = None) -> None:
        """Run (or defer, or batch) a write; ``params`` are the driver's parameters."""
        if self._txn is None:
            self._execute_now(compiled, params, check)
        elif not self._in_db_txn and self._deferred is None:
            self._deferred = (compiled, params, check)
        else:
            self._open_db_txn()
            if compiled is self._stmts.insert:
                # Inserts of new ids cannot conflict: batch them (executemany).
                self._inserts.append(params)
                if len(self._inserts) >= STREAM_BATCH_SIZE:
                    self._flush_inserts()
            else:
                self._flush_inserts()
                self._execute_now(compiled, params, check)

    def _flush_inserts(self) -> None:
        """Run the batched inserts (before anything that must see them)."""
        if self._inserts:
            batch, self._inserts = self._inserts, []
            self._link.cursor.executemany(self._stmts.insert.sql, batch)

    def _commit(self) -> None:
        if self._in_db_txn:
            self._flush_inserts()
            self._link.commit()
            self._in_db_txn = False
        elif self._deferred is not None:
            deferred, self._deferred = self._deferred, None
            self._execute_now(*deferred)

    def _rollback(self) -> None:
        self._deferred = None
        self._inserts = []
        self._assumed_unreferencing.clear()
        self._sequence.reset()
        if self._in_db_txn:
            self._in_db_txn = False
        self._link.rollback()  # never raises for a connection that is gone

    def _flush_for_read(self) -> None:
        """Reads inside a transaction must see its deferred and batched writes."""
        if self._deferred is not None:
            self._open_db_txn()
        self._flush_inserts()

    # ------------------------------------------------------------ ids

    def _compile_counter(self) -> dict[str, Compiled]:
        c = self._counter.c
        dialect = self.engine.dialect
        types = {"name": c.table_name.type, "n": c.next_id.type, "first": c.next_id.type}
        name = sa.bindparam("name", type_=c.table_name.type)
        return {
            "bump": Compiled(
                self._counter.update().where(c.table_name == name)
                .values(next_id=c.next_id + sa.bindparam("n", type_=c.next_id.type)),
                dialect, types),
            "get": Compiled(sa.select(c.next_id).where(c.table_name == name), dialect, types),
            "init": Compiled(
                self._counter.insert().values(table_name=name,
                                              next_id=sa.bindparam("first", type_=c.next_id.type)),
                dialect, types),
            "max": Compiled(sa.select(sa.func.max(self.table.c.id)), dialect, types),
            "raise": Compiled(
                self._counter.update()
                .where(c.table_name == name,
                       c.next_id < sa.bindparam("first", type_=c.next_id.type))
                .values(next_id=sa.bindparam("first", type_=c.next_id.type)),
                dialect, types),
        }

    def _fetch_block(self, block: int) -> int:
        """Take ``block`` ids from the counter table (GC3Pie's counter file in
        GC3Pie-compatible mode); return the first."""
        if self._gc3pie_counter is not None:
            first = self._gc3pie_counter(block)
            self._raise_counter(first + block)
            return first
        if not self._counter_checked:
            with self.engine.connect() as conn:
                if not self._table_exists(conn, self._counter.name):
                    fix = upgrade_command(self.url.text if self.url else "", self.table_name)
                    raise SchemaError(
                        f"{self._describe()}: no id counter table {self._counter.name!r} (a "
                        f"GC3Pie table opened with create=False?); adopt it with: {fix}",
                        table=self.table_name, command=fix,
                    )
            self._counter_checked = True
        if self._sqlite and self._txn is not None:
            # SQLite has one writer at a time: a second connection would wait for
            # our own transaction. Take the ids inside it; a rollback returns
            # them to the counter, and _rollback drops the cached block.
            self._open_db_txn()
            return self._bump_counter(self._driver(), block)
        for attempt in range(1, COUNTER_ATTEMPTS + 1):
            try:
                with self.engine.connect().execution_options(sqlite_immediate=True) as conn, \
                        conn.begin():
                    driver: Any = conn.connection.driver_connection
                    return self._bump_counter(driver.cursor(), block)
            except _CounterRaceLost as lost:
                log.debug("%s: creating the id counter row raced (attempt %d): %s",
                          self._describe(), attempt, lost.__cause__)
        raise SaveError(f"{self._describe()}: could not create the id counter row in "
                        f"{COUNTER_ATTEMPTS} attempts (concurrent creators kept deadlocking)")

    @staticmethod
    def _table_exists(conn: sa.Connection, name: str) -> bool:
        """Whether table ``name`` exists, asked of the table itself.

        Not through the catalogue: MariaDB's information_schema skips a table
        while another connection runs DDL on it (error 1684), so an inspector
        can report a table missing that another process is adopting.
        """
        quoted = conn.dialect.identifier_preparer.quote(name)
        try:
            with conn.begin_nested() if conn.in_transaction() else conn.begin():
                conn.exec_driver_sql(f"SELECT 1 FROM {quoted} WHERE 1 = 0").close()
        except sa.exc.DBAPIError:
            return False
        return True

    def _has_counter(self) -> bool:
        if self._counter_exists is None:
            with self.engine.connect() as conn:
                self._counter_exists = self._table_exists(conn, self._counter.name)
        return self._counter_exists

    def _gc3pie_floor(self) -> int:
        """The smallest id GC3Pie's counter may issue to this store: above every id
        in the table and every id the database's counter handed out (called under
        GC3Pie's lock). Read on the store's own connection (SQLite's write lock may
        be ours); writes it holds back need not be seen: their ids came from
        earlier blocks, below the counter file's number already."""
        sql = self._counter_sql
        cursor = self._run(sql["max"], {})
        floor = int(cursor.fetchone()[0] or 0) + 1
        if self._has_counter():
            row = self._run(sql["get"], {"name": self.table_name}).fetchone()
            if row is not None:
                floor = max(floor, int(row[0]))
        return floor

    def _raise_counter(self, next_id: int) -> None:
        """Move the database's counter of this table up to ``next_id``, so stores
        not in GC3Pie-compatible mode never issue the ids GC3Pie's counter gave.

        Committed at once on a connection of its own, so that the counter row is
        not locked until the store's transaction ends; on SQLite on the store's
        connection (a second one would wait for our own write lock).
        """
        if not self._has_counter():
            return
        raise_ = self._counter_sql["raise"]
        values = {"name": self.table_name, "first": next_id}
        if self._sqlite:
            self._run(raise_, values)
            return
        with self.engine.connect() as conn, conn.begin():
            driver: Any = conn.connection.driver_connection
            with closing(driver.cursor()) as cursor:
                cursor.execute(raise_.sql, raise_.params(values))

    def _bump_counter(self, cursor: Any, n: int) -> int:
        sql = self._counter_sql
        values = {"name": self.table_name, "n": n}
        cursor.execute(sql["bump"].sql, sql["bump"].params(values))
        if cursor.rowcount == 0:
            cursor.execute(sql["max"].sql, sql["max"].params({}))
            largest = cursor.fetchone()[0] or 0
            # A savepoint, so that losing the race to create the row leaves the
            # transaction usable (PostgreSQL aborts a transaction on any error).
            cursor.execute("SAVEPOINT typedstore_counter")
            try:
                cursor.execute(sql["init"].sql, sql["init"].params(
                    {"name": self.table_name, "first": largest + 1 + n}))
            except Exception as exc:  # another process created the row first
                log.debug("counter row for %s created concurrently (%s); retrying",
                          self.table_name, exc)
                try:
                    cursor.execute("ROLLBACK TO SAVEPOINT typedstore_counter")
                except Exception as gone:
                    # MySQL ends the whole transaction on a deadlock (both
                    # creators held gap locks): start it again.
                    raise _CounterRaceLost from gone
                cursor.execute(sql["bump"].sql, sql["bump"].params(values))
            else:
                cursor.execute("RELEASE SAVEPOINT typedstore_counter")
                return int(largest) + 1
        cursor.execute(sql["get"].sql, sql["get"].params({"name": self.table_name}))
        return int(cursor.fetchone()[0]) - n

    def _coerce_id(self, id_: Any) -> Any:
        """``id_`` as an :class:`IntId`: an ``int`` (not a ``bool``) or a string of
        ASCII digits, nothing else (``1.9`` is not record 1, ``True`` not 1).

        Raises TypeError for another type, NotFoundError (a LoadError) for a
        string or number that cannot be a stored id; before any statement runs.
        """
        if type(id_) is IntId and 0 <= id_ < 2**63:
            return id_
        if isinstance(id_, int) and not isinstance(id_, bool):
            number = int(id_)
        elif isinstance(id_, str):
            if not (id_.isascii() and id_.isdigit()):
                raise NotFoundError(f"{self._describe()}: {id_!r} is not an id of this store "
                                    "(ids are integers, or strings of their digits)", id_)
            number = int(id_)
        else:
            raise TypeError(f"{self._describe()}: id {id_!r} is a {type(id_).__name__}; ids of "
                            "this store are integers (or strings of their digits)")
        if not 0 <= number < 2**63:
            raise NotFoundError(f"{self._describe()}: {id_!r} is not an id of this store "
                                "(outside 0 .. 2**63-1)", id_)
        return new_int_id(number)

    def _describe(self) -> str:
        assert self.url is not None
        return f"{redact(self.url.target)}#table={self.table_name}"

    # ------------------------------------------------------------ records

    def _read(self, id_: Any) -> Record:
        if self._txn is not None:
            self._flush_for_read()
        read = self._stmts.read
        cursor = self._driver()
        cursor.execute(read.sql, read.single(int(id_)))
        row = cursor.fetchone()
        if row is None:
            raise NotFoundError(f"{self._describe()}: no record {id_}", id_)
        data, version, stored_checksum, mac = row
        if data is None:
            raise LoadError(f"{self._describe()}: record {id_} has no data", id_)
        return Record(bytes(data), version, stored_checksum, mac)

    def _write(
        self, id_: Any, obj: Any, payload: bytes, *, new: bool, expected: int | None,
        must_exist: bool, root: bool = False,
    ) -> int | None:
        if len(payload) > self._payload_limit:
            raise self._too_large(id_, obj, len(payload))
        # One list in the order of RecordStatements.source, then one pass to
        # the driver's parameters.
        stmts = self._stmts
        values: list[Any] = [int(id_), payload]
        if stmts.integrity:
            stored_checksum, mac = self._seal(id_, payload)
            if self.gc3pie_compatible:
                # GC3Pie rewrites rows without touching the checksum: one kept
                # here would make its records look damaged.
                stored_checksum = None  # type: ignore[assignment]
            values += [stored_checksum, mac]
        if stmts.tracking:
            values.append(ROOT if root else CHILD)
        values += self._rows.values(obj, id_)
        if self._versioned:
            values += [now(), expected]
        if new:
            self._write_statement(stmts.insert, stmts.insert_params(values))
            return 1 if self._versioned else None
        if must_exist:
            self._write_statement(stmts.replace, stmts.replace_params(values),
                                  self._record_version(id_, must_exist=True))
            return None
        if expected is not None and self._versioned:
            self._write_statement(stmts.update_checked, stmts.update_checked_params(values),
                                  self._must_match(id_, expected))
            return expected + 1
        self._write_statement(stmts.upsert, stmts.upsert_params(values),
                              self._record_version(id_, must_exist=False)
                              if stmts.reports_version else None)
        return None

    def _can_sign(self) -> bool:
        return self._stmts.integrity and self._versioned

    def _store_mac(self, id_: Any, record: Record, mac: str) -> bool:
        statement = self._stmts.store_mac
        cursor = self._link.cursor
        cursor.execute(statement.sql, statement.params(
            {MAC_COLUMN: mac, "k_id": int(id_), "k_version": record.version}))
        return bool(cursor.rowcount)

    def _object_columns(self) -> list[Any]:
        c = self.table.c
        sealed = [c[CHECKSUM_COLUMN], c[MAC_COLUMN]] if self._stmts.integrity \
            else [sa.null(), sa.null()]
        return [c.id, c.data, c.version if "version" in c else sa.null(), *sealed]

    def _too_large(self, id_: Any, obj: Any, size: int) -> SaveError:
        """The error for a payload the table's payload column cannot hold."""
        assert self.url is not None
        fix = typedstore_upgrade_command(self.url.text, self.table_name)
        return SaveError(
            f"{self._describe()}: record {id_} ({type(obj).__name__}) is {size} bytes "
            f"pickled, more than the {self._payload_limit} bytes column "
            f"{self.table_name}.data ({self._payload_type}) holds; nothing was written. "
            f"Adopt the table to widen the column to LONGBLOB: open the store with "
            f"create=True, or run: {fix}",
            id_, "data",
        )

    def _record_version(self, id_: Any, must_exist: bool) -> _Check:
        """After a replace or upsert: record the version it wrote in the identity
        map (the next save of the object is checked against it); a replace that
        matched no row raises NotFoundError."""
        stmts = self._stmts
        if not stmts.reports_version:
            return self._must_match(id_, None)

        def check(rowcount: int) -> None:
            version = stmts.returned_version(self._driver(), rowcount)
            assumed = self._assumed_unreferencing.pop(id_, None)
            if version is None:
                if must_exist:
                    raise NotFoundError(f"{self._describe()}: no record {id_} to replace", id_)
                return
            self._identity.set_version(id_, version)
            if assumed is not None and version != assumed + 1:
                # It replaced a version this store never saw, which may have
                # referenced records: its references go (in the same transaction,
                # or right after an autocommit write; a stale one left by a crash
                # in between keeps a record alive, never loses one).
                delete = self._refs_sql["delete"]
                self._link.cursor.execute(delete.sql, delete.single(int(id_)))

        return check

    def _must_match(self, id_: Any, expected: int | None) -> _Check:
        def check(rowcount: int) -> None:
            if rowcount:
                return
            if expected is None:
                raise NotFoundError(f"{self._describe()}: no record {id_} to replace", id_)
            row = self._run(self._stmts.read_version, {"k_id": int(id_)}).fetchone()
            found = None if row is None else row[0]
            what = "removed" if row is None else f"changed (now version {found})"
            raise ConflictError(
                f"{self._describe()}: record {id_} was {what} by another writer since this "
                f"store read version {expected}; load it again and reapply the change",
                [id_], expected, found,
            )

        return check

    def _delete(self, id_: Any) -> None:
        def check(rowcount: int) -> None:
            if not rowcount:
                raise NotFoundError(f"{self._describe()}: no record {id_} to remove", id_)

        self._write_statement(self._stmts.delete, self._stmts.delete.single(int(id_)), check)

    def _current_versions(self, ids: Sequence[Any]) -> dict[Any, int | None] | None:
        if not self._versioned:
            return None  # a GC3Pie table not adopted: no versions to compare
        t = self.table
        found: dict[Any, int | None] = {}
        for start in range(0, len(ids), STREAM_BATCH_SIZE):
            chunk = [int(i) for i in ids[start:start + STREAM_BATCH_SIZE]]
            for batch in self._run_select(sa.select(t.c.id, t.c.version)
                                          .where(t.c.id.in_(chunk)), named=False):
                found.update((IntId(id_), version) for id_, version in batch)
        return found

    def _ids(self) -> list[Any]:
        if self._txn is not None:
            self._flush_for_read()
        cursor = self._run(self._stmts.ids, {})
        # Plain ints, as GC3Pie's list() gave (IntId is an int: they compare equal).
        return [id_ for (id_,) in cursor]

    # ------------------------------------------------------------ references

    # The reference table (typedstore.references) is written on the store's own
    # connection in the record's transaction. Id lists are written into the SQL
    # as integer literals: every id went through _coerce_id (an int), and a
    # statement per list length would not be reused anyway.

    def _locking(self, sql: str, exclusive: bool = False) -> str:
        """``sql`` as a locking read inside a transaction on a server (whose
        plain reads may see an older snapshot: MariaDB's REPEATABLE READ);
        SQLite has one writer at a time and needs none."""
        if self._sqlite or self._own_txn() is None:
            return sql
        if exclusive:
            return f"{sql} FOR UPDATE"
        return f"{sql} {'LOCK IN SHARE MODE' if self._is_mysql else 'FOR SHARE'}"

    def _execute(self, cursor: Any, sql: str, params: Any = None) -> Any:
        """Run ``sql`` on ``cursor``; a statement without parameters gets an empty
        tuple on the drivers with ``%s`` placeholders, so that they read the
        ``%%`` SQLAlchemy writes for a percent sign in a quoted name
        (``per%cent``) as one."""
        if params is None and not self._sqlite:
            params = ()
        if params is None:
            cursor.execute(sql)
        else:
            cursor.execute(sql, params)
        return cursor

    def _fetch(self, sql: str) -> list[Any]:
        """Rows of ``sql``: inside this thread's transaction on its connection
        (seeing its writes), else on a pooled connection."""
        if self._own_txn() is not None:
            self._open_db_txn()
            self._flush_inserts()
            cursor = self._link.new_cursor()
            try:
                return list(self._execute(cursor, sql).fetchall())
            except Exception:
                self._doom_own_txn()
                raise
            finally:
                cursor.close()
        with self._link.translating("reading references"), self.engine.connect() as conn:
            raw: Any = conn.connection.driver_connection
            with closing(raw.cursor()) as cursor:
                return list(self._execute(cursor, sql).fetchall())

    def _change(self, sql: str, params: Any = None, many: list[Any] | None = None) -> int:
        """Run a change (with ``params``, or once per ``many``) in this thread's
        open transaction; return its row count."""
        self._open_db_txn()
        self._flush_inserts()
        cursor = self._link.cursor
        if many is not None:
            cursor.executemany(sql, many)
        else:
            self._execute(cursor, sql, params)
        return int(cursor.rowcount)

    @staticmethod
    def _id_list(ids: Iterable[Any]) -> str:
        return ", ".join(str(int(i)) for i in ids)

    def _write_references(self, id_: Any, refs: list[Any], held: list[Any],
                          fresh: bool, assumed: int | None = None) -> None:
        if not refs and fresh:
            if assumed is not None:
                # Checked when the write's new version is known (maybe at commit,
                # as one autocommit statement): see _record_version.
                self._assumed_unreferencing[id_] = assumed
            return
        sql = self._refs_sql
        if not fresh or assumed is not None:
            self._change(sql["delete"].sql, sql["delete"].single(int(id_)))
        if refs:
            insert = sql["insert"]
            self._change(insert.sql, many=[insert.params({"source": int(id_), "target": int(t)})
                                           for t in refs])
        if held:
            self._hold(id_, held)

    def _hold(self, id_: Any, held: list[Any]) -> None:
        """Check that the records ``id_`` references without writing them are still
        stored, keep them so until the transaction ends (a pack or a cascading
        remove waits for it), and mark each as referenced."""
        q = self._q
        for start in range(0, len(held), STREAM_BATCH_SIZE):
            chunk = held[start:start + STREAM_BATCH_SIZE]
            rows = self._fetch(self._locking(
                f"SELECT {q['id']}, {q['root']} FROM {q['table']} "
                f"WHERE {q['id']} IN ({self._id_list(chunk)})"))
            found = {int(r[0]): r[1] for r in rows}
            missing = [h for h in chunk if int(h) not in found]
            if missing:
                shown = ", ".join(map(str, missing[:10]))
                raise ConflictError(
                    f"{self._describe()}: record {id_} references record(s) {shown}, which "
                    "another writer removed since this store read them; nothing of the "
                    "transaction was written", missing)
            fresh = [i for i, root in found.items() if root == ROOT]
            if fresh:
                self._change(f"UPDATE {q['table']} SET {q['root']} = {REFERENCED_ROOT} "
                             f"WHERE {q['id']} IN ({self._id_list(fresh)}) "
                             f"AND {q['root']} = {ROOT}")

    def _referrers_of(self, ids: Sequence[Any]) -> dict[Any, set[Any]]:
        q = self._q
        found: dict[Any, set[Any]] = {}
        for start in range(0, len(ids), STREAM_BATCH_SIZE):
            chunk = ids[start:start + STREAM_BATCH_SIZE]
            rows = self._fetch(self._locking(
                f"SELECT r.source, r.target FROM {q['refs']} r JOIN {q['table']} s "
                f"ON s.{q['id']} = r.source WHERE r.target IN ({self._id_list(chunk)})"))
            for source, target in rows:
                found.setdefault(new_int_id(target), set()).add(new_int_id(source))
        return found

    def _children_of(self, ids: Sequence[Any]) -> dict[Any, list[Any]]:
        q = self._q
        found: dict[Any, list[Any]] = {}
        for start in range(0, len(ids), STREAM_BATCH_SIZE):
            chunk = ids[start:start + STREAM_BATCH_SIZE]
            rows = self._fetch(self._locking(
                f"SELECT source, target FROM {q['refs']} "
                f"WHERE source IN ({self._id_list(chunk)})"))
            for source, target in rows:
                found.setdefault(new_int_id(source), []).append(new_int_id(target))
        return found

    def _lock_records(self, ids: Sequence[Any]) -> None:
        if self._sqlite or not ids:
            return
        q = self._q
        for start in range(0, len(ids), STREAM_BATCH_SIZE):
            self._fetch(self._locking(
                f"SELECT {q['id']} FROM {q['table']} "
                f"WHERE {q['id']} IN ({self._id_list(ids[start:start + STREAM_BATCH_SIZE])})",
                exclusive=True))

    def _delete_unreferenced(self, id_: Any, force: bool) -> None:
        if force:
            self._delete(id_)
            return
        # A root no record ever referenced goes in one statement (on its own:
        # as an autocommit statement, as before reference tracking).
        quick = self._stmts.delete_unreferenced
        txn = self._txn
        assert txn is not None
        if not self._in_db_txn and self._deferred is None and txn.depth == 1 and not txn.undo:
            cursor = self._link.cursor
            cursor.execute(quick.sql, quick.single(int(id_)))
            if cursor.rowcount:
                return
        else:
            if self._change(quick.sql, quick.single(int(id_))):
                return
        # Referenced at some time (or not known): delete, which locks the row
        # against new references, then look for the records referring to it.
        self._open_db_txn()
        self._delete(id_)
        self._refuse_referenced([id_])

    def _repair_references(self, source: Any) -> list[Any]:
        # A locking read: the newest committed payload (a plain read may see the
        # transaction's snapshot, older than the reference just found: MariaDB).
        q = self._q
        rows = self._fetch(self._locking(
            f"SELECT {q['data']} FROM {q['table']} WHERE {q['id']} = {int(source)}"))
        if not rows or rows[0][0] is None:
            return []
        refs = [self._coerce_id(r) for r in referenced_ids(bytes(rows[0][0]), source)]
        recorded = self._children_of([source]).get(source, [])
        if set(recorded) != set(refs):
            log.warning("%s: the references recorded for record %s were not its payload's "
                        "(rewritten by GC3Pie, or by last-writer-wins); recorded again",
                        self._describe(), source)
            self._write_references(source, refs, [], fresh=False)
        return refs

    def _untracked(self, what: str) -> StoreError:
        assert self.url is not None
        fix = typedstore_upgrade_command(self.url.text, self.table_name)
        return SchemaError(
            f"{self._describe()}: {what} needs reference tracking, which table "
            f"{self.table_name!r} does not have yet (a GC3Pie table read without "
            f"adoption); adopt it with: {fix}", table=self.table_name, command=fix)

    def _shared_with_gc3pie(self) -> bool:
        return bool(self.gc3pie_compatible)

    def _know_references(self) -> None:
        if not self._references_known:
            self._scan_references(everything=False)
            self._references_known = True

    def _refuse_unknown_references(self) -> None:
        # Gone since it was found (removed with force=True): no longer in the way.
        gone = [i for i in self._unscannable
                if not self._fetch(f"SELECT 1 FROM {self._q['table']} "
                                   f"WHERE {self._q['id']} = {int(i)}")]
        for id_ in gone:
            del self._unscannable[id_]
        if self._unscannable:
            shown = "; ".join(f"{i}: {why}" for i, why in list(self._unscannable.items())[:5])
            raise StoreError(
                f"{self._describe()}: pack cannot know what {len(self._unscannable)} "
                f"record(s) reference, so it would risk removing what they hold: {shown}. "
                "Restore them, or remove them with remove(id, force=True)")

    def _scan_references(self, everything: bool) -> int:
        """Read references from payloads in batches, each record locked while its
        references are recorded (a writer's newer references are never
        overwritten by older ones); inside this thread's transaction if one is
        open, else a transaction per batch."""
        q = self._q
        unknown = "" if everything else f" WHERE {q['root']} IS NULL"
        ids = [row[0] for row in self._fetch(
            f"SELECT {q['id']} FROM {q['table']}{unknown} ORDER BY {q['id']}")]
        scanned = 0
        for start in range(0, len(ids), PACK_BATCH):
            chunk = ids[start:start + PACK_BATCH]
            if self._own_txn() is not None:
                scanned += self._scan_batch(chunk, everything)
            else:
                with self.transaction():
                    scanned += self._scan_batch(chunk, everything)
        if scanned:
            log.info("%s: read the references of %d record(s) from their payloads",
                     self._describe(), scanned)
        return scanned

    def _scan_batch(self, chunk: list[Any], everything: bool) -> int:
        q = self._q
        unknown = "" if everything else f" AND {q['root']} IS NULL"
        rows = self._fetch(self._locking(
            f"SELECT {q['id']}, {q['data']} FROM {q['table']} "
            f"WHERE {q['id']} IN ({self._id_list(chunk)}){unknown}", exclusive=True))
        edges: list[tuple[int, int]] = []
        targets: set[int] = set()
        done = []
        for id_, data in rows:
            try:
                if data is None:
                    raise LoadError(f"record {id_} has no data", id_)
                refs = [int(self._coerce_id(r)) for r in referenced_ids(bytes(data), id_)]
            except (StoreError, TypeError) as exc:
                # Left not known (NULL): a root for pack, which refuses to run
                # while such records exist; other operations go on.
                why = str(exc).removeprefix(f"{self._describe()}: ")
                if self._unscannable.get(new_int_id(id_)) != why:
                    log.warning("%s: the references of record %s cannot be read (%s); pack "
                                "refuses to run until it is restored or removed with "
                                "force=True", self._describe(), id_, why)
                self._unscannable[new_int_id(id_)] = why
                continue
            self._unscannable.pop(new_int_id(id_), None)
            done.append(int(id_))
            edges += [(int(id_), t) for t in dict.fromkeys(refs)]
            targets.update(refs)
        if not done:
            return 0
        listed = self._id_list(done)
        self._change(f"DELETE FROM {q['refs']} WHERE source IN ({listed})")
        if edges:
            insert = self._refs_sql["insert"]
            self._change(insert.sql, many=[insert.params({"source": s, "target": t})
                                           for s, t in edges])
        # Not known: a root (pack keeps it) that may be referenced.
        self._change(f"UPDATE {q['table']} SET {q['root']} = {REFERENCED_ROOT} "
                     f"WHERE {q['id']} IN ({listed}) AND {q['root']} IS NULL")
        if targets:
            self._change(f"UPDATE {q['table']} SET {q['root']} = {REFERENCED_ROOT} "
                         f"WHERE {q['id']} IN ({self._id_list(sorted(targets))}) "
                         f"AND {q['root']} = {ROOT}")
        return len(done)

    def _pack(self, batch_size: int, bar: Any) -> PackReport:
        """Mark (a recursive query from the roots into a temporary table) and
        sweep, in one transaction. On a server, the records found dead are then
        locked (waiting for writers that reference them) and the mark is made
        again: only records still dead are removed, and no writer can reference
        them until the pack commits (it gets ConflictError after)."""
        q = self._q
        link = self._link
        live, dead = "typedstore_pack_live", "typedstore_pack_dead"
        temporary = "TEMP" if self._sqlite else "TEMPORARY"
        drop = "DROP TEMPORARY TABLE" if self._is_mysql else "DROP TABLE"
        report = PackReport()
        cursor = link.cursor

        def run(sql: str, params: Any = None) -> Any:
            return self._execute(cursor, sql, params)

        # Each batch is a range of the dead ids, bound as parameters: one
        # statement text for every batch (the drivers' statement caches stay
        # small, so memory does not grow with the store).
        mark_ = "?" if self._sqlite else "%s"
        in_batch = f"IN (SELECT id FROM {dead} WHERE id >= {mark_} AND id <= {mark_})"

        # The roots' ids as the reference table's BIGINT (GC3Pie's id column is
        # an INTEGER; PostgreSQL wants one type through the recursion).
        bigint = "SIGNED" if self._is_mysql else "BIGINT"

        def mark() -> None:
            run(f"DELETE FROM {live}")
            run(f"INSERT INTO {live} (id) WITH RECURSIVE reach (id) AS ("
                f"SELECT CAST({q['id']} AS {bigint}) FROM {q['table']} "
                f"WHERE {q['root']} IS NULL OR {q['root']} <> {CHILD} "
                f"UNION SELECT r.target FROM {q['refs']} r JOIN reach ON r.source = reach.id) "
                f"SELECT id FROM reach")

        with link.translating("packing"):
            for name in (live, dead):
                run(f"{drop} IF EXISTS {name}")
            if self._is_mysql:
                run("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            link.begin("BEGIN IMMEDIATE" if self._sqlite else "BEGIN")
            try:
                for name in (live, dead):
                    run(f"CREATE {temporary} TABLE {name} (id BIGINT PRIMARY KEY)")
                mark()
                run(f"INSERT INTO {dead} (id) SELECT t.{q['id']} FROM {q['table']} t "
                    f"WHERE t.{q['root']} = {CHILD} AND NOT EXISTS "
                    f"(SELECT 1 FROM {live} l WHERE l.id = t.{q['id']})")
                if not self._sqlite:
                    run(f"SELECT t.{q['id']} FROM {q['table']} t JOIN {dead} d "
                        f"ON d.id = t.{q['id']} FOR UPDATE").fetchall()
                    mark()
                    run(f"DELETE FROM {dead} WHERE id IN (SELECT id FROM {live})")
                total = int(run(f"SELECT COUNT(*) FROM {dead}").fetchone()[0])
                bar.total(total)
                last = -1
                while True:
                    batch = [int(r[0]) for r in run(
                        f"SELECT id FROM {dead} WHERE id > {mark_} ORDER BY id "
                        f"LIMIT {int(batch_size)}", (last,)).fetchall()]
                    if not batch:
                        break
                    bounds = (batch[0], batch[-1])
                    last = batch[-1]
                    run(f"DELETE FROM {q['refs']} WHERE source {in_batch}", bounds)
                    removed = run(f"DELETE FROM {q['table']} WHERE {q['id']} {in_batch} "
                                  f"AND {q['root']} = {CHILD}", bounds).rowcount
                    report.removed += int(removed)
                    room = PACK_SAMPLE - len(report.sample)
                    if room > 0:
                        report.sample += [new_int_id(i) for i in batch[:room]]
                    for id_ in batch:
                        self._identity.discard(new_int_id(id_))
                    bar.advance(len(batch))
                # References of records gone (GC3Pie removes rows without them).
                run(f"DELETE FROM {q['refs']} WHERE NOT EXISTS (SELECT 1 FROM {q['table']} t "
                    f"WHERE t.{q['id']} = {q['refs']}.source)")
                report.kept = int(run(f"SELECT COUNT(*) FROM {q['table']}").fetchone()[0])
                for name in (live, dead):
                    run(f"{drop} {name}")
                link.commit()
            except BaseException:
                link.rollback()
                raise
        return report

    # ------------------------------------------------------------ queries

    def query(self, *conditions: Any, **equal: Any) -> Query:
        """Rows matching every condition (``JobRow.cores > 8``) and ``column=value`` pair.

        See :class:`~typedstore.query.Query` for ordering, limits, counting,
        streaming, and getting the loaded objects instead of rows.
        """
        return Query(self, conditions, equal)

    def _run_select(self, statement: sa.Select[Any], named: bool = True
                    ) -> Iterator[Sequence[Any]]:
        """Stream the rows of a query, in batches.

        Inside a transaction of the calling thread: on this store's own
        connection, so the query sees the transaction's writes. Otherwise
        (another thread's open transaction included: its writes are not
        committed) on a pooled driver connection, rows fetched as they are
        read (:meth:`_streaming_cursor`; SQLAlchemy's result machinery would
        cost more per row than the database's own work).
        """
        if self._own_txn() is not None:
            self._open_db_txn()
            self._flush_inserts()
            # Not the store's cursor: loads may run while the caller iterates.
            try:
                yield from self._raw_select(statement, named, self._link.new_cursor())
            except Exception:
                self._doom_own_txn()
                raise
        elif isinstance(self.engine.pool, sa.pool.StaticPool):
            # An in-memory database has one connection, the store's own: read
            # under the store's lock (never during another thread's open
            # transaction) and hand the rows out after releasing it.
            with self._lock:
                batches = list(self._raw_select(statement, named, self._link.new_cursor()))
            yield from batches
        else:
            # A pooled connection, replaced (and the query run again) if it
            # turns out dead before the first rows; errors translated.
            yield from self._link.stream(lambda connection: self._raw_select(
                statement, named, self._streaming_cursor(connection)))

    def _streaming_cursor(self, connection: Any) -> Any:
        """A cursor that fetches rows from the server as they are read."""
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            return _PsycopgStream(connection.cursor())
        if dialect in ("mysql", "mariadb"):
            import pymysql.cursors

            return connection.cursor(pymysql.cursors.SSCursor)
        return connection.cursor()  # SQLite steps through rows as they are read

    def _raw_select(self, statement: sa.Select[Any], named: bool, cursor: Any
                    ) -> Iterator[list[Any]]:
        """Run a SQLAlchemy select on a driver cursor (closed at the end), with
        SQLAlchemy's bind and result conversions, yielding batches of rows:
        tuples, or with ``named`` :class:`~typedstore.query.ResultRow` rows."""
        dialect = self.engine.dialect
        # render_postcompile: "IN" lists and literal-execute values become plain binds.
        compiled: Any = statement.compile(dialect=dialect,
                                          compile_kwargs={"render_postcompile": True})
        params = compiled.construct_params()
        processors = compiled._bind_processors
        expanded = getattr(compiled, "_post_compile_expanded_state", None)
        if expanded is not None and expanded.processors:
            # The values of an expanded "IN" list (t_1_1, t_1_2...) convert as t_1 does.
            processors = {**processors, **expanded.processors}
        values = {k: (processors[k](v) if k in processors else v) for k, v in params.items()}
        args = tuple(values[n] for n in compiled.positiontup) if dialect.positional else values
        try:
            self._link.check_query(cursor, compiled.string, args, "the query")
            cursor.execute(compiled.string, args)
            if cursor.description is None:
                return  # psycopg's stream describes no columns when no row came
            # As SQLAlchemy does: result conversions chosen by the driver's type codes.
            converters = [
                column.type.dialect_impl(dialect).result_processor(dialect, described[1])
                for column, described in zip(statement.selected_columns, cursor.description,
                                             strict=True)
            ]
            convert = any(c is not None for c in converters)
            make = row_class(tuple(c[0] for c in cursor.description)) if named else None
            while True:
                batch = cursor.fetchmany(STREAM_BATCH_SIZE)
                if not batch:
                    break
                if convert:
                    batch = [tuple(f(v) if f is not None else v
                                   for f, v in zip(converters, row, strict=True))
                             for row in batch]
                yield batch if make is None else list(map(make, batch))
        finally:
            try:
                cursor.close()
            except Exception as exc:
                # A dead connection's streaming cursor (PyMySQL's SSCursor) fails
                # to close; the error that ended the stream, if any, goes on.
                log.warning("%s: closing a query cursor failed: %s: %s", self._describe(),
                            type(exc).__name__, exc)

    def _load_rows(self, batches: Iterable[Sequence[Any]]) -> Iterator[Any]:
        # One lock per batch and one identity-map lookup per row; the objects
        # are yielded after the lock is released (never held by a paused
        # generator). The batches are closed however this ends, so that a server-side
        # cursor is not left open by an error kept alive in a traceback.
        #
        # The rows are a snapshot taken when the query started: a record this
        # store wrote, removed or evicted since then (in this thread or
        # another) is not mapped from its older row but read again, or skipped
        # if it is gone (IdentityMap.watch).
        identity = self._identity
        get = identity.get
        with self._lock:
            started = identity.watch()
        try:
            with closing(iter(batches)) as stream:  # type: ignore[type-var]
                for batch in stream:
                    loaded = []
                    failure: Exception | None = None
                    with self._lock:
                        try:
                            for id_, data, version, stored_checksum, mac in batch:
                                obj = get(id_)  # a plain int finds its IntId key
                                if obj is None:
                                    if identity.changed_since(id_, started):
                                        obj = self._reread(new_int_id(id_))
                                        if obj is None:
                                            continue
                                    elif data is None:
                                        raise LoadError(f"{self._describe()}: record {id_} "
                                                        "has no data", id_)
                                    else:
                                        obj = self._load_record(new_int_id(id_), Record(
                                            bytes(data), version, stored_checksum, mac))
                                loaded.append(obj)
                        except Exception as exc:  # raised after the objects loaded before it
                            failure = exc
                    yield from loaded
                    if failure is not None:
                        raise failure
        finally:
            with self._lock:
                identity.unwatch()

    def _reread(self, pid: Any) -> Any:
        """The stored object ``pid`` read now, None if it was removed."""
        try:
            return self._load_record(pid)
        except NotFoundError:
            return None

    # ------------------------------------------------------------ lifecycle

    def _after_fork(self) -> None:
        super()._after_fork()
        # The parent's sockets and file handles must not be used (or closed)
        # here: forget them and let the pool open new ones.
        self._link.forget()
        self._deferred = None
        self._in_db_txn = False
        self._sequence.reset()
        if self._gc3pie_counter is not None:
            self._gc3pie_counter.reset_locks()
        self.engine.dispose(close=False)
        self.idfactory.discard_reserved()

    def pre_fork(self) -> None:
        """Close connections before ``os.fork()`` (GC3Pie's hook; forks are also handled
        automatically)."""
        with self._lock:
            self._close_driver()
            self.engine.dispose()

    def post_fork(self) -> None:
        """Nothing to do: connections reopen on next use."""

    def _close_driver(self) -> None:
        self._link.close()

    def close(self) -> None:
        with self._lock:
            self._close_driver()
            self.engine.dispose()


def make_sqlstore(url: str, *args: Any, **kwargs: Any) -> SqlStore:
    """Build a :class:`SqlStore` from a SQLAlchemy URL (GC3Pie's name)."""
    return SqlStore(url, *args, **kwargs)
