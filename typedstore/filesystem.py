"""FilesystemStore: one pickle file per object in a directory, GC3Pie's layout.

On-disk format (a GC3Pie jobs directory opens as is):

* ``DIR/<id>`` -- the pickle of the object whose id is ``<id>`` (``job.12``);
* ``DIR/<id>.OLD`` -- a backup GC3Pie leaves while replacing a record; it is
  read when ``DIR/<id>`` is missing (GC3Pie died between its two renames),
  and removed when typedstore writes or removes ``<id>``;
* nothing else: GC3Pie 2.6.8's ``FilesystemStore.list()`` returns every name
  in ``DIR`` that does not end in ``.OLD``, so typedstore keeps its own files
  in a sibling directory, ``PARENT/.NAME.typedstore/`` (``META`` below), on the
  same file system so that renames out of it are atomic;
* ``META/next_id`` -- the id counter (next free number) and its ``.lock``;
  created on first use, starting above every id already present;
* ``META/tmp/`` -- records being written;
* ``META/journal`` -- exists only while a multi-record transaction commits, or
  after a crash during one (see below);
* ``META/index.db`` -- the sidecar index of typed fields.

Stores made by typedstore before this layout keep ``DIR/.typedstore/`` (it is
used when it exists). When ``DIR`` is a mount point of its own (the sibling
would be on another file system) the metadata stays in ``DIR/.typedstore`` too,
with a warning that GC3Pie would list it.

Crash safety: a record is written to a temporary file in ``META/tmp``, flushed,
fsynced and renamed over the record, then the directory is fsynced. A killed
writer leaves either the old record or the new one, never a torn one. A
transaction that writes several records first makes every temporary file
durable, then writes a journal of the renames and deletions, applies them, and
removes the journal; whoever opens the store next after a crash in between
finishes the journal. Commits and recovery of journals hold
``META/commit.lock`` so processes never apply the same journal at once.

Versions and conflicts: the version of each record lives in its index row
(never in the record file, which stays GC3Pie's); see
:mod:`typedstore.fileindex`. Under the commit lock, before staging anything,
a commit compares the stored version of every record it rewrites with the
version the saved object was read at; any difference refuses the whole
commit with :class:`~typedstore.errors.ConflictError` (its temporary files
removed, nothing written).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from . import mounts, tempfiles
from .connections import Timeouts
from .defaults import (
    BACKUP_SUFFIX,
    DEFAULT_PROTOCOL,
    FILE_ID_BLOCK_SIZE,
    FILESTORE_META_DIR,
    MAX_RECORD_BYTES,
    NETWORK_FILESYSTEM,
    STREAM_BATCH_SIZE,
)
from .errors import (
    ConflictError,
    LoadError,
    NotFoundError,
    ReferencedError,
    SaveError,
    StoreError,
)
from .fileindex import (
    WRITING,
    Extracted,
    FileIndex,
    Seal,
    effective_version,
    file_stamp,
    record_stamp,
)
from .gc3pie_ids import Gc3PieCounter
from .ids import BlockSequence, FileCounter, Id, IdFactory
from .integrity import CHECKSUM_COLUMN, MAC_COLUMN, Record, checksum
from .locks import ProcessLock
from .query import Query, QuerySource
from .references import CHILD, PACK_SAMPLE, ROOT, ROOT_COLUMN, PackReport, referenced_ids
from .store import Store
from .urls import StoreUrl, parse_store_url

log = logging.getLogger(__name__)

_TMP_SUFFIX = ".tmp"
#: Seconds to wait before reading again a record that did not unpickle and has
#: no backup (a GC3Pie process may be rewriting it in place).
GC3PIE_REWRITE_PAUSE = 0.05
#: In the metadata directory: present when new ids come from GC3Pie's counter.
GC3PIE_MARKER = "gc3pie-ids"
_DELETE = None  # pending-operation marker for a removal


class _NotARecord(OSError):
    """A directory entry that cannot hold a record: not a regular file (a FIFO,
    a device, a directory), or over :data:`MAX_RECORD_BYTES`."""


def _read_record_file(path: str) -> tuple[bytes, os.stat_result]:
    """The bytes of record file ``path`` and its ``fstat``. Raises
    FileNotFoundError, :class:`_NotARecord`, or another OSError.

    Opened without blocking (a FIFO planted in the directory would block an
    ``open`` for good) and checked before reading: only a regular file of at
    most :data:`~typedstore.defaults.MAX_RECORD_BYTES` is read (a link to
    ``/dev/zero`` or a huge sparse file would take every byte of memory).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _NotARecord(f"{path} is not a regular file")
        if st.st_size > MAX_RECORD_BYTES:
            raise _NotARecord(f"{path} is {st.st_size} bytes, over the {MAX_RECORD_BYTES} "
                              "bytes a record may have (typedstore.defaults.MAX_RECORD_BYTES)")
        with os.fdopen(fd, "rb", closefd=False) as stream:
            payload = stream.read(MAX_RECORD_BYTES + 1)
        if len(payload) > MAX_RECORD_BYTES:
            raise _NotARecord(f"{path} grew over {MAX_RECORD_BYTES} bytes while read")
        return payload, st
    finally:
        os.close(fd)


def _fsync_dir(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FilesystemStore(Store, QuerySource, schemes=("file",)):
    """Save and load objects as pickle files in a directory.

    Args:
        directory: the store directory (a path or ``file://`` URL); created if missing.
        idfactory: issues ids; by default ``ClassName.N`` ids numbered by the
            counter in ``PARENT/.NAME.typedstore/next_id``.
        protocol: pickle protocol of new records.
        durable: fsync files and the directory on commit (default). Without it a
            killed process still never leaves a torn record, but a power loss
            may lose the last commits.
        allowed_classes: an allow-list of ``module.Class`` names (or ``module.*``)
            that records may name; ``None`` allows every class.
        row_model: a row model (as for ``SqlStore``): its extracted fields are
            validated on save and kept in the sidecar index, which answers
            :meth:`query` without unpickling records.
        gc3pie_compatible: share the directory with GC3Pie 2.6.8: take new
            ids from GC3Pie's counter file (``$GC3PIE_ID_FILE``, default
            ``~/.gc3/next_id.txt``, under GC3Pie's lock), so GC3Pie processes
            writing the same directory never reuse one of typedstore's ids
            (GC3Pie overwrites a record whose id it issues again), and write
            ids into payloads as GC3Pie's ``Id`` class. ``None`` (default): on
            for a directory that held records when typedstore first opened it.
            The choice is remembered.
        metadata_dir: where typedstore keeps its own files for this store
            (default: the sibling ``PARENT/.NAME.typedstore``); for a jobs
            directory whose parent is not writable. Give every process the same
            one, on the file system of the store (records are renamed from it).
        extra_fields: GC3Pie-style ``{Column: extractor}``, indexed leniently.
        lock_timeout: seconds a commit or an id reservation waits for another
            process's lock (``META/commit.lock``, ``META/next_id.lock``) before
            raising :class:`LockTimeout`; ``None``:
            :data:`~typedstore.defaults.LOCK_TIMEOUT`.
        network_filesystem: ``"warn"`` (once), ``"error"`` (StoreError) or
            ``"ignore"`` when the directory is on a network file system (NFS,
            SMB, sshfs...), whose locks and renames may not hold between
            hosts; ``None``: :data:`~typedstore.defaults.NETWORK_FILESYSTEM`.
            See :mod:`typedstore.mounts`.
        signing_keys: secret keys (as for ``SqlStore``); each record's MAC is
            kept in the sidecar index, never in the record file.
        **extra: accepted and ignored, for compatibility with ``SqlStore``
            (``connect_timeout``, ``statement_timeout`` and ``read_timeout``
            are still checked: a wrong value raises ValueError, as there).

    Attributes:
        directory (Path): the store directory.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | StoreUrl = "~/.typedstore/jobs",
        idfactory: IdFactory | None = None,
        protocol: int = DEFAULT_PROTOCOL,
        durable: bool = True,
        allowed_classes: Any = None,
        missing_classes: str = "error",
        row_model: Any = None,
        extra_fields: Any = None,
        gc3pie_compatible: bool | None = None,
        metadata_dir: str | os.PathLike[str] | None = None,
        lock_timeout: float | None = None,
        network_filesystem: str | None = None,
        signing_keys: Any = None,
        conflicts: str = "error",
        **extra: Any,
    ) -> None:
        metadata = metadata_dir
        # Every timeout is checked, the ones a directory has no use for too:
        # a wrong value is an error on every backend, never ignored.
        timeouts = Timeouts.resolve(
            connect=extra.pop("connect_timeout", None), lock=lock_timeout,
            statement=extra.pop("statement_timeout", None), read=extra.pop("read_timeout", None))
        url = parse_store_url(directory)
        if url.scheme != "file":
            raise StoreError(f"FilesystemStore needs a directory, got {url}")
        if gc3pie_compatible is not None and not isinstance(gc3pie_compatible, bool):
            raise TypeError(f"gc3pie_compatible must be True, False or None, "
                            f"not {gc3pie_compatible!r}")
        self.directory = Path(url.target)
        mounts.check(str(self.directory.parent if not self.directory.exists()
                         else self.directory), f"file store {url.redacted}",
                     network_filesystem or NETWORK_FILESYSTEM)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store directory {self.directory}: {exc}") \
                from exc
        # Resolved: the same directory reached through a symbolic link must use
        # the same metadata (one id counter, one index, one commit lock).
        self._meta, inside = (Path(metadata), False) if metadata is not None else \
            default_metadata_dir(Path(os.path.realpath(self.directory)))
        first_open = not self._meta.exists()
        # Plain strings for the per-record hot path (pathlib costs more per call
        # than the system calls it wraps).
        self._dir = str(self.directory)
        self._journal = os.path.join(self._meta, "journal")
        try:
            self._meta.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create typedstore's metadata directory {self._meta} for the store "
                f"{self.directory} ({exc}); make {self._meta.parent} writable, or pass "
                "metadata_dir= a writable directory on the same file system") from exc
        # Temporary files sit beside the metadata, out of GC3Pie's listing (in
        # the directory itself, dot-named, for the older in-directory layout).
        self._tmpdir = self._dir if inside else os.path.join(self._meta, "tmp")
        os.makedirs(self._tmpdir, exist_ok=True)
        self._durable = durable
        self._lock_timeout = timeouts.lock
        self._commit_lock = ProcessLock(self._meta / "commit.lock", self._lock_timeout,
                                        url.redacted, "commit lock")
        self._tmp_counter = itertools.count()
        #: Writes of the open transaction: ``id -> (payload, index values, expected
        #: version, new)`` (``None`` expected: not checked; ``new``: an id just
        #: issued, so version 1 with nothing to look up), or ``_DELETE``.
        self._pending: dict[Any, tuple[bytes, dict[str, Any], int | None, bool] | None] = {}
        #: References of the records the open transaction writes: ``id -> (ids
        #: referenced, those of them it does not write)``.
        self._pending_refs: dict[Any, tuple[list[Any], list[Any]]] = {}
        #: Removals to refuse at commit if a record outside them references one.
        self._checked: set[Any] = set()
        self._references_known = False
        #: Records whose references this store could not read from their files.
        self._unscannable: dict[str, str] = {}
        #: Directory entries that are not records, warned about once.
        self._odd_entries: set[str] = set()
        #: Index rows a query read, by id: ``_sealed`` uses one (instead of a
        #: lookup) when it describes the file read.
        self._seal_hints: dict[str, Seal] = {}
        super().__init__(url, idfactory, protocol, allowed_classes, missing_classes,
                         signing_keys, conflicts)
        self._identity.stamp = os.path.realpath(self.directory)
        self._lock_wait = timeouts.lock
        self.row_model = row_model
        with self._index_errors("opening it"):
            self.index = FileIndex(self._meta / "index.db", row_model, extra_fields)
        self.table = self.index.table
        self.gc3pie_compatible = self._gc3pie_payloads = \
            self._gc3pie_mode(gc3pie_compatible, first_open)
        self._counter: FileCounter | Gc3PieCounter
        if self.gc3pie_compatible:
            self._counter = Gc3PieCounter(floor=self._largest_id_plus_one)
        else:
            self._counter = FileCounter(self._meta / "next_id", self._largest_id_plus_one,
                                        self._lock_timeout, self._describe())
        self._sequence = BlockSequence(self._counter, FILE_ID_BLOCK_SIZE)
        self.idfactory = self.idfactory.with_sequence(self._sequence)
        self._ignore_options(extra)
        self._sweep_temps()  # finishes an interrupted commit, then drops leftovers

    @contextlib.contextmanager
    def _index_errors(self, doing: str, error: type[StoreError] = StoreError,
                      id_: Any = None) -> Iterator[None]:
        """Turn a failure of the sidecar index (SQLite: a full disk, an I/O
        error, a damaged or locked database file) into ``error`` naming the
        store, what it was doing and the cause."""
        try:
            yield
        except (sqlite3.Error, sa.exc.SQLAlchemyError) as exc:
            cause = getattr(exc, "orig", None) or exc
            message = (f"{self._describe()}: the sidecar index {self._meta / 'index.db'} "
                       f"failed while {doing}: {cause}")
            raise (error(message, id_) if issubclass(error, (LoadError, SaveError))
                   else error(message)) from exc

    # ------------------------------------------------------------ ids and paths

    def _gc3pie_mode(self, wanted: bool | None, first_open: bool) -> bool:
        """Whether new ids come from GC3Pie's counter file; remembered in the metadata.

        Automatic (``wanted=None``): yes for a directory that held records
        before typedstore first opened it (GC3Pie wrote it, and GC3Pie
        processes may still write it), and then for good.
        """
        marker = self._meta / GC3PIE_MARKER
        if wanted is None:
            wanted = marker.exists() or (first_open and bool(self._record_names()))
            if wanted and not marker.exists():
                log.info("%s: a GC3Pie jobs directory: new ids come from GC3Pie's counter "
                         "file, shared with GC3Pie processes", self._describe())
        if wanted:
            marker.write_text("ids from GC3Pie's counter file ($GC3PIE_ID_FILE or "
                              "~/.gc3/next_id.txt)\n")
        elif marker.exists():
            marker.unlink()
        return wanted

    def _largest_id_plus_one(self) -> int:
        largest = 0
        for name in self._record_names():
            try:
                largest = max(largest, Id.parse(name)._seqno)
            except ValueError:
                if name.isdigit():
                    largest = max(largest, int(name))
        return largest + 1

    def _coerce_id(self, id_: Any) -> Any:
        """``id_`` as a record name: a string (an :class:`Id` for ``PREFIX.N``) or
        an ``int`` (not a ``bool``). Raises TypeError for another type,
        NotFoundError for a string that cannot name a record file."""
        if not isinstance(id_, (str, int)) or isinstance(id_, bool):
            raise TypeError(f"{self._describe()}: id {id_!r} is a {type(id_).__name__}; ids "
                            "of this store are strings")
        text = str(id_)
        if (not text or text.startswith(".") or "/" in text or os.sep in text or "\0" in text
                or text.endswith((BACKUP_SUFFIX, _TMP_SUFFIX))):
            raise NotFoundError(f"{self._describe()}: {text!r} is not a valid record id", id_)
        if isinstance(id_, str) and not isinstance(id_, Id):
            try:
                return Id.parse(text)
            except ValueError:
                return text
        return id_

    def _path(self, id_: Any) -> str:
        return os.path.join(self._dir, str(id_))

    def _record_names(self) -> list[str]:
        """The names of the records in the directory (a ``.OLD`` backup whose
        record is missing stands for it). Entries that cannot be records are
        left out, with one warning each per store object: dot-files and
        temporary names, what is not a regular file (directories, FIFOs,
        devices, broken or looping links), names that are not valid UTF-8 or
        number a record beyond a 64-bit id."""
        names = []
        with os.scandir(self.directory) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith("."):
                    continue
                backup = name.endswith(BACKUP_SUFFIX)
                if backup:
                    name = name[: -len(BACKUP_SUFFIX)]
                    if os.path.lexists(os.path.join(self._dir, name)):
                        continue
                why = _odd_name(name)
                if why is None:
                    try:
                        if not entry.is_file():
                            why = "is not a regular file"
                    except OSError as exc:
                        why = f"cannot be examined ({exc.strerror or exc})"
                if why is not None:
                    if entry.name not in self._odd_entries:
                        self._odd_entries.add(entry.name)
                        log.warning("%s: %r in the store directory %s; it is not a record "
                                    "(left out of list() and queries)", self._describe(),
                                    entry.name, why)
                    continue
                names.append(name)
        return names

    # ------------------------------------------------------------ reading

    def _read(self, id_: Any) -> Record:
        if id_ in self._pending:
            pending = self._pending[id_]
            if pending is _DELETE:
                raise NotFoundError(f"{self._describe()}: no record {id_}", id_)
            return Record(pending[0], None)
        path = self._path(id_)
        for candidate in (path, path + BACKUP_SUFFIX):
            try:
                payload, st = _read_record_file(candidate)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise LoadError(f"{self._describe()}: cannot read record {id_} "
                                f"({exc.strerror or exc})", id_) from exc
            if candidate is not path:
                return Record(payload, None)  # GC3Pie's backup: no checksum, no MAC
            return self._sealed(id_, payload, f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}")
        raise NotFoundError(f"{self._describe()}: no record {id_}", id_)

    def _sealed(self, id_: Any, payload: bytes, stamp: str, again: bool = True) -> Record:
        """The record with the checksum and MAC its index row holds, where they apply.

        They apply when the row was made from this very file (same stamp), and
        when the row is settled in a store no other program writes (a changed
        file there is a damaged or copied one). Not when the row was staged by
        a commit that has not renamed its file yet (or never will: it died), nor
        in a store shared with GC3Pie, whose rewrites change the stamp: the file
        is then loaded unchecked (and refused in a signed store, after one more
        look a moment later, once a commit in progress is through).
        """
        hint = self._seal_hints.pop(str(id_), None)
        # A query's row describing this very file saves the lookup.
        row: Seal | None
        if hint is not None and hint[2] == stamp:
            row = hint
        else:
            with self._index_errors(f"looking up record {id_}", LoadError, id_):
                row = self.index.seal(str(id_))
        if row is None:
            return Record(payload, None, stamp=stamp)
        stored_checksum, mac, row_stamp, pending, writer, row_version = row
        version = effective_version((row_version, row_stamp, pending, writer), stamp,
                                    self.gc3pie_compatible)
        if row_stamp == stamp or (pending != WRITING and not self.gc3pie_compatible):
            return Record(payload, version, stored_checksum, mac, stamp)
        if again and self._signer is not None:
            time.sleep(GC3PIE_REWRITE_PAUSE)
            try:
                payload, st = _read_record_file(self._path(id_))
            except OSError as exc:
                raise LoadError(f"{self._describe()}: cannot read record {id_} "
                                f"({exc.strerror or exc})", id_) from exc
            return self._sealed(id_, payload, f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}",
                                again=False)
        return Record(payload, version, stamp=stamp)

    def _read_backup(self, id_: Any) -> Record | None:
        """The ``.OLD`` copy of a record that did not load; without one, the record
        read again after a moment.

        GC3Pie 2.6.8 rewrites a record in place, after renaming the old file to
        ``.OLD`` (removed once it is done): a reader can catch the new file half
        written and find the backup gone by the time it looks for it.
        """
        path = self._path(id_)
        try:
            return Record(_read_record_file(path + BACKUP_SUFFIX)[0], None)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("%s: cannot read the backup of record %s: %s", self._describe(), id_,
                        exc)
            return None
        time.sleep(GC3PIE_REWRITE_PAUSE)
        try:
            return self._read(id_)
        except NotFoundError:
            return None

    def _exists(self, id_: Any) -> bool:
        if id_ in self._pending:
            return self._pending[id_] is not _DELETE
        path = self._path(id_)
        return os.path.exists(path) or os.path.exists(path + BACKUP_SUFFIX)

    def _ids(self) -> list[Any]:
        ids = {self._coerce_id(name) for name in self._record_names()}
        for id_, payload in self._pending.items():
            if payload is _DELETE:
                ids.discard(id_)
            else:
                ids.add(id_)
        return sorted(ids, key=_sort_key)

    # ------------------------------------------------------------ writing

    def _begin(self) -> None:
        self._pending.clear()
        self._pending_refs.clear()
        self._checked.clear()

    def _write(
        self, id_: Any, obj: Any, payload: bytes, *, new: bool, expected: int | None,
        must_exist: bool, root: bool = False,
    ) -> int | None:
        if must_exist and not self._exists(id_):
            raise NotFoundError(f"{self._describe()}: no record {id_} to replace", id_)
        if new and self._exists(id_):
            raise SaveError(
                f"{self._describe()}: new id {id_} is already taken by a record; the id "
                "factory's sequence is not this store's (shared between stores?)", id_)
        stored_checksum, mac = self._seal(id_, payload)
        earlier = self._pending.get(id_)
        if earlier is not None:
            # Written again in this transaction (the map holds no version for it
            # until the commit): the commit still checks what the first write expected.
            expected = earlier[2] if expected is None else expected
            new = earlier[3]
        # Checked (and the new version computed) at commit, under the commit lock.
        self._pending[id_] = (payload, {**self.index.values(obj, id_),
                                        CHECKSUM_COLUMN: stored_checksum, MAC_COLUMN: mac,
                                        ROOT_COLUMN: ROOT if root else CHILD},
                              expected, new)
        return None

    def _delete(self, id_: Any) -> None:
        if not self._exists(id_):
            raise NotFoundError(f"{self._describe()}: no record {id_} to remove", id_)
        self._pending[id_] = _DELETE
        self._pending_refs.pop(id_, None)

    def _rollback(self) -> None:
        self._pending.clear()
        self._pending_refs.clear()
        self._checked.clear()

    # ------------------------------------------------------------ references

    # The sidecar index keeps the references (a "refs" table, typedstore.fileindex):
    # a commit writes those of its records with their rows; rows made from files
    # (records GC3Pie wrote) get theirs read from the bytes. Checks that must see
    # every other writer's references run at commit, under the commit lock.

    _tracks_references = True

    def _write_references(self, id_: Any, refs: list[Any], held: list[Any],
                          fresh: bool, assumed: int | None = None) -> None:
        # Every commit replaces the references of what it writes.
        self._pending_refs[id_] = (refs, held)

    def _delete_unreferenced(self, id_: Any, force: bool) -> None:
        self._delete(id_)
        if not force:
            self._checked.add(id_)

    def _refuse_referenced(self, doomed: list[Any]) -> None:
        # At commit, under the commit lock (see _check_references).
        self._checked.update(doomed)

    def _repair_references(self, source: Any) -> list[Any]:
        return self._children_of([source]).get(source, [])

    def _shared_with_gc3pie(self) -> bool:
        return bool(self.gc3pie_compatible)

    def _know_references(self) -> None:
        # Once per store object: other typedstore writers index their own
        # records; a pack brings in what GC3Pie wrote since (each time).
        if self._references_known:
            return
        with self._lock, self._commit_lock, self._index_errors("bringing it up to date"):
            self.index.refresh(self.directory, self._record_names, self._extract,
                               watch=self.gc3pie_compatible)
        self._references_known = True

    def _scan_references(self, everything: bool) -> int:
        """Rows are made with their references (from the file, for files others
        wrote): bringing the index up to date is the scan; ``everything`` makes
        every row again from its file first."""
        with self._lock, self._commit_lock, self._index_errors("reading references"):
            marked = self.index.mark_all() if everything else 0
            self.index.refresh(self.directory, self._record_names, self._extract,
                               watch=self.gc3pie_compatible)
        return marked

    def _referrers_of(self, ids: Sequence[Any]) -> dict[Any, set[Any]]:
        """From the index, with the open transaction's own writes in their place
        (they are committed, and indexed, only at its end)."""
        with self._index_errors("reading references"):
            found = self.index.referrers([str(i) for i in ids])
        pending = self._pending_refs if self._own_txn() is not None else {}
        rewritten = {str(s) for s in pending} | {
            str(s) for s, entry in self._pending.items() if entry is _DELETE} \
            if self._own_txn() is not None else set()
        result = {self._coerce_id(t): {self._coerce_id(s) for s in sources
                                       if s not in rewritten}
                  for t, sources in found.items()}
        wanted = {str(i) for i in ids}
        for source, (targets, _) in pending.items():
            for target in targets:
                if str(target) in wanted:
                    result.setdefault(self._coerce_id(target), set()).add(source)
        return {t: sources for t, sources in result.items() if sources}

    def _children_of(self, ids: Sequence[Any]) -> dict[Any, list[Any]]:
        with self._index_errors("reading references"):
            found = self.index.children([str(i) for i in ids])
        result = {self._coerce_id(s): [self._coerce_id(t) for t in targets]
                  for s, targets in found.items()}
        if self._own_txn() is not None:
            for id_ in ids:
                if id_ in self._pending_refs:
                    result[id_] = list(self._pending_refs[id_][0])
                elif self._pending.get(id_, 0) is _DELETE:
                    result.pop(id_, None)
        return result

    def _refuse_unknown_references(self) -> None:
        gone = [name for name in self._unscannable if file_stamp(self._path(name)) is None]
        for name in gone:
            del self._unscannable[name]
        if self._unscannable:
            shown = "; ".join(f"{i}: {why}" for i, why in list(self._unscannable.items())[:5])
            raise StoreError(
                f"{self._describe()}: pack cannot know what {len(self._unscannable)} "
                f"record(s) reference, so it would risk removing what they hold: {shown}. "
                "Restore them, or remove them with remove(id, force=True)")

    def _check_references(self, pending: dict[Any, Any],
                          refs: dict[Any, tuple[list[Any], list[Any]]],
                          checked: set[Any]) -> None:
        """Under the commit lock, before anything is written: every record a
        written record references without writing it is still stored
        (:class:`ConflictError` if another writer removed it), and no record
        outside this commit's removals references one of the ``checked``
        removals (:class:`ReferencedError`; a record this commit writes counts
        with the references it writes now)."""
        deleted = {str(i) for i, entry in pending.items() if entry is _DELETE}
        written = {str(i) for i, entry in pending.items() if entry is not _DELETE}
        missing: dict[Any, list[Any]] = {}
        for source, (_, held) in refs.items():
            for target in held:
                name = str(target)
                if name in written:
                    continue
                if name in deleted or file_stamp(self._path(name)) is None:
                    missing.setdefault(source, []).append(target)
        if missing:
            source, gone = next(iter(missing.items()))
            raise ConflictError(
                f"{self._describe()}: record {source} references record(s) "
                f"{', '.join(map(str, gone[:10]))}, which another writer removed since this "
                "store read them; nothing of the commit was written",
                [t for targets in missing.values() for t in targets])
        if not checked:
            return
        names = sorted(str(i) for i in checked)
        with self._index_errors("reading references", SaveError, names[0]):
            found = self.index.referrers(names)
        for name in names:
            outside = {s for s in found.get(name, ()) if s not in deleted and s not in written
                       and file_stamp(self._path(s)) is not None}
            outside.update(str(s) for s, (targets, _) in refs.items()
                           if str(s) not in deleted and name in {str(t) for t in targets})
            if outside:
                real = sorted(outside, key=_sort_key)
                shown = ", ".join(real[:10]) + (" ..." if len(real) > 10 else "")
                raise ReferencedError(
                    f"{self._describe()}: record {name} is referenced by {len(real)} other "
                    f"record(s) ({shown}); nothing was removed. Remove them first, remove it "
                    "with cascade=True if they go with it, or force=True to leave them "
                    "referring to nothing", self._coerce_id(name),
                    [self._coerce_id(r) for r in real])

    def _pack(self, batch_size: int, bar: Any) -> PackReport:
        """Mark in the index, sweep through ordinary commits, all under the commit
        lock: no other writer commits until the pack is done (and one that
        references a removed record then gets ConflictError)."""
        report = PackReport()
        with self._commit_lock, self._index_errors("packing"):
            self.index.settle_own()
            bar.total(self.index.mark_dead())
            for batch in self.index.dead_batches(batch_size):
                ids = [self._coerce_id(name) for name in batch]
                with self.transaction():
                    for id_ in ids:
                        if self._exists(id_):
                            self._delete(id_)
                            report.removed += 1
                room = PACK_SAMPLE - len(report.sample)
                if room > 0:
                    report.sample += ids[:room]
                for id_ in ids:
                    self._identity.discard(id_)
                bar.advance(len(batch))
            self.index.settle_own()
            self.index.drop_dangling_references()
            report.kept = self.index.count()
        return report

    def _write_temp(self, id_: Any, payload: bytes) -> tuple[str, str]:
        """Write ``payload`` to a new dot-named temporary file; return its name and
        its stamp (:func:`~typedstore.fileindex.file_stamp`, kept by the rename)."""
        name = tempfiles.temp_name(id_, next(self._tmp_counter))
        path = os.path.join(self._tmpdir, name)
        try:
            with open(path, "wb") as stream:
                stream.write(payload)
                stream.flush()
                if self._durable:
                    os.fsync(stream.fileno())
                st = os.fstat(stream.fileno())
        except OSError as exc:
            # A full disk, a file-size or quota limit: the partial file goes, so
            # it keeps no space; so do dead writers' leftovers, for the next save.
            _unlink(path)
            self._sweep_temps()
            raise SaveError(
                f"{self._describe()}: record {id_} ({len(payload)} bytes pickled) could "
                f"not be written: {exc.strerror or exc}; nothing of the commit was "
                "written, the stored version is unchanged", id_) from exc
        return name, f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"

    def _commit(self) -> None:
        pending, self._pending = self._pending, {}
        refs, self._pending_refs = self._pending_refs, {}
        checked, self._checked = self._checked, set()
        if not pending:
            return
        staged: list[tuple[str, str | None]] = []  # (record name, temp name or None=delete)
        index_rows: list[tuple[str, dict[str, Any]]] = []
        # Record name -> (id, expected version, new) of each record written.
        written_ids: dict[str, tuple[Any, int | None, bool]] = {}
        try:
            for id_, entry in pending.items():
                if entry is _DELETE:
                    staged.append((str(id_), None))
                    continue
                payload, values, expected, new = entry
                written, stamp = self._write_temp(id_, payload)
                staged.append((str(id_), written))
                index_rows.append((str(id_), {**values, "_stamp": stamp}))
                written_ids[str(id_)] = (id_, expected, new)
        except BaseException:
            self._drop_temps(staged)
            raise
        deletes = [name for name, tmp_name in staged if tmp_name is None]
        first = staged[0][0]
        with self._commit_lock:
            # A journal here was left by a process that died mid-commit (a live
            # one holds this lock while its journal exists): finish it first.
            self._recover_journal()
            try:
                try:
                    versions = self._check_versions(written_ids)
                    self._check_references(pending, refs, checked)
                except BaseException:
                    self._drop_temps(staged)
                    raise
                for name, values in index_rows:
                    values["_version"] = versions[name]
                edges = [(str(source), str(target)) for source, (targets, _) in refs.items()
                         if pending.get(source) is not _DELETE for target in targets]
                held = {str(t) for source, (_, targets) in refs.items()
                        if pending.get(source) is not _DELETE for t in targets}
                self.index.stage(index_rows, deletes, edges, sorted(held))
                if len(staged) > 1:
                    tempfiles.replace_file(self._journal, json.dumps(staged))
                    if self._durable:
                        _fsync_dir(self._meta)
            except (OSError, sqlite3.Error, sa.exc.SQLAlchemyError) as exc:
                # Nothing is renamed yet: the commit did not happen. Its files go
                # (a full disk must not stay full of them); rows it staged are
                # marked as being written, which a query checks against the files.
                self._drop_temps(staged)
                cause = (exc.strerror or exc) if isinstance(exc, OSError) else \
                    f"its sidecar index failed: {getattr(exc, 'orig', None) or exc}"
                raise SaveError(
                    f"{self._describe()}: a commit of {len(staged)} record(s) ({first}...) "
                    f"could not be written: {cause}; nothing of it was written, the "
                    "stored versions are unchanged", first) from exc
            try:
                self._apply(staged)
                if len(staged) > 1:
                    os.unlink(self._journal)
                if self._durable:
                    _fsync_dir(self._dir)
            except OSError as exc:
                raise SaveError(
                    f"{self._describe()}: a commit of {len(staged)} record(s) ({first}...) "
                    f"failed while renaming its files: {exc.strerror or exc}; the renames "
                    "are finished from its journal by this store's next commit, or by the "
                    "next process that opens the store", first) from exc
            # The rows are settled lazily: in the next commit's index transaction
            # (or before a query, or on close). Until then they read as pending,
            # which is never wrong, only more work for a query elsewhere.
            self.index.defer_settle([name for name, _ in index_rows], deletes)
        for name, (id_, _, _) in written_ids.items():
            self._identity.set_version(id_, versions[name])

    def _drop_temps(self, staged: list[tuple[str, str | None]]) -> None:
        """Remove the temporary files of a commit that does not happen."""
        for _, tmp_name in staged:
            if tmp_name is not None:
                _unlink(os.path.join(self._tmpdir, tmp_name))

    def _check_versions(self, written: dict[str, tuple[Any, int | None, bool]]
                        ) -> dict[str, int]:
        """The new version of each record a commit writes (``written``: record name
        -> id, expected version, whether the id was just issued), after checking
        that each write with an expected version finds that version stored;
        raises :class:`ConflictError` naming every id that does not. The caller
        holds the commit lock: no other commit moves a version meanwhile.

        The new version is one more than the stored one (than its row's when
        the stored one is unknown, GC3Pie having rewritten the file: higher
        than any version a reader was given; 1 for a new record).
        """
        versions = {name: 1 for name, (_, _, new) in written.items() if new}
        names = [name for name in written if name not in versions]
        if not names:
            return versions  # new records only: nothing stored to compare
        with self._index_errors("reading the stored versions", SaveError, names[0]):
            rows = self.index.versions(names)
        conflicts: list[tuple[Any, int, int | None, bool]] = []  # id, expected, found, gone
        for name in names:
            id_, expected, _ = written[name]
            row = rows.get(name)
            stamp = file_stamp(self._path(name))
            current = None if stamp is None else effective_version(row, stamp,
                                                                   self.gc3pie_compatible)
            if expected is not None and current != expected:
                gone = stamp is None and record_stamp(self.directory, name) is None
                conflicts.append((id_, expected, current, gone))
                continue
            if current is None:
                current = row[0] if row is not None and row[0] is not None else 0
            versions[name] = current + 1
        if conflicts:
            raise self._conflict(conflicts)
        return versions

    def _conflict(self, conflicts: list[tuple[Any, int, int | None, bool]]) -> ConflictError:
        """The error of a commit refused because records changed since they were read."""
        parts = []
        for id_, expected, found, gone in conflicts[:5]:
            what = ("removed" if gone else
                    f"changed (now version {found})" if found is not None else
                    "rewritten by another program (its version is unknown)")
            parts.append(f"record {id_} was {what} by another writer since this store "
                         f"read version {expected}")
        more = f" (and {len(conflicts) - 5} more)" if len(conflicts) > 5 else ""
        id_, expected, found, _ = conflicts[0]
        return ConflictError(
            f"{self._describe()}: {'; '.join(parts)}{more}; nothing of the commit was "
            "written; load it again and reapply the change",
            [c[0] for c in conflicts], expected, found)

    def _apply(self, staged: list[tuple[str, str | None]]) -> None:
        """Rename temporaries over records and delete removed ones (idempotent)."""
        for name, tmp in staged:
            target = os.path.join(self._dir, name)
            if tmp is not None:
                try:
                    os.replace(os.path.join(self._tmpdir, tmp), target)
                except FileNotFoundError:
                    if not os.path.exists(target):
                        raise
                    # Already applied by an earlier, interrupted recovery.
            else:
                _unlink(target)
            _unlink(target + BACKUP_SUFFIX)

    # ------------------------------------------------------------ queries

    def query(self, *conditions: Any, **equal: Any) -> Query:
        """Rows of the sidecar index matching the conditions (as ``SqlStore.query``).

        Row ``id`` values are the record ids as strings. The index is first
        brought in line with the files (pending rows checked, unindexed
        files indexed: see :mod:`typedstore.fileindex`).
        """
        with self._lock, self._commit_lock, self._index_errors("bringing it up to date"):
            self.index.refresh(self.directory, self._record_names, self._extract,
                               watch=self.gc3pie_compatible)
        return Query(self, conditions, equal)

    def _current_versions(self, ids: Sequence[Any]) -> dict[Any, int | None] | None:
        """The version of each of ``ids`` still stored (``None``: unknown), from the
        index brought up to date as :meth:`query` does, and each file's stamp."""
        with self._lock, self._commit_lock, self._index_errors("reading the stored versions"):
            self.index.refresh(self.directory, self._record_names, self._extract,
                               watch=self.gc3pie_compatible)
            rows = self.index.versions([str(id_) for id_ in ids])
        found: dict[Any, int | None] = {}
        for id_ in ids:
            name = str(id_)
            stamp = file_stamp(self._path(name))
            if stamp is None:
                if record_stamp(self.directory, name) is not None:
                    found[id_] = None  # only GC3Pie's backup is there: unknown
                continue  # removed
            found[id_] = effective_version(rows.get(name), stamp, self.gc3pie_compatible)
        return found

    def _extract(self, name: str) -> Extracted:
        """Index values of record ``name`` read by this process (see FileIndex.refresh).

        The record is loaded as :meth:`load` does (allow-list, checksum and
        signature checked before anything is unpickled).
        """
        path = self._path(name)
        try:
            if not os.path.lexists(path):
                path += BACKUP_SUFFIX  # a backup standing for its record
            data = _read_record_file(path)[0]
        except FileNotFoundError:
            return None, None, None, None
        except OSError as exc:
            log.warning("%s: record %s cannot be read for the index: %s", self._describe(),
                        name, exc)
            return None, f"{type(exc).__name__}: {exc}", None, None
        read_checksum = checksum(data)
        refs: list[str] | None
        try:
            refs = [str(self._coerce_id(r)) for r in referenced_ids(data, name)]
            self._unscannable.pop(name, None)
        except (StoreError, TypeError) as exc:
            log.warning("%s: the references of record %s cannot be read (%s); pack refuses "
                        "to run until it is restored or removed with force=True",
                        self._describe(), name, exc)
            self._unscannable[name] = str(exc)
            refs = None
        try:
            pid = self._coerce_id(name)
            with self._lock:
                # A mapped object may not be what the file holds (changed in
                # memory, or read before GC3Pie rewrote the file): the index
                # describes the file.
                # Not load(): a record this reader cannot read must not doom the
                # transaction that asked for the index (a query, a remove in it).
                obj = (self._load_record(pid) if self._identity.get(pid) is None
                       else self._load_unmapped(pid))
            return self.index.values(obj, name), None, read_checksum, refs
        except NotFoundError:
            return None, None, None, None
        except StoreError as exc:
            log.warning("%s: record %s cannot be read here; its index row is kept, flagged "
                        "(queries find it, loading it raises): %s", self._describe(), name, exc)
            return None, f"{type(exc).__name__}: {exc}", read_checksum, refs

    def unreadable(self) -> list[tuple[str, str]]:
        """``(id, why)`` of records the last store that indexed them could not read
        (their index rows are kept and flagged; loading them raises)."""
        with self._lock, self._commit_lock, self._index_errors("listing unreadable records"):
            self.index.refresh(self.directory, self._record_names, self._extract,
                               watch=self.gc3pie_compatible)
            return self.index.unreadable()

    def _store_mac(self, id_: Any, record: Record, mac: str) -> bool:
        """Store ``mac`` if the file is still the one read as ``record``: by its
        stamp, and (a file whose stamp changed but not its bytes: copied back,
        touched) by the checksum its index row holds, which then takes the
        file's new stamp too."""
        if record.stamp is None:
            return False
        with self._commit_lock, self._index_errors(f"re-signing record {id_}", SaveError, id_):
            if file_stamp(self._path(id_)) != record.stamp:
                return False  # changed since it was read
            return self.index.store_mac(str(id_), record.stamp, mac, checksum(record.payload))

    def _run_select(self, statement: sa.Select[Any], named: bool = True
                    ) -> Iterator[Sequence[Any]]:
        with self.index.engine.connect() as conn:
            result = conn.execution_options(yield_per=STREAM_BATCH_SIZE).execute(statement)
            try:
                yield from result.partitions()
            finally:
                result.close()

    def _default_order(self) -> list[Any]:
        return [self.table.c._seqno, self.table.c.id]

    def _object_columns(self) -> list[Any]:
        c = self.table.c
        # After the id, a Seal (what _sealed needs, version included).
        return [c.id, c[CHECKSUM_COLUMN], c[MAC_COLUMN], c._stamp, c._pending, c._writer,
                c._version]

    def _load_rows(self, batches: Any) -> Any:
        hints = self._seal_hints
        hints.clear()
        with contextlib.closing(iter(batches)) as stream:  # the index cursor, even after an error
            for batch in stream:
                for id_, checksum_, mac, stamp, pending, writer, version in batch:
                    hints[id_] = (checksum_, mac, stamp, pending, writer, version)
                    try:
                        obj = self.load(id_)
                    except NotFoundError:
                        continue  # removed since the query ran
                    finally:
                        hints.pop(id_, None)
                    yield obj

    def close(self) -> None:
        with self._lock, self._commit_lock, self._index_errors("closing the store"):
            self.index.settle_own()
        self.index.close()
        self._commit_lock.close()

    def _after_fork(self) -> None:
        super()._after_fork()
        # File locks and pooled SQLite connections must not cross a fork.
        self._commit_lock.after_fork()
        self.index.after_fork()
        self._counter.reset_locks()
        self._sequence.reset()
        self._pending = {}

    def _sweep_temps(self) -> None:
        """Remove the temporary files of writers that are gone (a full disk's
        leftovers too): under the commit lock, after finishing a transaction a
        crash interrupted, whose journal names temporaries it still needs."""
        with self._commit_lock:
            self._recover_journal()
            tempfiles.sweep(self._tmpdir)
            # Journals are written under this lock: one being written now is
            # a dead writer's.
            with os.scandir(self._meta) as entries:
                for entry in entries:
                    # ".journal.PID.tmp" (tempfiles.replace_file); "journal.PID.tmp"
                    # from releases before it.
                    if entry.name.startswith(("journal.", ".journal.")) and \
                            entry.name.endswith(_TMP_SUFFIX):
                        log.info("%s: removing %s, left by a writer that died mid-commit",
                                 self._describe(), entry.name)
                        _unlink(entry.path)

    def _recover_journal(self) -> None:
        if not os.path.exists(self._journal):
            return
        journal = Path(self._journal)
        with self._commit_lock:
            try:
                staged = json.loads(journal.read_text())
            except FileNotFoundError:
                return
            log.warning("%s: finishing a transaction interrupted by a crash (%d records)",
                        self._describe(), len(staged))
            self._apply([(name, tmp) for name, tmp in staged])
            _fsync_dir(self.directory)
            journal.unlink()


#: The largest record number an id may carry (the index keeps it as a 64-bit integer).
_MAX_SEQNO = 2**63 - 1


def _odd_name(name: str) -> str | None:
    """Why directory entry ``name`` cannot name a record (``None``: it can)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "has a name that is not valid UTF-8"
    if name.endswith(_TMP_SUFFIX):
        return "has a temporary file's name"
    number = name.rpartition(".")[2]
    if number.isdigit() and int(number) > _MAX_SEQNO:
        return "numbers a record beyond the largest 64-bit id"
    return None


def default_metadata_dir(directory: Path) -> tuple[Path, bool]:
    """Where a store directory keeps typedstore's files, and whether that is inside it.

    ``PARENT/.NAME.typedstore`` (out of GC3Pie's listing of the directory),
    unless the directory already holds the older ``.typedstore`` folder or
    is on another file system than its parent (a rename from the sibling into
    it would not be atomic).
    """
    inside = directory / FILESTORE_META_DIR
    if inside.is_dir():
        return inside, True
    parent = directory.parent
    if parent == directory:
        log.warning("%s: a file store at the root of the file system keeps its metadata in "
                    "%s, which GC3Pie would list as a record", directory, inside)
        return inside, True
    if os.stat(parent).st_dev != os.stat(directory).st_dev:
        log.warning("%s is a mount point: its metadata stays inside it, in %s, which GC3Pie "
                    "would list as a record", directory, inside)
        return inside, True
    return parent / f".{directory.name}{FILESTORE_META_DIR}", False


def _unlink(path: str | os.PathLike[str]) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _sort_key(id_: Any) -> tuple[str, int, str]:
    if isinstance(id_, Id):
        return (id_._prefix, id_._seqno, "")
    return ("", -1, str(id_))


def make_filesystemstore(url: str | os.PathLike[str], *args: Any, **kwargs: Any) -> FilesystemStore:
    """Build a :class:`FilesystemStore` from a path or ``file://`` URL (GC3Pie's name)."""
    return FilesystemStore(url, *args, **kwargs)
