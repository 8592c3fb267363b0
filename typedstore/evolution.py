"""Evolving stored data: back-filling new columns, rewriting records in their current form.

:func:`backfill` fills extracted columns of existing rows by unpickling each
payload and running the field's extractor and validation, in batches of one
transaction each, in constant memory, with a progress bar in a terminal. It
records the last id done in ``typedstore_backfill``, so an interrupted run
resumes where it stopped. A row whose value does not validate (or whose
payload cannot be loaded) stops the run with :class:`BackfillError` listing
every such row of the batch by id and reason -- unless ``leave_null=True``,
which stores NULL for them and reports them instead.

:func:`rewrite_all` loads every record (through class aliases and upgrade
hooks) and writes it back, so that old pickles take the current form.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from alembic.operations import MigrateOperation, Operations

from .defaults import STREAM_BATCH_SIZE
from .errors import SchemaError, StoreError
from .ids import IntId
from .integrity import INTEGRITY_COLUMNS, Record, make_signer, verify
from .serialization import MissingClass, make_allow
from .store import Store
from .typemap import mysql_table_options

log = logging.getLogger(__name__)

#: Table of back-fill checkpoints: the last id done per store table and column set.
CHECKPOINT_TABLE = "typedstore_backfill"


class BackfillError(SchemaError):
    """Rows whose new column value could not be computed; nothing of their batch was written.

    Attributes:
        failures (list[tuple[Any, str]]): ``(id, reason)`` of every failing row of the batch.
    """

    def __init__(self, message: str, table: str, failures: list[tuple[Any, str]]) -> None:
        super().__init__(message, table=table)
        self.failures = failures


@dataclass
class BackfillReport:
    """What a back-fill did.

    Attributes:
        rows (int): rows updated by this run.
        resumed_after (int | None): the checkpoint id this run started after.
        left_null (list[tuple[Any, str]]): rows stored as NULL, with the reason.
    """

    rows: int = 0
    resumed_after: int | None = None
    left_null: list[tuple[Any, str]] = field(default_factory=list)


@contextmanager
def _progress(total: int, description: str, show: bool | None) -> Iterator[Any]:
    """A rich progress bar on a terminal (or when ``show``); a no-op advance otherwise."""
    if show is None:
        show = sys.stderr.isatty()
    if not show:
        yield lambda n: None
        return
    from rich.progress import Progress

    with Progress(transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def _checkpoint_table(dialect: sa.Dialect | None = None) -> sa.Table:
    """The checkpoint table; on MariaDB/MySQL utf8mb4 whatever the database's default
    (it holds store table names, which may be any Unicode)."""
    return sa.Table(
        CHECKPOINT_TABLE, sa.MetaData(),
        sa.Column("table_name", sa.String(255), primary_key=True),
        sa.Column("columns", sa.String(255), primary_key=True),
        sa.Column("last_id", sa.BigInteger, nullable=False),
        **(mysql_table_options(dialect) if dialect is not None else {}),
    )


def backfill(
    store: Any,
    columns: Sequence[str] | None = None,
    *,
    batch_size: int = STREAM_BATCH_SIZE,
    leave_null: bool = False,
    progress: bool | None = None,
    restart: bool = False,
) -> BackfillReport:
    """Fill extracted ``columns`` (default: all) of a :class:`SqlStore` from its pickles.

    Each batch of ``batch_size`` rows is one transaction together with its
    checkpoint, so an interruption loses at most one batch and the next call
    resumes after the last id done (``restart=True`` starts over). Memory stays
    flat: objects are loaded without keeping them. Raises
    :class:`BackfillError` for rows that fail (see the module docstring).
    """
    from .sql import SqlStore

    if not isinstance(store, SqlStore):
        raise TypeError("backfill works on a SqlStore")
    specs = [f for f in store._rows.fields if columns is None or f.name in columns]
    unknown = set(columns or ()) - {f.name for f in specs}
    if unknown:
        raise SchemaError(
            f"{store._describe()}: no extracted column(s) {', '.join(sorted(unknown))} "
            "in the store's row model", table=store.table_name)
    if not specs:
        return BackfillReport()
    table = store.table
    key = ",".join(sorted(f.name for f in specs))
    engine = store.engine
    with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
        checkpoints = _checkpoint_table(conn.dialect)
        checkpoints.create(conn, checkfirst=True)
        where = (checkpoints.c.table_name == table.name) & (checkpoints.c.columns == key)
        if restart:
            conn.execute(checkpoints.delete().where(where))
        last = conn.execute(sa.select(checkpoints.c.last_id).where(where)).scalar()
        total = conn.execute(sa.select(sa.func.count()).select_from(table)
                             .where(table.c.id > (last or 0))).scalar_one()
    report = BackfillReport(resumed_after=last)
    if last is not None:
        log.info("%s: back-fill of %s resumes after id %s", store._describe(), key, last)
    update = table.update().where(table.c.id == sa.bindparam("k_id")).values(
        {f.name: sa.bindparam(f.name) for f in specs})
    cursor = last or 0
    with _progress(total, f"back-filling {key}", progress) as advance:
        while True:
            with engine.connect() as conn:
                # With the checksum and MAC: loading verifies them as load() does.
                batch = conn.execute(
                    sa.select(*store._object_columns()).where(table.c.id > cursor)
                    .order_by(table.c.id).limit(batch_size)).all()
            if not batch:
                break
            rows, failures = _compute(store._rows, specs, batch, _store_loader(store))
            if failures and not leave_null:
                listing = "; ".join(f"{id_}: {reason}" for id_, reason in failures)
                raise BackfillError(
                    f"{store._describe()}: back-fill of {key} stopped: {len(failures)} row(s) "
                    f"failed ({listing}); fix them or rerun with leave_null=True",
                    table.name, failures)
            report.left_null.extend(failures)
            cursor = int(batch[-1][0])
            with engine.connect().execution_options(sqlite_immediate=True) as conn, \
                    conn.begin():
                conn.execute(update, rows)
                _save_checkpoint(conn, checkpoints, table.name, key, cursor)
            report.rows += len(rows)
            store.invalidate_cache()
            advance(len(batch))
    with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
        conn.execute(checkpoints.delete().where(
            (checkpoints.c.table_name == table.name) & (checkpoints.c.columns == key)))
    return report


def _compute(rows_builder: Any, specs: Sequence[Any], batch: Sequence[Any],
             load: Callable[[Any, Sequence[Any]], Any]) -> tuple[list[dict[str, Any]],
                                                                list[tuple[Any, str]]]:
    """New column values for a batch of ``(id, data, ...)`` rows, and the rows that failed.

    ``load(id, row)`` gets each row whose ``data`` is not NULL."""
    rows: list[dict[str, Any]] = []
    failures: list[tuple[Any, str]] = []
    for row in batch:
        id_, data = row[0], row[1]
        values: dict[str, Any] = {"k_id": id_}
        try:
            obj = load(id_, row) if data is not None else None
            if obj is None or isinstance(obj, MissingClass):
                raise StoreError(f"record {id_} cannot be loaded")
            for spec in specs:
                values[spec.name] = rows_builder.field_value(spec, obj, id_)
        except StoreError as exc:
            failures.append((id_, str(exc)))
            values.update({spec.name: None for spec in specs})
        rows.append(values)
    return rows, failures


def _store_loader(store: Any) -> Callable[[Any, Sequence[Any]], Any]:
    """Unpickle a row already in hand (``store._object_columns()``) through the
    store (no second read; checksum and MAC verified)."""

    def load(id_: Any, row: Sequence[Any]) -> Any:
        pid = IntId(id_)
        _, data, version, stored_checksum, mac = row
        with store._lock:
            obj = store._identity.get(pid)
            return obj if obj is not None else store._load_record(
                pid, Record(bytes(data), version, stored_checksum, mac))

    return load


def _save_checkpoint(conn: sa.Connection, checkpoints: sa.Table, table: str, key: str,
                     last_id: int) -> None:
    where = (checkpoints.c.table_name == table) & (checkpoints.c.columns == key)
    if conn.execute(checkpoints.update().where(where).values(last_id=last_id)).rowcount == 0:
        conn.execute(checkpoints.insert().values(table_name=table, columns=key, last_id=last_id))


def rewrite_all(store: Store, *, batch_size: int = STREAM_BATCH_SIZE,
                progress: bool | None = None) -> list[tuple[Any, str]]:
    """Load every record and write it back in its current form; return the records skipped.

    Each batch is one transaction. Records that cannot be loaded, or load as
    a placeholder of a missing class, are skipped and returned with the reason.
    """
    skipped: list[tuple[Any, str]] = []
    ids = store.list()
    with _progress(len(ids), "rewriting records", progress) as advance:
        for start in range(0, len(ids), batch_size):
            chunk = ids[start:start + batch_size]
            # Loaded before the batch's transaction: a record that cannot be
            # loaded (refused by the allow-list, damaged...) is skipped and
            # named, and does not doom the transaction of the others.
            loaded = []
            for id_ in chunk:
                try:
                    obj = store.load(id_)
                except StoreError as exc:
                    log.warning("%s: record %s not rewritten: %s", store._describe(), id_, exc)
                    skipped.append((id_, str(exc)))
                    continue
                if isinstance(obj, MissingClass):
                    skipped.append((id_, f"class {obj.missing_class} is missing"))
                    continue
                loaded.append((id_, obj))
            with store.transaction():
                for id_, obj in loaded:
                    store.replace(id_, obj)
            store.invalidate_cache()
            advance(len(chunk))
    return skipped


# ---------------------------------------------------------------- as a migration operation


@Operations.register_operation("backfill_column")
class BackfillOp(MigrateOperation):
    """``op.backfill_column(["cores"], row_model=JobRow)`` in a migration file.

    Fills the columns for every row inside the migration's own transaction
    (atomic: an interruption rolls it back, and the migration runs again from
    the start), batch by batch in constant memory. For a resumable back-fill
    of a big table, run :func:`backfill` after the migration instead.

    Records are read as a store reads them: a payload that does not match
    its checksum, or (with signing keys: ``signing_keys=`` or
    ``$TYPEDSTORE_SIGNING_KEYS``) whose MAC is missing or wrong, is never
    unpickled; ``allowed_classes=`` applies the store's allow-list. Such a
    row stops the migration with :class:`BackfillError` (or stays NULL with
    ``leave_null=True``).
    """

    def __init__(self, columns: Sequence[str], row_model: Any, batch_size: int = STREAM_BATCH_SIZE,
                 leave_null: bool = False, allowed_classes: Any = None,
                 signing_keys: Iterable[str | bytes] | None = None) -> None:
        self.columns = list(columns)
        self.row_model = row_model
        self.batch_size = batch_size
        self.leave_null = leave_null
        self.allow = make_allow(allowed_classes)
        self.signer = make_signer(signing_keys)

    @classmethod
    def backfill_column(cls, operations: Operations, columns: Sequence[str], row_model: Any,
                        batch_size: int = STREAM_BATCH_SIZE, leave_null: bool = False,
                        allowed_classes: Any = None,
                        signing_keys: Iterable[str | bytes] | None = None) -> Any:
        return operations.invoke(cls(columns, row_model, batch_size, leave_null,
                                     allowed_classes, signing_keys))


@Operations.implementation_for(BackfillOp)
def _run_backfill_op(operations: Operations, operation: BackfillOp) -> None:
    from .migrations import store_table
    from .rows import RowBuilder
    from .serialization import loads
    from .tables import build_table, new_metadata

    connection = operations.get_bind()
    name = store_table()
    table = build_table(name, new_metadata(), operation.row_model)
    builder = RowBuilder(table, operation.row_model)
    specs = [f for f in builder.fields if f.name in operation.columns]
    missing = set(operation.columns) - {f.name for f in specs}
    if missing:
        raise SchemaError(f"table {name!r}: no extracted column(s) {sorted(missing)}", table=name)
    cache: dict[Any, Any] = {}
    # The integrity columns as the table has them (none before revision ts0004).
    present = {column["name"] for column in sa.inspect(connection).get_columns(name)}
    sealed = [table.c[c] if c in present else sa.null() for c in INTEGRITY_COLUMNS]

    def describe() -> str:
        return f"table {name!r}"

    def unpickle(key: int, row: Sequence[Any]) -> Any:
        data = bytes(row[1])
        verify(describe, key, data, row[2], row[3], operation.signer)
        return loads(data, resolve, record_id=key, allow=operation.allow, owner=cache)

    def resolve(ref: Any) -> Any:
        key = int(ref)
        if key not in cache:
            row = connection.execute(sa.select(table.c.id, table.c.data, *sealed)
                                     .where(table.c.id == key)).first()
            if row is None:
                raise StoreError(f"{describe()}: a record references {key}, which is not "
                                 "stored")
            cache[key] = unpickle(key, row)
        return cache[key]

    def load(id_: Any, row: Sequence[Any]) -> Any:
        obj = unpickle(int(id_), row)
        cache[int(id_)] = obj
        return obj

    update = table.update().where(table.c.id == sa.bindparam("k_id")).values(
        {f.name: sa.bindparam(f.name) for f in specs})
    cursor = 0
    while True:
        batch = connection.execute(
            sa.select(table.c.id, table.c.data, *sealed).where(table.c.id > cursor)
            .order_by(table.c.id).limit(operation.batch_size)).all()
        if not batch:
            break
        rows, failures = _compute(builder, specs, batch, load)
        if failures and not operation.leave_null:
            listing = "; ".join(f"{id_}: {reason}" for id_, reason in failures)
            raise BackfillError(f"table {name!r}: back-fill stopped: {listing}", name, failures)
        for id_, reason in failures:
            log.warning("table %s: row %s left NULL: %s", name, id_, reason)
        connection.execute(update, rows)
        cursor = int(batch[-1][0])
        cache.clear()
