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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from .defaults import STREAM_BATCH_SIZE
from .errors import SchemaError, StoreError
from .ids import IntId
from .serialization import MissingClass
from .store import Store

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


def _checkpoint_table() -> sa.Table:
    return sa.Table(
        CHECKPOINT_TABLE, sa.MetaData(),
        sa.Column("table_name", sa.String(255), primary_key=True),
        sa.Column("columns", sa.String(255), primary_key=True),
        sa.Column("last_id", sa.BigInteger, nullable=False),
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
    checkpoints = _checkpoint_table()
    engine = store.engine
    with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
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
                batch = conn.execute(
                    sa.select(table.c.id, table.c.data).where(table.c.id > cursor)
                    .order_by(table.c.id).limit(batch_size)).all()
            if not batch:
                break
            rows, failures = _compute(store, specs, batch)
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


def _compute(store: Any, specs: Sequence[Any],
             batch: Sequence[Any]) -> tuple[list[dict[str, Any]], list[tuple[Any, str]]]:
    rows: list[dict[str, Any]] = []
    failures: list[tuple[Any, str]] = []
    for id_, data in batch:
        values: dict[str, Any] = {"k_id": id_}
        try:
            obj = None
            if data is not None:
                # The payload is in hand: unpickle it, without reading the row again.
                pid = IntId(id_)
                with store._lock:
                    obj = store._identity.get(pid)
                    if obj is None:
                        obj = store._load_record(pid, bytes(data), None)
            if obj is None or isinstance(obj, MissingClass):
                raise StoreError(f"record {id_} cannot be loaded")
            for spec in specs:
                values[spec.name] = store._rows.field_value(spec, obj, id_)
        except StoreError as exc:
            failures.append((id_, str(exc)))
            values.update({spec.name: None for spec in specs})
        rows.append(values)
    return rows, failures


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
            with store.transaction():
                for id_ in chunk:
                    try:
                        obj = store.load(id_)
                    except StoreError as exc:
                        skipped.append((id_, str(exc)))
                        continue
                    if isinstance(obj, MissingClass):
                        skipped.append((id_, f"class {obj.missing_class} is missing"))
                        continue
                    store.replace(id_, obj)
            store.invalidate_cache()
            advance(len(chunk))
    return skipped
