"""The typed sidecar index of a file store: its row fields, queryable by SQL.

A :class:`~typedstore.filesystem.FilesystemStore` keeps, beside its pickles,
one SQLite database (``index.db`` in the store's metadata directory, see
:mod:`typedstore.filesystem`) with one row per record:
the same ``state`` and extracted columns a SQL store has (built from the same
row model), so queries are the same SQLAlchemy expressions and run without
unpickling any payload.

Agreement with the pickles: a commit writes each record's new row marked
``_pending = 1`` (and the commit's ``_writer`` token) before it renames the
record's file, all under the store's commit lock, with the stamp of the file
(inode, size, modification time). The mark is cleared lazily,
in the same SQLite transaction as the store's next commit (or before its next
query, or on close), and only if the row still carries that commit's token. A
crash leaves rows marked; before answering a query (under the same lock, so no
commit is half way) the index rebuilds every marked row from the pickle
actually on disk, or drops it when the file is gone. A marked row is never
wrong, only more work for a query. Files without a row (written by GC3Pie, or
before the index existed) are indexed on the first query of each store instance.

Several row models on one directory: the index table holds the union of the
columns every opener asked for (columns are added, never dropped). A store
whose row model does not cover every column leaves the rows it writes marked
``_pending = 2`` ("other columns stale"), and a store that covers them rebuilds
such rows before its next query. So a store opened without a row model never
spoils the typed index of one opened with it.

Versions: each row carries ``_version``, the version of the record file it
was made from (1 for a new record, one more per commit that rewrites it). A
record's *effective* version is that of the file actually on disk, found
from its row and the file's stamp (:func:`effective_version`): the row's
when the row was made from that file; one less when the row was staged by a
commit that has not renamed its file yet (or died before it did); unknown in
a store GC3Pie also writes, when the file is not the row's (GC3Pie rewrote
it). Commits compare it with the version the saved object was read at, under
the commit lock. Record files never hold versions (GC3Pie reads them as they
are). Rows rebuilt from the files (:meth:`FileIndex.refresh`) keep their
version when the file is the row's, take one less when a dead commit staged
the row, one more when another program rewrote the file, and 1 when new.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import SQLModel

from .defaults import BACKUP_SUFFIX, UNKNOWN_STATE
from .engine import create_store_engine
from .errors import SaveError, SchemaError
from .integrity import CHECKSUM_COLUMN, MAC_COLUMN, MAC_LENGTH
from .references import CHILD, REFERENCED_ROOT, ROOT, ROOT_COLUMN
from .rows import RowBuilder
from .schema import column_kind
from .tables import build_table, new_metadata

log = logging.getLogger(__name__)

#: ``_pending`` values.
SETTLED, WRITING, OTHERS_STALE = 0, 1, 2
#: ``_writer`` of rows marked to be made again from the pickles (new columns, an
#: older row format); other writers are commits' tokens.
REINDEX = "columns"
#: Ends the token of a commit by a store that did not cover every column.
PARTIAL = ":partial"
#: The index column flagging a record its last indexer could not read.
UNREADABLE_COLUMN = "_unreadable"
#: The index column with the checksum a row held before its last commit.
PREVIOUS_CHECKSUM = "_previous_checksum"

#: How rows store their values: 2 since the type map (:mod:`typedstore.typemap`:
#: UTC datetimes, scaled decimals...). Rows of an older index are made again from
#: the pickles (marked as being written) when a store opens it.
#: 3 since reference tracking: every row's references are in the ``refs`` table.
ROW_FORMAT = 3


#: What a file store's ``extract(name)`` gives :meth:`FileIndex.refresh`: the
#: record's indexed values (``None`` if it could not be read), why it could not
#: be read (``None`` if it could, or if the file is gone), the checksum of the
#: bytes read, and the ids those bytes reference (``None`` if they cannot be
#: read from them: :func:`typedstore.references.referenced_ids`).
Extracted = tuple[dict[str, Any] | None, str | None, int | None, list[str] | None]

#: The index columns that say which version a record file is:
#: ``(_version, _stamp, _pending, _writer)`` (see :func:`effective_version`).
VersionRow = tuple[int | None, str | None, int, str | None]
#: What a load needs of a record's row: ``(_checksum, _mac, _stamp, _pending,
#: _writer, _version)``.
Seal = tuple[int | None, str | None, str | None, int, str | None, int | None]

#: Ids per ``IN (...)`` list when reading versions (under SQLite's variable limit).
VERSION_CHUNK = 500


def file_stamp(path: str | os.PathLike[str]) -> str | None:
    """``"inode:size:mtime_ns"`` of a record file (``None`` if it is gone).

    A rename keeps these of the renamed file, so a record typedstore wrote is
    stamped from its temporary file; any rewrite by another program changes
    at least one of them.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _damaged(old: dict[str, Any], read_checksum: int | None, stamp: str | None,
             watch: bool) -> bool:
    """Whether a file read for a row that describes another file is damage:
    not in a store other programs write (``watch``), the row has a checksum,
    and the bytes read match neither it (the writer's file, touched or copied
    back) nor the checksum the row held before its last commit (the file that
    commit was to replace: it died before renaming)."""
    return (not watch and stamp is not None and read_checksum is not None
            and old[CHECKSUM_COLUMN] is not None
            and read_checksum not in (old[CHECKSUM_COLUMN], old[PREVIOUS_CHECKSUM]))


def record_stamp(directory: Path, id_: str) -> str | None:
    """:func:`file_stamp` of record ``id_``'s file, else of the ``.OLD`` backup
    standing for it (GC3Pie died between its two renames)."""
    stamp = file_stamp(directory / id_)
    return stamp if stamp is not None else file_stamp(directory / (id_ + BACKUP_SUFFIX))


def staged_by_commit(pending: int | None, writer: str | None) -> bool:
    """Whether a row was staged by a commit (marked as being written with a
    commit's token) rather than settled or marked for indexing again."""
    return pending == WRITING and writer is not None and writer != REINDEX


def effective_version(row: VersionRow | None, stamp: str | None,
                      gc3pie_compatible: bool) -> int | None:
    """The version of record file stamped ``stamp`` whose index row is ``row``
    (``None``: unknown).

    * no row: unknown;
    * the row was made from this very file (same stamp): the row's version
      (0 for a row written before versions existed: the first commit over it
      makes it 1, and a save of what was read before that commit conflicts);
    * the row was staged by a commit and the file is another one: the commit
      has not renamed its file yet, or died before it did; the file is the
      version before the row's;
    * a settled row and another file: in a store GC3Pie also writes, GC3Pie
      rewrote it (unknown); elsewhere the same bytes touched or copied back
      (the row's version; the checksum still guards the content).
    """
    if row is None:
        return None
    version, row_stamp, pending, writer = row
    if row_stamp is not None and row_stamp == stamp:
        return version if version is not None else 0
    if version is None:
        return None  # a row of older code, describing another file
    if staged_by_commit(pending, writer):
        return version - 1
    return None if gc3pie_compatible else version


def _rebuilt_version(old: dict[str, Any] | None, stamp: str | None) -> int:
    """The version of a row :meth:`FileIndex.refresh` makes again from the file
    stamped ``stamp`` (``None``: rewritten while read), given the ``old`` row."""
    if old is None:
        return 1
    version = int(old["_version"] or 0)  # 0: a row written before versions existed
    if old["_stamp"] is not None and old["_stamp"] == stamp:
        return version
    if staged_by_commit(old["_pending"], old["_writer"]) and old["_version"] is not None:
        return version - 1  # a dead commit's row: the file is the one before
    return version + 1  # rewritten by another program


def _seqno(name: str) -> int:
    number = name.rpartition(".")[2]
    return int(number) if number.isdigit() and len(number) < 19 else -1


class FileIndex:
    """One file store's view of the index database.

    Attributes:
        table (sqlalchemy.Table): the index columns this store knows (``id`` is
            the record id as text).
        rows (RowBuilder): computes a record's indexed values from its object.
        covers_all (bool): this store's columns are all the index has.
        engine (sqlalchemy.Engine): the SQLite engine of ``index.db``.
    """

    def __init__(self, path: Path, row_model: type[SQLModel] | None,
                 extra_fields: Any = None) -> None:
        model_table = build_table("records", new_metadata(), row_model, extra_fields,
                                  bookkeeping=False)
        columns: list[sa.Column[Any]] = [sa.Column("id", sa.String(255), primary_key=True)]
        for column in model_table.columns:
            if column.name not in ("id", "data"):
                # Nullable and without defaults: the index is derived data; the row
                # model's constraints were checked on save, and stores with other
                # row models must be able to write rows without these columns.
                columns.append(sa.Column(column.name, column.type, nullable=True,
                                         index=bool(column.index), info=dict(column.info)))
        columns += [
            # The N of an id "PREFIX.N", so rows order as ids do (job.9 before job.10).
            sa.Column("_seqno", sa.BigInteger, nullable=False, server_default="-1"),
            sa.Column("_pending", sa.Integer, nullable=False, server_default="0", index=True),
            # Which commit staged the row: a settle applies only to its own rows.
            sa.Column("_writer", sa.String(64), nullable=True),
            # The record file the row was made from: "inode:size:mtime_ns" (see
            # file_stamp); a file that no longer matches was rewritten by another
            # writer (GC3Pie) and is indexed again, in stores that watch for it.
            sa.Column("_stamp", sa.String(64), nullable=True),
            # Integrity (typedstore.integrity): the writer's checksum and MAC of the
            # file it stamped; never made up by a reader (a reader indexing a file
            # records the checksum of what it read, never a MAC).
            sa.Column(CHECKSUM_COLUMN, sa.BigInteger, nullable=True),
            sa.Column(MAC_COLUMN, sa.String(MAC_LENGTH), nullable=True),
            # Why the last store that indexed the record could not read it (its
            # class missing there, the allow-list, damage...): the row is kept,
            # flagged, and each store instance tries it again on its first query.
            sa.Column(UNREADABLE_COLUMN, sa.Text, nullable=True),
            # The version of the record file the row was made from (1 for a new
            # record, one more per commit that rewrites it; see effective_version).
            # NULL in rows written before versions: 0 while the file is the row's.
            sa.Column("_version", sa.Integer, nullable=True),
            # The checksum the row held before its last commit staged it: a
            # reader finding the file of a row that is staged but not settled
            # tells the previous version (the commit died before its rename)
            # from damage by it (see refresh).
            sa.Column(PREVIOUS_CHECKSUM, sa.BigInteger, nullable=True),
            # Saved directly or as a child, referenced or not (typedstore.references);
            # NULL for a row made from a file (whoever wrote it did not say).
            sa.Column(ROOT_COLUMN, sa.SmallInteger, nullable=True),
        ]
        self.table = sa.Table("records", new_metadata(), *columns)
        #: Index columns this store added (or made again with a new type) on open.
        self.added: list[str] = []
        self._columns_version: int | None = None
        # Set while refresh() indexes records: the (id, error) of each record whose
        # values the row model refused.
        self._refused: list[tuple[str, SaveError]] | None = None
        self._model_name = getattr(row_model, "__name__", None) or "the base columns"
        # Validation follows the row model (its NOT NULLs), not the relaxed index columns.
        self.rows = RowBuilder(model_table, row_model)
        # A URL object: a path holding "%" or "?" must not be parsed as URL text.
        self.engine = create_store_engine(sa.URL.create("sqlite", database=str(path)))
        with self.engine.connect().execution_options(sqlite_immediate=True) as conn, \
                conn.begin():
            existed = sa.inspect(conn).has_table("records")
            self.table.create(conn, checkfirst=True)
            # One row per reference from one record to another (ids as text).
            conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS refs (source TEXT NOT NULL, "
                                 "target TEXT NOT NULL, PRIMARY KEY (source, target)) "
                                 "WITHOUT ROWID")
            conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_refs_target ON refs (target)")
            self._upgrade_rows(conn, existed)
            self._widen(conn)
            self._check_coverage(conn)
        self.synced = False
        self._raw: Any = None
        self._raw_pid = 0
        self._unsettled: tuple[list[tuple[str, str]], list[tuple[str, str]]] = ([], [])
        self._commits = 0
        self._writer = ""
        self._compile_commit_sql()

    def _upgrade_rows(self, conn: sa.Connection, existed: bool) -> None:
        """Make the rows of an index written before :data:`ROW_FORMAT` again from the
        pickles (a query rebuilds rows marked as being written), and record the format."""
        formats = sa.Table("index_format", sa.MetaData(),
                           sa.Column("row_format", sa.Integer, nullable=False))
        formats.create(conn, checkfirst=True)
        found = conn.execute(sa.select(formats.c.row_format)).scalar()
        if found is not None and found >= ROW_FORMAT:
            return
        if existed:
            marked = conn.execute(self.table.update().values(
                _pending=WRITING, _writer=REINDEX)).rowcount
            if marked:
                log.info("file store index: %d row(s) of an older format are indexed again "
                         "from the pickles", marked)
        conn.execute(formats.delete())
        conn.execute(formats.insert().values(row_format=ROW_FORMAT))

    def _widen(self, conn: sa.Connection) -> None:
        """Add this store's columns the index lacks, and make again those whose values
        are of another kind in this row model (a field changed from ``int`` to
        ``str``: :func:`typedstore.schema.column_kind`); their rows are marked for
        indexing again from the pickles (and the columns' version bumped)."""
        have = {c["name"]: c["type"] for c in sa.inspect(conn).get_columns("records")}
        retyped = [c for c in self.table.columns if c.name in have
                   and c.name != "id" and not c.name.startswith("_")
                   and None not in (column_kind(have[c.name], conn.dialect),
                                    column_kind(c.type, conn.dialect))
                   and column_kind(have[c.name], conn.dialect) != column_kind(c.type,
                                                                              conn.dialect)]
        added = [c for c in self.table.columns if c.name not in have]
        quote = conn.dialect.identifier_preparer.quote
        for column in retyped:
            log.warning("file store index: column %s held %s values, the row model %s "
                        "declares %s: made again and indexed again from the pickles",
                        column.name, column_kind(have[column.name], conn.dialect),
                        self._model_name, column_kind(column.type, conn.dialect))
            conn.exec_driver_sql(f"DROP INDEX IF EXISTS {quote('ix_records_' + column.name)}")
            conn.exec_driver_sql(f"ALTER TABLE records DROP COLUMN {quote(column.name)}")
        for column in [*retyped, *added]:
            kind = column.type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE records ADD COLUMN {quote(column.name)} {kind}")
        # Typedstore's own columns (integrity) start empty: nothing to index again.
        fields = [c for c in [*added, *retyped] if not c.name.startswith("_")]
        if fields:
            self.added = [c.name for c in fields]
            log.info("file store index: added column(s) %s; re-indexing from the pickles",
                     ", ".join(c.name for c in fields))
            # Marked as being written: the next query of any store makes them again
            # (a store not covering every column would leave "others stale" rows).
            conn.execute(self.table.update().values(_pending=WRITING, _writer=REINDEX))
        if added or retyped:
            for column in [*added, *retyped]:
                if column.index:
                    conn.exec_driver_sql(
                        f"CREATE INDEX IF NOT EXISTS {quote('ix_records_' + column.name)} "
                        f"ON records ({quote(column.name)})")
            version = conn.exec_driver_sql("PRAGMA user_version").scalar() or 0
            conn.exec_driver_sql(f"PRAGMA user_version = {int(version) + 1}")

    def _check_coverage(self, conn: sa.Connection) -> None:
        """Recompute :attr:`covers_all` when another store added columns since we looked.

        ``PRAGMA user_version`` counts column additions, so the check costs one
        pragma read per commit, not an inspection of the table.
        """
        version = conn.exec_driver_sql("PRAGMA user_version").scalar() or 0
        if version != self._columns_version:
            have = {c["name"] for c in sa.inspect(conn).get_columns("records")}
            self.covers_all = have <= set(self.table.c.keys())
            self._columns_version = version

    # ------------------------------------------------------------ writing

    def values(self, obj: Any, id_: Any) -> dict[str, Any]:
        """The indexed values of ``obj``; raises SaveError if a field does not validate
        (noted, while :meth:`refresh` runs, for the error it raises)."""
        try:
            return dict(zip(self.rows.names, self.rows.values(obj, id_), strict=True))
        except SaveError as exc:
            if self._refused is not None:
                self._refused.append((str(id_), exc))
            raise

    # Writes (stage, settle, refresh) run precompiled SQL on a driver connection
    # of its own: building SQLAlchemy statements per commit cost more than the
    # SQLite work itself.

    def _compile_commit_sql(self) -> None:
        columns = list(self.table.columns)
        quote = self.engine.dialect.identifier_preparer.quote
        names = ", ".join(quote(c.name) for c in columns)
        marks = ", ".join("?" for _ in columns)
        # The previous checksum comes from the row being replaced, not the new values.
        # A commit's row: as the SQL stores' _root (statements.RecordStatements);
        # a row made from a file (NULL) keeps what the row said.
        root = (f"CASE WHEN excluded.{ROOT_COLUMN} IS NULL THEN records.{ROOT_COLUMN} "
                f"WHEN records.{ROOT_COLUMN} = {CHILD} AND excluded.{ROOT_COLUMN} = {CHILD} "
                f"THEN {CHILD} WHEN records.{ROOT_COLUMN} = {ROOT} AND excluded.{ROOT_COLUMN} "
                f"= {ROOT} THEN {ROOT} ELSE {REFERENCED_ROOT} END")
        updates = ", ".join(
            f"{quote(c.name)} = records.{CHECKSUM_COLUMN}" if c.name == PREVIOUS_CHECKSUM
            else f"{quote(c.name)} = {root}" if c.name == ROOT_COLUMN
            else f"{quote(c.name)} = excluded.{quote(c.name)}"
            for c in columns if c.name != "id")
        self._seal_sql = (f"SELECT {CHECKSUM_COLUMN}, {MAC_COLUMN}, _stamp, _pending, "
                          "_writer, _version FROM records WHERE id = ?")
        self._upsert_sql = (f"INSERT INTO records ({names}) VALUES ({marks}) "
                            f"ON CONFLICT (id) DO UPDATE SET {updates}")
        dialect = self.engine.dialect
        self._columns = [
            (c.name, c.type.dialect_impl(dialect).bind_processor(dialect)) for c in columns
        ]

    def _driver(self) -> Any:
        if self._raw is None or self._raw_pid != os.getpid():
            pooled = self.engine.raw_connection()
            self._raw = pooled.driver_connection
            pooled.detach()
            self._raw_pid = os.getpid()
        return self._raw

    def _commit_sql(self, work: Callable[[Any], None]) -> None:
        db = self._driver()
        db.execute("BEGIN IMMEDIATE")
        try:
            work(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _row_params(self, row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(
            (process(row.get(name)) if process is not None else row.get(name))
            for name, process in self._columns
        )

    def stage(self, writes: Sequence[tuple[str, dict[str, Any]]],
              deletes: Iterable[str], edges: Iterable[tuple[str, str]] = (),
              held: Iterable[str] = ()) -> None:
        """Before the renames: the new rows, marked as being written, the
        references of the records written (``edges``: ``(source, target)``,
        replacing what written and deleted records referenced), the records
        referenced without being written (``held``) marked as referenced, and
        the previous commit's rows settled, in one transaction."""
        self._commits += 1
        # A store that does not cover every column says so in its token: a query
        # may settle the row without reading the file only if nothing is missing.
        writer = self._writer = (f"{os.getpid()}:{id(self)}:{self._commits}"
                                 f"{'' if self.covers_all else PARTIAL}")
        rows = [self._row_params({"id": id_, **values, "_seqno": _seqno(id_),
                                  "_pending": WRITING, "_writer": writer})
                for id_, values in writes]
        marks = [(WRITING, writer, id_) for id_ in deletes]
        sources = [(id_,) for id_, _ in writes] + [(id_,) for id_ in deletes]
        edges = list(edges)
        referenced = [(id_,) for id_ in held]

        def work(db: Any) -> None:
            self._settle_in(db)
            db.executemany(self._upsert_sql, rows)
            if marks:
                db.executemany("UPDATE records SET _pending = ?, _writer = ? WHERE id = ?",
                               marks)
            db.executemany("DELETE FROM refs WHERE source = ?", sources)
            if edges:
                db.executemany("INSERT OR IGNORE INTO refs (source, target) VALUES (?, ?)",
                               edges)
            if referenced:
                db.executemany(f"UPDATE records SET {ROOT_COLUMN} = {REFERENCED_ROOT} "
                               f"WHERE id = ? AND {ROOT_COLUMN} = {ROOT}", referenced)

        self._commit_sql(work)

    def defer_settle(self, written: Iterable[str], deletes: Iterable[str]) -> None:
        """After the renames: the rows staged last are true; record it with the next write."""
        self._unsettled[0].extend((id_, self._writer) for id_ in written)
        self._unsettled[1].extend((id_, self._writer) for id_ in deletes)

    def settle_own(self) -> None:
        """Settle what :meth:`defer_settle` recorded (caller holds the commit lock)."""
        if self._unsettled[0] or self._unsettled[1]:
            self._commit_sql(self._settle_in)

    def _settle_in(self, db: Any) -> None:
        written, deletes = self._unsettled
        if not (written or deletes):
            return
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version != self._columns_version:
            have = {row[1] for row in db.execute("PRAGMA table_info(records)")}
            self.covers_all = have <= set(self.table.c.keys())
            self._columns_version = version
        done = SETTLED if self.covers_all else OTHERS_STALE
        # Only rows still as we staged them: since then another process may have
        # rebuilt them, or staged its own write (which it, or a query, settles).
        db.executemany(
            "UPDATE records SET _pending = ? WHERE id = ? AND _pending = ? AND _writer = ?",
            [(done, id_, WRITING, writer) for id_, writer in written])
        db.executemany("DELETE FROM records WHERE id = ? AND _pending = ? AND _writer = ?",
                       [(id_, WRITING, writer) for id_, writer in deletes])
        self._unsettled = ([], [])

    # ------------------------------------------------------------ repairing

    def refresh(
        self,
        directory: Path,
        names: Callable[[], list[str]],
        extract: Callable[[str], Extracted],
        watch: bool = False,
    ) -> None:
        """Make the index agree with the files (see the module docstring).

        The caller holds the store's commit lock. A row a commit staged whose
        file carries the stamp it staged is true as it is: it is settled
        without reading the file (the writer made it, whatever classes this
        reader lacks). Other rows and files are indexed from the pickles:
        ``extract(name)`` returns the record's indexed values, why it could
        not be read, and the checksum of the bytes it read. A record that
        cannot be read keeps a row, flagged (``_unreadable``): the writer's
        values when its row describes this very file, else state
        ``UNKNOWN`` and no fields; each store instance tries flagged rows
        again on its first query. With ``watch`` (a store that other
        programs write, GC3Pie's), every record file is compared with the
        stamp its row was made from, on every call: rows of files rewritten
        or added by others are made again.
        """
        self.settle_own()
        t = self.table
        with self.engine.connect() as conn:
            self._check_coverage(conn)
            stale = conn.execute(sa.select(t.c.id, t.c._pending, t.c._writer, t.c._stamp).where(
                t.c._pending == WRITING if not self.covers_all
                else t.c._pending != SETTLED)).all()
            flagged: list[str] = [] if self.synced else [r[0] for r in conn.execute(
                sa.select(t.c.id).where(t.c[UNREADABLE_COLUMN].is_not(None)))]
            stamps: dict[str, str | None] | None = None
            if watch:
                stamps = {r[0]: r[1] for r in conn.execute(sa.select(t.c.id, t.c._stamp))}
                known: set[str] | None = set(stamps)
            else:
                known = None if self.synced else {r[0] for r in conn.execute(sa.select(t.c.id))}
        rebuild: list[str] = []
        settle: list[tuple[int, str, str]] = []
        for id_, pending, writer, stamp in stale:
            if (pending == WRITING and writer and writer != REINDEX and stamp is not None
                    and file_stamp(directory / id_) == stamp
                    and (not writer.endswith(PARTIAL) or not self.covers_all)):
                # The commit that staged it renamed its file: the row is its writer's.
                settle.append((SETTLED if not writer.endswith(PARTIAL) else OTHERS_STALE,
                               id_, writer))
            else:
                rebuild.append(id_)
        gone: list[str] = []
        if known is not None:
            present = set(names())
            rebuild += sorted(present - known)
            gone += sorted(known - present)
        queued = set(rebuild) | {id_ for _, id_, _ in settle}
        rebuild += [id_ for id_ in flagged if id_ not in queued and id_ not in gone]
        if stamps is not None:
            queued = set(rebuild) | {id_ for _, id_, _ in settle}
            for id_, stamp in stamps.items():
                if id_ not in queued and id_ not in gone and \
                        record_stamp(directory, id_) != stamp:
                    rebuild.append(id_)
        if not (rebuild or gone or settle):
            self.synced = True
            return
        done = SETTLED if self.covers_all else OTHERS_STALE
        rows = []
        rebuilt_refs: dict[str, list[str]] = {}
        refused: list[tuple[str, SaveError]] = []
        unreadable = 0
        for id_ in rebuild:
            before = record_stamp(directory, id_)
            if before is None:
                gone.append(id_)
                continue
            self._refused = []
            try:
                values, problem, read_checksum, refs = extract(id_)
            finally:
                noted, self._refused = self._refused, None
            if noted:
                # It loads, but the row model refuses it (a required field it
                # lacks, a value of another type): never left out of queries
                # silently. Its row stays as it was, marked.
                refused.append(noted[-1])
                continue
            if values is None and problem is None:
                gone.append(id_)  # removed while it was read
                continue
            # Rewritten while it was read: no stamp, so it is looked at again.
            after = record_stamp(directory, id_)
            stamp = before if after == before else None
            old = self._row(id_)
            version = _rebuilt_version(old, stamp)
            if old is not None and old["_stamp"] is not None and old["_stamp"] == stamp:
                # The row describes this very file: its writer's checksum and MAC hold.
                seal = {CHECKSUM_COLUMN: old[CHECKSUM_COLUMN], MAC_COLUMN: old[MAC_COLUMN]}
            elif old is not None and _damaged(old, read_checksum, stamp, watch):
                # Neither the bytes its writer recorded nor those it replaced: a
                # damaged file (in a store no other program writes). The row keeps
                # the writer's values, checksum and MAC, so queries find the record
                # and loading it is a DamagedRecordError, never the damage indexed
                # as if it were the record.
                seal = {CHECKSUM_COLUMN: old[CHECKSUM_COLUMN], MAC_COLUMN: old[MAC_COLUMN]}
                values = {k: v for k, v in old.items() if not k.startswith("_")}
                problem = ("damaged: its file matches neither the checksum its writer "
                           "recorded nor the one before")
                version = old["_version"]
                log.warning("file store index: record %s is damaged (%s); its row is kept, "
                            "flagged", id_, problem)
            else:
                # Another version of the file than the writer's (or no writer's row):
                # the checksum of what was read, and never a MAC (only a key holder
                # signs).
                seal = {CHECKSUM_COLUMN: read_checksum if stamp is not None else None,
                        MAC_COLUMN: None}
                if values is None:
                    old = None  # the writer's values describe another version
            if values is None:
                unreadable += 1
                values = {k: v for k, v in (old or {}).items() if not k.startswith("_")}
                values.setdefault("state", UNKNOWN_STATE)
            if refs is not None and not (problem or "").startswith("damaged"):
                # Read from the bytes (whatever classes this reader lacks); a
                # damaged file's row keeps its writer's references.
                rebuilt_refs[id_] = refs
            rows.append(self._row_params({**values, "id": id_, "_seqno": _seqno(id_),
                                          "_pending": done, "_stamp": stamp, **seal,
                                          "_version": version, UNREADABLE_COLUMN: problem}))
        if rows:
            log.info("file store index: indexed %d record(s) from their pickles%s", len(rows),
                     f" ({unreadable} unreadable here, kept and flagged)" if unreadable else "")

        def work(db: Any) -> None:
            db.executemany(
                "UPDATE records SET _pending = ? WHERE id = ? AND _pending = 1 AND _writer = ?",
                settle)
            db.executemany(self._upsert_sql, rows)
            db.executemany("DELETE FROM records WHERE id = ?", [(id_,) for id_ in gone])
            db.executemany("DELETE FROM refs WHERE source = ?",
                           [(id_,) for id_ in [*rebuilt_refs, *gone]])
            db.executemany("INSERT OR IGNORE INTO refs (source, target) VALUES (?, ?)",
                           [(id_, target) for id_, targets in rebuilt_refs.items()
                            for target in targets])

        self._commit_sql(work)
        if refused:
            raise self._refusal(directory, refused)
        self.synced = True

    def _row(self, id_: str) -> dict[str, Any] | None:
        """The index row of record ``id_`` (this store's columns), if any."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(self.table).where(self.table.c.id == id_)).first()
        return None if row is None else dict(row._mapping)

    # ------------------------------------------------------------ integrity

    def seal(self, id_: str) -> Seal | None:
        """``(checksum, MAC, stamp, pending, writer, version)`` of record ``id_``'s
        row, if it has one (one indexed lookup on the index's own connection:
        every load asks)."""
        row: Seal | None = self._driver().execute(self._seal_sql, (id_,)).fetchone()
        return row

    def versions(self, ids: Sequence[str]) -> dict[str, VersionRow]:
        """``(_version, _stamp, _pending, _writer)`` of the rows of ``ids`` that
        have one, by id (:data:`VERSION_CHUNK` ids per statement, on the
        index's own connection)."""
        db = self._driver()
        found: dict[str, VersionRow] = {}
        for start in range(0, len(ids), VERSION_CHUNK):
            chunk = list(ids[start:start + VERSION_CHUNK])
            marks = ", ".join("?" for _ in chunk)
            for id_, version, stamp, pending, writer in db.execute(
                    "SELECT id, _version, _stamp, _pending, _writer FROM records "
                    f"WHERE id IN ({marks})", chunk):
                found[id_] = (version, stamp, pending, writer)
        return found

    def referrers(self, ids: Sequence[str]) -> dict[str, set[str]]:
        """``target -> ids of indexed records referencing it``, for ``ids``."""
        db = self._driver()
        found: dict[str, set[str]] = {}
        for start in range(0, len(ids), VERSION_CHUNK):
            chunk = list(ids[start:start + VERSION_CHUNK])
            marks = ", ".join("?" for _ in chunk)
            for source, target in db.execute(
                    "SELECT r.source, r.target FROM refs r JOIN records s ON s.id = r.source "
                    f"WHERE r.target IN ({marks})", chunk):
                found.setdefault(target, set()).add(source)
        return found

    def children(self, ids: Sequence[str]) -> dict[str, list[str]]:
        """``source -> ids it references``, for those of ``ids`` that reference any."""
        db = self._driver()
        found: dict[str, list[str]] = {}
        for start in range(0, len(ids), VERSION_CHUNK):
            chunk = list(ids[start:start + VERSION_CHUNK])
            marks = ", ".join("?" for _ in chunk)
            for source, target in db.execute(
                    f"SELECT source, target FROM refs WHERE source IN ({marks})", chunk):
                found.setdefault(source, []).append(target)
        return found

    def mark_dead(self) -> int:
        """Mark and sweep's mark, in the index: the ids of child records that
        no root reaches go into the temporary table ``pack_dead`` of the index's
        own connection; returns how many. The caller holds the commit lock."""
        db = self._driver()
        db.execute("DROP TABLE IF EXISTS temp.pack_live")
        db.execute("DROP TABLE IF EXISTS temp.pack_dead")
        db.execute("CREATE TEMP TABLE pack_live (id TEXT PRIMARY KEY) WITHOUT ROWID")
        db.execute("CREATE TEMP TABLE pack_dead (id TEXT PRIMARY KEY) WITHOUT ROWID")
        db.execute(
            "INSERT INTO pack_live (id) WITH RECURSIVE reach (id) AS ("
            f"SELECT id FROM records WHERE {ROOT_COLUMN} IS NULL OR {ROOT_COLUMN} <> {CHILD} "
            "UNION SELECT r.target FROM refs r JOIN reach ON r.source = reach.id) "
            "SELECT id FROM reach")
        db.execute(
            f"INSERT INTO pack_dead (id) SELECT id FROM records WHERE {ROOT_COLUMN} = {CHILD} "
            "AND id NOT IN (SELECT id FROM pack_live)")
        db.execute("DROP TABLE temp.pack_live")
        return int(db.execute("SELECT COUNT(*) FROM pack_dead").fetchone()[0])

    def dead_batches(self, size: int) -> Iterator[list[str]]:
        """The ids :meth:`mark_dead` found, ``size`` at a time (one short read each)."""
        db = self._driver()
        last = ""
        try:
            while True:
                batch = [r[0] for r in db.execute(
                    "SELECT id FROM pack_dead WHERE id > ? ORDER BY id LIMIT ?", (last, size))]
                if not batch:
                    return
                last = batch[-1]
                yield batch
        finally:
            db.execute("DROP TABLE IF EXISTS temp.pack_dead")

    def drop_dangling_references(self) -> None:
        """Remove references whose source record is gone."""
        self._commit_sql(lambda db: db.execute(
            "DELETE FROM refs WHERE source NOT IN (SELECT id FROM records)"))

    def mark_all(self) -> int:
        """Mark every row to be made again from its file by the next refresh."""
        marked: list[int] = []
        self._commit_sql(lambda db: marked.append(db.execute(
            "UPDATE records SET _pending = ?, _writer = ?", (WRITING, REINDEX)).rowcount))
        self.synced = False
        return marked[0]

    def count(self) -> int:
        return int(self._driver().execute("SELECT COUNT(*) FROM records").fetchone()[0])

    def store_mac(self, id_: str, stamp: str, mac: str, payload_checksum: int) -> bool:
        """Record ``mac`` as record ``id_``'s MAC, and ``stamp`` as its file's, if
        its row describes that file: made from it (same stamp), or settled with
        the same checksum (the file's bytes are the row's, its stamp changed:
        touched, copied back). False otherwise (the caller holds the commit lock
        and has checked the file is still stamped ``stamp``)."""
        changed = []

        def work(db: Any) -> None:
            changed.append(db.execute(
                f"UPDATE records SET {MAC_COLUMN} = ?, _stamp = ? WHERE id = ? AND "
                f"(_stamp = ? OR (_pending = {SETTLED} AND {CHECKSUM_COLUMN} = ?))",
                (mac, stamp, id_, stamp, payload_checksum)).rowcount)

        self._commit_sql(work)
        return bool(changed[0])

    def unreadable(self) -> list[tuple[str, str]]:
        """``(id, why)`` of the records flagged as unreadable by their last indexer."""
        t = self.table
        with self.engine.connect() as conn:
            return [(r[0], r[1]) for r in conn.execute(
                sa.select(t.c.id, t.c[UNREADABLE_COLUMN])
                .where(t.c[UNREADABLE_COLUMN].is_not(None)).order_by(t.c._seqno, t.c.id))]

    def _refusal(self, directory: Path, refused: list[tuple[str, SaveError]]) -> SchemaError:
        """The error of a query over records the row model refuses."""
        shown = "; ".join(f"{id_}: {error}" for id_, error in refused[:5])
        more = f" (and {len(refused) - 5} more)" if len(refused) > 5 else ""
        fields = sorted({e.field for _, e in refused if e.field})
        return SchemaError(
            f"file store {directory}: {len(refused)} stored record(s) do not fit the row "
            f"model {self._model_name} (field(s) {', '.join(fields) or '?'}), so queries "
            f"would leave them out; no query runs until they fit: {shown}{more}. Give the "
            "field(s) a default or make them optional ('X | None'), or bring the records "
            "to the row model: open the store with its previous row model and fix them "
            "(typedstore.register_upgrade and typedstore.rewrite_all) or remove them",
            table=str(directory))

    def after_fork(self) -> None:
        """In a forked child: the parent's connection and pending settles are not ours."""
        self._raw = None
        self._unsettled = ([], [])
        self.engine.dispose(close=False)

    def close(self) -> None:
        if self._raw is not None and self._raw_pid == os.getpid():
            self._raw.close()
        self._raw = None
        self.engine.dispose()
