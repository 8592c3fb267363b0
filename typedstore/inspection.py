"""Looking inside a store without loading its objects: ``ls``, ``show``, ``stats``.

The functions behind ``typedstore ls``, ``typedstore show`` and ``typedstore
stats``. None of them unpickles a record or imports a class a record names, so
they are safe on a store someone else can write to:

* :func:`list_records` reads the typed columns of the store table (the sidecar
  index of a file store), filtered by state and by a condition written as text
  (:func:`typedstore.where.parse_where`);
* :func:`show_record` reads one record's typed columns and its payload's bytes,
  checks them against their checksum and signature, and describes the payload
  with :func:`typedstore.pickleview.read_payload`, which runs none of its code;
* :func:`store_stats` counts records by state in one grouped query and reports
  size, schema revision and the backend's settings.

Each opens the store read-only: a SQL store with ``create=False`` (nothing is
created or adopted), with an allow-list of the standard value types only and
placeholders for missing classes (nothing here loads a record; these bound any
load a store might attempt); a file store only when its directory exists. A
store that is not there is a :class:`~typedstore.errors.NotFoundError`, as is
a record that is not there. URLs in results and messages never show a password.

Columns: with a row model (``row_model=``) its fields come back typed as the
row model declares them; the table's other columns (another row model's,
GC3Pie's ``extra_fields``) come back as the database holds them. A file
store's index is read as it is: records it has no row for yet (written by
GC3Pie, or by a store without the row model, and not yet indexed by a query of
a program that can load them) are listed by id in ``unindexed``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import enum
import math
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from sqlmodel import SQLModel

from .engine import create_store_engine
from .errors import DamagedRecordError, NotFoundError, SchemaError, SignatureError, StoreError
from .filesystem import FilesystemStore
from .integrity import MAC_COLUMN, Record, verify
from .pickleview import PayloadView, read_payload
from .query import Query, QuerySource
from .schema import code_head, import_row_model, inspect_store, version_table
from .sql import SqlStore
from .store import Store, make_store
from .tables import store_table_name
from .urls import StoreUrl, parse_store_url
from .where import parse_where

__all__ = ["Listing", "RecordView", "StoreReport", "jsonable", "list_records", "show_record",
           "store_stats"]

RowModelSpec = type[SQLModel] | str | None


@dataclass
class Listing:
    """What :func:`list_records` found.

    Attributes:
        store (str): the store's URL, password hidden.
        columns (list[str]): the columns of each row, in table order (``id`` first).
        rows (list[dict[str, Any]]): one dict per record, column name -> value,
            in id order.
        unindexed (list[str]): file store: ids of records the index has no row
            for (their columns are not known without loading them); empty for
            SQL stores.
    """

    store: str
    columns: list[str]
    rows: list[dict[str, Any]]
    unindexed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: ``{"store", "columns", "rows": [{column: value}], "unindexed"}``
        (dates as ISO text, decimals as text, enum members by name)."""
        return {"store": self.store, "columns": self.columns,
                "rows": [{k: jsonable(v) for k, v in row.items()} for row in self.rows],
                "unindexed": self.unindexed}


@dataclass
class RecordView:
    """What :func:`show_record` found.

    Attributes:
        store (str): the store's URL, password hidden.
        id (str): the record's id.
        columns (dict[str, Any]): its typed columns (empty when a file store's
            index has no row for it yet).
        integrity (str): what the checks of its bytes found: ``"verified"``
            (checksum, and signature if the store is signed), ``"unchecked"``
            (no checksum stored: written by GC3Pie, or before checksums),
            ``"damaged"``, ``"unsigned"`` or ``"bad signature"``.
        integrity_detail (str): the same in a sentence.
        payload (PayloadView): the payload, described without running it.
    """

    store: str
    id: str
    columns: dict[str, Any]
    integrity: str
    integrity_detail: str
    payload: PayloadView

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: ``{"store", "id", "columns", "integrity", "integrity_detail",
        "payload": PayloadView.as_dict()}``."""
        return {"store": self.store, "id": self.id,
                "columns": {k: jsonable(v) for k, v in self.columns.items()},
                "integrity": self.integrity, "integrity_detail": self.integrity_detail,
                "payload": self.payload.as_dict()}


@dataclass
class StoreReport:
    """What :func:`store_stats` found.

    Attributes:
        store (str): the store's URL, password hidden.
        backend (str): ``"sql"`` or ``"file"``.
        records (int): records stored (file store: record files in the directory).
        by_state (dict[str, int]): records per ``state`` value (a NULL state of a
            GC3Pie table under ``"null"``); a file store's from its index, so
            records not indexed yet are left out (``records`` minus the sum).
        size_bytes (int): bytes of the payloads (SQL) or of the files in the
            store directory (file store).
        revision (list[str] | None): the revisions in the table's Alembic version
            table (``None``: a table with none, or a file store).
        code_revision (str | None): the revision of typedstore's own chain this
            code needs (``None`` for a file store).
        settings (dict[str, Any]): the backend's settings: ``dialect`` and
            ``driver``, ``table``, ``version_table``, ``gc3pie_compatible``,
            ``signing`` (this opener verifies signatures: signing keys given
            through ``$TYPEDSTORE_SIGNING_KEYS``), ``signed_records``,
            ``versioned`` (SQL: bookkeeping columns present); file store:
            ``directory``, ``metadata_dir``, ``metadata_bytes``,
            ``gc3pie_compatible``, ``signing``, ``signed_records``, ``durable``.
    """

    store: str
    backend: str
    records: int
    by_state: dict[str, int]
    size_bytes: int
    revision: list[str] | None
    code_revision: str | None
    settings: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: every attribute by name."""
        return {"store": self.store, "backend": self.backend, "records": self.records,
                "by_state": self.by_state, "size_bytes": self.size_bytes,
                "revision": self.revision, "code_revision": self.code_revision,
                "settings": {k: jsonable(v) for k, v in self.settings.items()}}


def jsonable(value: Any) -> Any:
    """A column value as JSON can hold it: dates and times as ISO text, decimals
    and UUIDs as text, enum members by name, bytes as hexadecimal, non-finite
    floats as text; JSON's own types as they are."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (decimal.Decimal, uuid.UUID, dt.timedelta)):
        return str(value)
    return str(value)


# ---------------------------------------------------------------- opening


@contextlib.contextmanager
def open_existing(url: str | os.PathLike[str], **options: Any) -> Iterator[Store]:
    """The store at ``url``, which must exist: a missing directory, SQLite file
    or table is a :class:`NotFoundError` and nothing is created (SQL stores
    open with ``create=False``). ``options`` go to :func:`make_store`. Closed
    at the end of the block."""
    with _opened(url, options.pop("row_model", None), options) as store:
        yield store


@contextlib.contextmanager
def _opened(url: str | os.PathLike[str], row_model: RowModelSpec,
            options: dict[str, Any] | None = None) -> Iterator[Store]:
    """The store at ``url``, opened without creating anything (``options``
    ``None``: read-only, for inspection); closed at the end."""
    parsed = parse_store_url(url)
    model = import_row_model(row_model) if isinstance(row_model, str) else row_model
    _check_there(parsed)
    if options is None:
        options = {"allowed_classes": (), "missing_classes": "placeholder"}
    try:
        store = make_store(parsed.text, row_model=model, create=False, **options)
    except SchemaError as exc:
        table = store_table_name(None, parsed.table, model)
        tables = _store_tables(parsed) if parsed.scheme != "file" else [table]
        if table not in tables:
            there = (f"tables there: {', '.join(tables)}; name one with #table=NAME"
                     if tables else "no store tables there")
            raise NotFoundError(f"{parsed.redacted}: there is no store table {table!r} "
                                f"({there})", table) from exc
        raise
    try:
        yield store
    finally:
        store.close()


def _check_there(parsed: StoreUrl) -> None:
    """Refuse a file store directory or a SQLite file that does not exist
    (opening either would create it)."""
    if parsed.scheme == "file":
        directory = Path(parsed.target)
        if not directory.exists():
            raise NotFoundError(f"{parsed.redacted}: there is no store directory there")
        if not directory.is_dir():
            raise StoreError(f"{parsed.redacted} is not a directory (a file store is one)")
    elif parsed.scheme == "sqlite":
        database = sa.make_url(parsed.target).database
        if database and database != ":memory:" and not database.startswith("file:") \
                and not Path(database).exists():
            raise NotFoundError(f"{parsed.redacted}: there is no SQLite database file there")


def _store_tables(parsed: StoreUrl) -> list[str]:
    """The tables of the database ``parsed`` names, but typedstore's own
    (version tables, the id counter) and Alembic's temporary ones."""
    engine = create_store_engine(parsed.target)
    try:
        with engine.connect() as conn:
            names = sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()
    return sorted(n for n in names if not n.startswith(("typedstore_", "_alembic_tmp_")))


# ---------------------------------------------------------------- the rows


class _Rows(QuerySource):
    """The store's table, or its file index, with every column it has: the
    store's own (typed by the row model) and the others as stored. Queries
    (:class:`~typedstore.query.Query`, with its portable semantics and value
    checks) run on the store's own connections; nothing here loads objects.

    Not ``store.query()``: a file store's query first indexes the records its
    index has no row for by loading them, which would unpickle them.
    """

    row_model = None

    def __init__(self, store: Store) -> None:
        if not isinstance(store, (SqlStore, FilesystemStore)):
            raise StoreError(f"{store._describe()}: a {type(store).__name__} cannot be "
                             "inspected (SQL and file stores can)")
        self.store = store
        self.file = isinstance(store, FilesystemStore)
        own = store.table
        if isinstance(store, FilesystemStore):
            engine, name = store.index.engine, own.name
        else:
            engine, name = store.engine, store.table_name
        with engine.connect() as conn:
            reflected = sa.inspect(conn).get_columns(name)
        columns = [c._copy() for c in own.columns]
        columns += [sa.Column(r["name"], _as_stored(r["type"])) for r in reflected
                    if r["name"] not in own.c]
        self.table = sa.Table(own.name, sa.MetaData(), *columns)
        #: The columns shown: all but the payload and typedstore's own ``_`` columns;
        #: ``id`` and ``state`` first, the bookkeeping columns last.
        names = [c.name for c in self._result_columns()]
        last: list[str] = [n for n in ("version", "updated_at") if n in names]
        self.shown = [n for n in ("id", "state") if n in names] + [
            n for n in names if n not in ("id", "state", *last)] + last

    def _run_select(self, statement: sa.Select[Any], named: bool = True
                    ) -> Iterator[Sequence[Any]]:
        return cast(QuerySource, self.store)._run_select(statement, named)

    def _load_rows(self, batches: Any) -> Iterator[Any]:
        raise NotImplementedError("inspection never loads objects")

    def _default_order(self) -> list[Any]:
        c = self.table.c
        return [c._seqno, c.id] if self.file else [c.id]

    def key(self, id_: Any) -> Any:
        """The value of the ``id`` column for a store id."""
        return str(id_) if self.file else int(id_)


def _as_stored(type_: sa.types.TypeEngine[Any]) -> sa.types.TypeEngine[Any]:
    """The type a column outside the row model is read with: plain numbers, text
    and flags as reflected (their values need no conversion, and conditions on
    them get the query's checks); anything else as the driver gives it."""
    if isinstance(type_, (sa.Integer, sa.Float, sa.Boolean)) or (
            isinstance(type_, sa.String) and not isinstance(type_, sa.Enum)):
        return type_
    return sa.types.NullType()


def _where(rows: _Rows, state: str | None, where: str | None) -> list[Any]:
    conditions: list[Any] = []
    if state is not None:
        conditions.append(rows.table.c.state == state)
    if where is not None and where.strip():
        conditions.append(parse_where(where, rows.table, rows.shown))
    return conditions


def list_records(url: str | os.PathLike[str], *, state: str | None = None,
                 where: str | None = None, limit: int | None = None,
                 row_model: RowModelSpec = None) -> Listing:
    """The ids and typed columns of a store's records, without unpickling any.

    Args:
        url: the store (a directory, ``file://``, ``sqlite://``, ``postgresql://``,
            ``mysql://`` URL with ``#table=``).
        state: only records in this state.
        where: only records matching this condition over column names, e.g.
            ``"cores > 8 and state == 'RUNNING'"`` (see
            :func:`typedstore.where.parse_where`: comparisons, and/or/not,
            column names, literals; never evaluated).
        limit: at most this many rows (in id order).
        row_model: a row model class, or its ``package.module:Class`` name: its
            fields come back typed (without one, columns come back as stored).

    Returns a :class:`Listing`. Raises :class:`~typedstore.errors.NotFoundError`
    when there is no store at ``url``, :class:`~typedstore.errors.QueryError`
    (a ``ValueError``) for a condition that is refused (a construct not
    allowed, an unknown column: both named), ``ValueError`` for a negative
    ``limit``, :class:`~typedstore.errors.UrlError` for a bad URL, and the
    store's errors for a store that cannot be opened.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be 0 or more, not {limit}")
    with _opened(url, row_model) as store:
        rows = _Rows(store)
        query = Query(rows, _where(rows, state, where))
        unindexed: list[str] = []
        if not rows.file:
            found = [_ordered(r._mapping, rows.shown) for r in query.limit(limit).tuples()] \
                if limit != 0 else []
        else:
            # The index may still hold rows of files removed since (by GC3Pie):
            # only records whose file is there are listed.
            names = [str(id_) for id_ in store.list()]
            present = set(names)
            indexed = {str(id_) for id_ in Query(rows).ids()}
            unindexed = [name for name in names if name not in indexed]
            found = []
            if limit != 0:
                for row in query.tuples():
                    if str(row.id) in present:
                        found.append(_ordered(row._mapping, rows.shown))
                        if limit is not None and len(found) >= limit:
                            break
        return Listing(_shown_url(store), rows.shown, found, unindexed)


def _ordered(mapping: Any, names: list[str]) -> dict[str, Any]:
    """A row as a dict of the shown columns, in their order."""
    return {name: mapping[name] for name in names}


def _shown_url(store: Store) -> str:
    return store.url.redacted if store.url is not None else store._describe()


# ---------------------------------------------------------------- one record


def show_record(url: str | os.PathLike[str], id_: str | int, *,
                row_model: RowModelSpec = None) -> RecordView:
    """One record: its typed columns and a readable view of its payload, which
    is never unpickled (:func:`typedstore.pickleview.read_payload`: no class
    it names is imported, nothing it names is called).

    The payload's bytes are checked against the checksum stored with them and,
    when the store has signing keys (``$TYPEDSTORE_SIGNING_KEYS``), against its
    signature; a failed check is reported (:attr:`RecordView.integrity`), and
    the payload is still described (describing runs none of its code).

    Raises :class:`~typedstore.errors.NotFoundError` when there is no store at
    ``url``, or no record ``id_`` in it (an id that cannot be one of this
    store's, too); :class:`~typedstore.errors.LoadError` when the record's
    bytes cannot be read; the errors :func:`list_records` raises for the URL
    and the row model.
    """
    with _opened(url, row_model) as store:
        pid = store._coerce_id(id_)
        record = store._read(pid)
        integrity, detail = _integrity(store, pid, record)
        rows = _Rows(store)
        found = list(Query(rows, [rows.table.c.id == rows.key(pid)]).limit(1).tuples())
        columns = _ordered(found[0]._mapping, rows.shown) if found else {}
        return RecordView(_shown_url(store), str(pid), columns, integrity, detail,
                          read_payload(record.payload))


def _integrity(store: Store, pid: Any, record: Record) -> tuple[str, str]:
    signer = store._signer
    try:
        verify(store._describe, pid, record.payload, record.checksum, record.mac, signer)
    except DamagedRecordError as exc:
        return "damaged", str(exc)
    except SignatureError as exc:
        return ("unsigned" if exc.reason == "missing" else "bad signature"), str(exc)
    if record.checksum is None:
        return "unchecked", ("no checksum is stored with it (written by GC3Pie, or before "
                             "typedstore kept checksums)")
    if signer is not None:
        return "verified", "its checksum and its signature match"
    signed = " (it is signed; give the keys to check the signature)" if record.mac else ""
    return "verified", f"its checksum matches{signed}"


# ---------------------------------------------------------------- the whole store


def store_stats(url: str | os.PathLike[str]) -> StoreReport:
    """Counts by state (one grouped query), number and size of the records,
    schema revision and backend settings of the store at ``url``.

    Raises :class:`~typedstore.errors.NotFoundError` when there is no store at
    ``url``, :class:`~typedstore.errors.UrlError` for a bad URL, and the
    store's errors for a store that cannot be opened.
    """
    with _opened(url, None) as store:
        rows = _Rows(store)
        t = rows.table
        size = sa.func.coalesce(sa.func.sum(sa.func.length(t.c.data)), 0) \
            if "data" in t.c else sa.literal(0)
        signed = sa.func.count(t.c[MAC_COLUMN]) if MAC_COLUMN in t.c else sa.literal(0)
        grouped = sa.select(t.c.state, sa.func.count(), size, signed).group_by(t.c.state)
        by_state: dict[str, int] = {}
        payload_bytes = signed_records = 0
        for batch in rows._run_select(grouped, named=False):
            for state, count, state_bytes, state_signed in batch:
                by_state["null" if state is None else str(state)] = int(count)
                payload_bytes += int(state_bytes or 0)
                signed_records += int(state_signed or 0)
        by_state = dict(sorted(by_state.items()))
        shown = _shown_url(store)
        signing = store._signer is not None
        if isinstance(store, FilesystemStore):
            meta = store._meta
            return StoreReport(shown, "file", len(store.list()), by_state,
                               _files_bytes(store.directory), None, None, {
                                   "directory": str(store.directory),
                                   "metadata_dir": str(meta),
                                   "metadata_bytes": _files_bytes(meta, recursive=True),
                                   "gc3pie_compatible": store.gc3pie_compatible,
                                   "signing": signing, "signed_records": signed_records,
                                   "durable": store._durable})
        assert isinstance(store, SqlStore)
        engine = store.engine
        with engine.connect() as conn:
            revisions = inspect_store(conn, store.table_name).revisions
        return StoreReport(shown, "sql", sum(by_state.values()), by_state, payload_bytes,
                           list(revisions) if revisions is not None else None, code_head(), {
                               "dialect": engine.dialect.name,
                               "driver": engine.dialect.driver,
                               "table": store.table_name,
                               "version_table": version_table(store.table_name,
                                                              engine.dialect),
                               "gc3pie_compatible": store.gc3pie_compatible,
                               "signing": signing, "signed_records": signed_records,
                               "versioned": store._versioned})


def _files_bytes(directory: Path, recursive: bool = False) -> int:
    """Bytes of the regular files in ``directory`` (and below it, ``recursive``);
    links are not followed."""
    total = 0
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                try:
                    if entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                    elif recursive and entry.is_dir(follow_symlinks=False):
                        total += _files_bytes(Path(entry.path), recursive=True)
                except OSError:
                    continue  # gone while counted
    except FileNotFoundError:
        return 0
    return total
