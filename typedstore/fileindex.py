"""The typed sidecar index of a file store: its row fields, queryable by SQL.

A :class:`~typedstore.filesystem.FilesystemStore` keeps, beside its pickles,
one SQLite database (``DIR/.typedstore/index.db``) with one row per record:
the same ``state`` and extracted columns a SQL store has (built from the same
row model), so queries are the same SQLAlchemy expressions and run without
unpickling any payload.

Agreement with the pickles: a commit first writes each record's new row with
``_pending = 1`` and the ``(mtime_ns, size, inode)`` of the temporary file
about to be renamed over the record, then renames, then clears ``_pending``.
All of it happens under the store's commit lock. A crash in between leaves
rows marked pending; before answering a query the index checks each pending
row against its file: same identity -> the rename happened, the row is right;
otherwise the row is rebuilt from the pickle actually there (or dropped when
the file is gone). Files without a row (written by GC3Pie, or before the index
existed) are indexed on the first query of each store instance.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import SQLModel

from .engine import create_store_engine
from .rows import RowBuilder
from .tables import build_table, new_metadata

log = logging.getLogger(__name__)

#: Columns the index keeps for itself (never part of a returned row).
INTERNAL_COLUMNS = ("_seqno", "_pending", "_mtime_ns", "_size", "_ino")

Stat = tuple[int, int, int]


def file_identity(st: os.stat_result) -> Stat:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _seqno(name: str) -> int:
    number = name.rpartition(".")[2]
    return int(number) if number.isdigit() else -1


class FileIndex:
    """One file store's index database.

    Attributes:
        table (sqlalchemy.Table): the index table (``id`` is the record id as text).
        rows (RowBuilder): computes a record's indexed values from its object.
        engine (sqlalchemy.Engine): the SQLite engine of ``index.db``.
    """

    def __init__(self, path: Path, row_model: type[SQLModel] | None,
                 extra_fields: Any = None) -> None:
        metadata = new_metadata()
        model_table = build_table("records", new_metadata(), row_model, extra_fields,
                                  bookkeeping=False)
        columns: list[sa.Column[Any]] = [sa.Column("id", sa.String(255), primary_key=True)]
        columns += [c._copy() for c in model_table.columns if c.name not in ("id", "data")]
        columns += [
            # The N of an id "PREFIX.N", so rows order as ids do (job.9 before job.10).
            sa.Column("_seqno", sa.BigInteger, nullable=False, server_default="-1"),
            sa.Column("_pending", sa.Integer, nullable=False, server_default="0", index=True),
            sa.Column("_mtime_ns", sa.BigInteger),
            sa.Column("_size", sa.BigInteger),
            sa.Column("_ino", sa.BigInteger),
        ]
        self.table = sa.Table("records", metadata, *columns)
        self.rows = RowBuilder(self.table, row_model)
        self.engine = create_store_engine(f"sqlite:///{path}")
        with self.engine.connect().execution_options(sqlite_immediate=True) as conn, \
                conn.begin():
            self._check_or_reset(conn)
            self.table.create(conn, checkfirst=True)
        self.synced = False

    def _check_or_reset(self, conn: sa.Connection) -> None:
        """An index built for other columns is dropped: it is rebuilt from the pickles."""
        inspector = sa.inspect(conn)
        if not inspector.has_table("records"):
            return
        have = {c["name"] for c in inspector.get_columns("records")}
        if have != set(self.table.c.keys()):
            log.warning("file store index has columns %s, the row model needs %s; rebuilding it",
                        sorted(have), sorted(self.table.c.keys()))
            conn.exec_driver_sql("DROP TABLE records")

    # ------------------------------------------------------------ writing

    def values(self, obj: Any, id_: Any) -> dict[str, Any]:
        """The indexed values of ``obj``; raises SaveError if a field does not validate."""
        return dict(zip(self.rows.names, self.rows.values(obj, id_), strict=True))

    def _upsert(self, conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        stmt = sqlite_insert(self.table)
        update = {c.name: stmt.excluded[c.name] for c in self.table.columns if c.name != "id"}
        conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=update), rows)

    def stage(self, writes: Iterable[tuple[str, dict[str, Any], Stat]],
              deletes: Iterable[str]) -> None:
        """Before the renames: new rows marked pending, with their files' identity."""
        rows = [{"id": id_, **values, "_seqno": _seqno(id_), "_pending": 1,
                 "_mtime_ns": st[0], "_size": st[1], "_ino": st[2]}
                for id_, values, st in writes]
        deletes = list(deletes)
        with self.engine.connect().execution_options(sqlite_immediate=True) as conn, \
                conn.begin():
            self._upsert(conn, rows)
            if deletes:
                conn.execute(self.table.update().where(self.table.c.id.in_(deletes))
                             .values(_pending=1))

    def settle(self, written: Iterable[str], deletes: Iterable[str]) -> None:
        """After the renames: the rows are true."""
        written, deletes = list(written), list(deletes)
        with self.engine.connect().execution_options(sqlite_immediate=True) as conn, \
                conn.begin():
            if written:
                conn.execute(self.table.update().where(self.table.c.id.in_(written))
                             .values(_pending=0))
            if deletes:
                conn.execute(self.table.delete().where(self.table.c.id.in_(deletes)))

    # ------------------------------------------------------------ repairing

    def refresh(
        self,
        directory: Path,
        names: Callable[[], list[str]],
        extract: Callable[[str], dict[str, Any] | None],
    ) -> None:
        """Make the index agree with the files (see the module docstring).

        ``extract(name)`` returns the indexed values of the record in file
        ``name``, or ``None`` if it cannot be read (the row is then dropped and
        the error logged by the caller).
        """
        t = self.table
        with self.engine.connect() as conn:
            pending = conn.execute(
                sa.select(t.c.id, t.c._mtime_ns, t.c._size, t.c._ino).where(t.c._pending == 1)
            ).all()
            known = None if self.synced else {r[0] for r in conn.execute(sa.select(t.c.id))}
        rebuild: list[str] = []
        confirmed: list[str] = []
        gone: list[str] = []
        for id_, mtime_ns, size, ino in pending:
            try:
                st = file_identity((directory / id_).stat())
            except FileNotFoundError:
                gone.append(id_)
                continue
            (confirmed if st == (mtime_ns, size, ino) else rebuild).append(id_)
        if known is not None:
            present = set(names())
            rebuild += sorted(present - known)
            gone += sorted(known - present)
        if not (rebuild or confirmed or gone):
            self.synced = True
            return
        rows = []
        for id_ in rebuild:
            try:
                st = file_identity((directory / id_).stat())
            except FileNotFoundError:
                gone.append(id_)
                continue
            values = extract(id_)
            if values is None:
                gone.append(id_)
                continue
            rows.append({"id": id_, **values, "_seqno": _seqno(id_), "_pending": 0,
                         "_mtime_ns": st[0], "_size": st[1], "_ino": st[2]})
        if rows:
            log.info("file store index: indexed %d record(s) from their pickles", len(rows))
        with self.engine.connect().execution_options(sqlite_immediate=True) as conn, \
                conn.begin():
            self._upsert(conn, rows)
            if confirmed:
                conn.execute(t.update().where(t.c.id.in_(confirmed)).values(_pending=0))
            if gone:
                conn.execute(t.delete().where(t.c.id.in_(gone)))
        self.synced = True

    def close(self) -> None:
        self.engine.dispose()
