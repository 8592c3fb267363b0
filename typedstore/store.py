"""The :class:`Store` interface, the transaction machinery, ``register`` and ``make_store``.

A backend subclasses :class:`Store`, declares its URL schemes in the class
statement (``class SqlStore(Store, schemes=("sqlite", ...))``) and implements a
handful of record primitives (``_begin``/``_commit``/``_rollback``, ``_read``,
``_write``, ``_delete``, ``_ids``, ``_coerce_id``). Everything the GC3Pie
contract says about objects -- ids, external references, the identity map,
``changed`` flags, atomic saves of a container with its children -- lives here
once, so every backend behaves the same.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import random
import sys
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .allowlist import AllowFn
from .defaults import (
    DEFAULT_PROTOCOL,
    LOCK_TIMEOUT,
    RETRY_ATTEMPTS,
    RETRY_BACKOFF,
    RETRY_MAX_BACKOFF,
)
from .errors import (
    ConflictError,
    ConnectionLostError,
    LoadError,
    LockTimeout,
    NotFoundError,
    ReferencedError,
    SaveError,
    StoreError,
    TransactionError,
    UnsafeLoadError,
    UrlError,
)
from .identity import IdentityMap, stamped_version
from .ids import IdFactory
from .integrity import Record, Signer, checksum, make_signer, verify
from .progress import pack_progress
from .references import PACK_BATCH, PackReport
from .serialization import (
    VERSION_STAMP,
    apply_upgrades,
    dumps,
    in_progress,
    loads,
    make_allow,
    note_stored,
)
from .urls import StoreUrl, parse_store_url, redact

if TYPE_CHECKING:
    from .query import Query

log = logging.getLogger(__name__)

_T = TypeVar("_T")

_NO_ATTR = object()


class _Transaction:
    """State of the open transaction of one store.

    Attributes:
        depth (int): how many ``transaction()`` blocks are open (nesting joins).
        doomed (bool): an inner block failed; the outer one must roll back.
        written (dict[int, Any]): ``id(obj) -> persistent id`` of every object
            written (or queued) by the save in progress; it makes each object
            be written once per save and closes reference cycles.
        queue (list): referenced objects waiting to be written by that save.
        keep_alive (list): the written objects, so ``id(obj)`` stays unique.
        undo (list): ``(obj, old persistent_id, old changed, old version stamp)``
            to restore on rollback.
        thread (int): ``threading.get_ident()`` of the thread that opened it: the
            only thread that may run in it (it holds the store's lock meanwhile).
        refs (dict): ids the object being pickled references (reference tracking).
        held (dict): those of them this save does not write: stored records the
            backend checks are still there when the references are written.
    """

    __slots__ = ("depth", "doomed", "held", "keep_alive", "queue", "refs", "removed", "thread",
                 "undo", "written")

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        # The references of the object being pickled (ordered, unique), and
        # those to records this save does not write (stored, unchanged).
        self.refs: dict[Any, None] = {}
        self.held: dict[Any, None] = {}
        # Ids removed in this transaction: a later save must not reference them.
        self.removed: set[Any] = set()
        self.depth = 1
        self.doomed = False
        self.written: dict[int, Any] = {}
        self.queue: list[tuple[Any, tuple[Any, bool, int | None]]] = []
        self.keep_alive: list[Any] = []
        self.undo: list[tuple[Any, Any, Any, Any]] = []


def _set_attr(obj: Any, name: str, value: Any) -> bool:
    """Set ``obj.name`` bypassing ``Persistable.__setattr__``; False if impossible."""
    try:
        object.__setattr__(obj, name, value)
    except (AttributeError, TypeError):
        try:
            setattr(obj, name, value)
        except (AttributeError, TypeError):
            return False
    return True


def _restore_attr(obj: Any, name: str, value: Any) -> None:
    try:
        if value is _NO_ATTR:
            if name in getattr(obj, "__dict__", {}):
                object.__delattr__(obj, name)
        else:
            object.__setattr__(obj, name, value)
    except (AttributeError, TypeError):
        log.debug("cannot restore %s on %r", name, type(obj))


_EMPTY: dict[str, Any] = {}


class _StoreLock:
    """The store's lock: reentrant, so a thread's transaction and the operations
    inside it hold it together; another thread waits for it at most the
    store's lock timeout, then gets a LockTimeout naming who holds it."""

    __slots__ = ("_lock", "_store", "release")

    def __init__(self, store: Store) -> None:
        self._lock = threading.RLock()
        self._store = weakref.ref(store)
        self.release = self._lock.release

    def acquire(self) -> None:
        lock = self._lock
        if lock.acquire(False):
            return
        store = self._store()
        wait = store._lock_wait if store is not None else LOCK_TIMEOUT
        started = time.monotonic()
        if not lock.acquire(True, wait):
            raise _held_elsewhere(store, time.monotonic() - started)

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *_exc: object) -> None:
        self._lock.release()


def _held_elsewhere(store: Store | None, waited: float) -> LockTimeout:
    name = store._describe() if store is not None else "the store"
    txn = store._txn if store is not None else None
    if txn is not None:
        names = [t.name for t in threading.enumerate() if t.ident == txn.thread]
        holder = f"thread {names[0] if names else txn.thread!r}, inside a transaction"
    else:
        holder = "another thread's operation"
    wait = store._lock_wait if store is not None else LOCK_TIMEOUT
    return LockTimeout(
        f"{name}: waited {waited:.1f} s for this store object, held by {holder}, longer "
        f"than lock_timeout={wait:g} s; nothing was done. A store object runs one "
        "thread's transaction at a time: keep transactions short, or give each thread "
        "a store object of its own", "the store object's lock", waited, name)


def _restore_stamp(obj: Any, stamp: Any) -> None:
    """Put back the version stamp a rolled-back write changed (or drop it)."""
    if not getattr(type(obj), "_typedstore_stampable", False):
        return
    if stamp is _NO_ATTR:
        obj.__dict__.pop(VERSION_STAMP, None)
    else:
        obj.__dict__[VERSION_STAMP] = stamp


#: ``conflicts=`` values: raise ConflictError (default), or overwrite.
CONFLICT_ERROR, LAST_WRITER_WINS = "error", "last-writer-wins"
CONFLICT_POLICIES = (CONFLICT_ERROR, LAST_WRITER_WINS)


@dataclass
class RefreshReport:
    """What :meth:`Store.refresh` dropped from the identity map.

    Attributes:
        changed (list): ids whose records another writer changed since they
            were read (or whose version is unknown).
        removed (list): ids whose records are gone.
        unchanged (int): objects left as they were.
    """

    changed: list[Any] = field(default_factory=list)
    removed: list[Any] = field(default_factory=list)
    unchanged: int = 0


@dataclass
class StoreStats:
    """Counters of one store object, for monitoring (read them any time).

    Attributes:
        conflicts (int): transactions refused with :class:`ConflictError`.
        retries (int): attempts :meth:`Store.retry` started again after a conflict.
    """

    conflicts: int = 0
    retries: int = 0


class _TransactionBlock:
    """The ``with store.transaction():`` block (a class: it is on every write's path)."""

    __slots__ = ("outer", "store", "txn")

    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> Store:
        store = self.store
        store._lock.acquire()
        txn = store._txn
        if txn is not None:
            if txn.doomed:
                # An earlier step failed: the server may already have ended the
                # transaction (a deadlock on MariaDB, any error on PostgreSQL), so
                # a write now could commit on its own. Refuse it.
                store._lock.release()
                raise TransactionError(
                    f"{store._describe()}: an earlier operation of this transaction failed; "
                    "it will be rolled back: leave the transaction block (nothing more "
                    "is written in it)")
            txn.depth += 1
            self.outer = False
            self.txn = txn
            return store
        txn = self.txn = store._txn = _Transaction()
        self.outer = True
        store._identity.begin()
        try:
            store._begin()
        except BaseException:
            store._txn = None
            store._identity.end(rollback=True)
            store._lock.release()
            raise
        return store

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        store, txn = self.store, self.txn
        try:
            if not self.outer:
                txn.depth -= 1
                if exc_type is not None:
                    txn.doomed = True
                return
            try:
                if exc_type is None:
                    if txn.doomed:
                        raise TransactionError(
                            f"{store._describe()}: an inner transaction block failed; "
                            "the whole transaction was rolled back"
                        )
                    store._commit()
            except BaseException as failure:
                store._abort(txn)
                if isinstance(failure, (ConflictError, ConnectionLostError)):
                    store._forget_conflicting(failure)
                raise
            else:
                if exc_type is not None:
                    store._abort(txn)
                    if isinstance(exc, (ConflictError, ConnectionLostError)):
                        store._forget_conflicting(exc)
                else:
                    store._identity.end(rollback=False)
            finally:
                store._txn = None
        finally:
            store._lock.release()


#: Recursion limit while loading: each link of a chain of references costs a few
#: Python frames (the unpickler calls back into the store), so even the
#: :data:`LOAD_NESTING` links loaded recursively may exceed Python's default of
#: 1000 in a program that is already deep in its own stack.
LOAD_RECURSION_LIMIT = 20_000

#: How many references deep a load recurses (each level unpickles a referenced
#: record inside its referrer's unpickling). A deeper reference is loaded
#: first, from the top: see :meth:`Store._load_record`.
LOAD_NESTING = 50


class _Deeper(BaseException):
    """Raised through the unpickler (which catches no BaseException) when a
    reference is more than :data:`LOAD_NESTING` levels deep: the load is cut
    short and that record is loaded first, at the top."""

    def __init__(self, pid: Any) -> None:
        super().__init__(pid)
        self.pid = pid


class _Nesting(threading.local):
    """This thread's loading: how deep, and what the current attempt mapped."""

    def __init__(self) -> None:
        self.depth = 0
        self.mapped: list[Any] | None = None
        # References the record being unpickled resolved so far (see _load_one).
        self.resolved = 0
        # (id, version) of the record being unpickled, for errors about its references.
        self.loading: tuple[Any, Any] | None = None


_nesting = _Nesting()


@contextmanager
def _deep_references() -> Iterator[None]:
    old = sys.getrecursionlimit()
    if old >= LOAD_RECURSION_LIMIT:
        yield
        return
    sys.setrecursionlimit(LOAD_RECURSION_LIMIT)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


class Store(ABC):
    """Saves Python objects and gives them back by id.

    Any picklable object can be stored. The attribute ``persistent_id`` is
    reserved: the store sets it on save and it names the record. Objects that
    do not accept attributes (``dict``, ``int``) can be saved too, but each save
    of them makes a new record.

    Subclasses pass ``schemes=(...)`` in the class statement to be what
    :func:`make_store` builds for those URL schemes.

    Common constructor arguments: ``idfactory``, ``protocol`` (pickle
    protocol), ``allowed_classes`` (the allow-list of what a record may name:
    classes, ``module.Class`` names, ``package.*`` wildcards, an
    :class:`~typedstore.allowlist.AllowList` such as
    :func:`~typedstore.allowlist.allowed_classes` makes, or a function
    ``(module, name) -> bool``; see docs/security.md), ``missing_classes``
    (``"error"``, or ``"placeholder"`` to load a record whose class is gone
    as a :class:`MissingClass`), ``signing_keys`` (a list of secret keys:
    the first signs every record written, any of them verifies every record
    read, and records without a valid MAC are refused; ``None``: the keys in
    ``$TYPEDSTORE_SIGNING_KEYS``, if any; ``[]``: no signing; see
    docs/security.md).

    Attributes:
        url (StoreUrl | None): where the store lives.
        idfactory (IdFactory): issues ids for new objects.
        protocol (int): pickle protocol of new records.
    """

    _registry: ClassVar[dict[str, Callable[..., Store]]] = {}
    #: Write ids into payloads under GC3Pie's class names (a store shared with GC3Pie).
    _gc3pie_payloads = False
    #: Every backend class: a keyword argument one backend ignores is valid
    #: only if some backend takes it (see :meth:`_ignore_options`).
    _backends: ClassVar[list[type[Store]]] = []

    def __init_subclass__(cls, schemes: Iterable[str] = (), **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Store._backends.append(cls)
        for scheme in schemes:
            Store._registry[scheme] = cls

    def _ignore_options(self, extra: Mapping[str, Any]) -> None:
        """Accept keyword arguments meant for another backend, as GC3Pie's stores do.

        An argument that no backend takes (a typo such as ``row_modle=``) is
        logged as a warning naming it, so it does not pass silently.
        """
        if not extra:
            return
        known: set[str] = set()
        for backend in Store._backends:
            known.update(inspect.signature(backend.__init__).parameters)
        for name in sorted(extra):
            if name in known:
                log.debug("%s: ignoring argument %s= (another backend's)", self._describe(), name)
            else:
                log.warning("%s: unknown argument %s= ignored (no store takes it: a typo?)",
                            self._describe(), name)

    def __init__(
        self,
        url: str | os.PathLike[str] | StoreUrl | None = None,
        idfactory: IdFactory | None = None,
        protocol: int = DEFAULT_PROTOCOL,
        allowed_classes: Iterable[str | type] | AllowFn | None = None,
        missing_classes: str = "error",
        signing_keys: Iterable[str | bytes] | None = None,
        conflicts: str = "error",
    ) -> None:
        if missing_classes not in ("error", "placeholder"):
            raise ValueError(f"missing_classes must be 'error' or 'placeholder', "
                             f"not {missing_classes!r}")
        if conflicts not in CONFLICT_POLICIES:
            raise ValueError(f"conflicts must be one of {', '.join(map(repr, CONFLICT_POLICIES))}"
                             f", not {conflicts!r}")
        #: Write over records others changed (GC3Pie's behaviour) instead of
        #: raising ConflictError.
        self._last_writer_wins = conflicts == LAST_WRITER_WINS
        self._placeholders = missing_classes == "placeholder"
        self._signer: Signer | None = make_signer(signing_keys)
        self.url = parse_store_url(url) if url is not None else None
        self.idfactory = idfactory if idfactory is not None else self._default_idfactory()
        self.protocol = protocol
        self._allow: AllowFn | None = make_allow(allowed_classes)
        # Backends set ``self._identity.stamp`` (the store's location) once
        # they know it: see typedstore.serialization.VERSION_STAMP.
        self._identity = IdentityMap()
        self.stats = StoreStats()
        #: Seconds a thread waits for the store while another thread holds it
        #: (inside a transaction, or an operation); backends set their lock timeout.
        self._lock_wait: float = LOCK_TIMEOUT
        self._lock = _StoreLock(self)
        self._txn: _Transaction | None = None
        #: Mapped ids whose stored record references others, as this store last
        #: loaded or wrote it (reference tracking: see _write_object).
        self._referencing: set[Any] = set()
        self._pid = os.getpid()
        ref = weakref.ref(self)

        def _in_child() -> None:
            store = ref()
            if store is not None:
                store._after_fork()

        os.register_at_fork(after_in_child=_in_child)

    # ------------------------------------------------------------ backend primitives

    def _default_idfactory(self) -> IdFactory:
        """The id factory used when none is given."""
        return IdFactory()

    @abstractmethod
    def _coerce_id(self, id_: Any) -> Any:
        """Return ``id_`` in this store's id type. Raises NotFoundError if it cannot be one."""

    @abstractmethod
    def _begin(self) -> None:
        """Open the backend transaction."""

    @abstractmethod
    def _commit(self) -> None:
        """Make every write since ``_begin`` durable, all or nothing."""

    @abstractmethod
    def _rollback(self) -> None:
        """Discard every write since ``_begin``."""

    @abstractmethod
    def _read(self, id_: Any) -> Record:
        """Return the stored record (payload, version, and the checksum and MAC stored
        with it, ``None`` where there are none). Raises NotFoundError if ``id_`` is
        not stored."""

    def _seal(self, id_: Any, payload: bytes) -> tuple[int, str | None]:
        """The checksum and (in a signed store) the MAC to store with ``payload``."""
        signer = self._signer
        return checksum(payload), (signer.sign(id_, payload) if signer is not None else None)

    def _can_sign(self) -> bool:
        """Whether records of this store have a place for their MAC."""
        return True

    def _store_mac(self, id_: Any, record: Record, mac: str) -> bool:
        """Store ``mac`` as record ``id_``'s MAC if the record is still the one
        read as ``record``; False if it changed meanwhile (see
        :func:`typedstore.integrity.resign`)."""
        raise NotImplementedError(f"{type(self).__name__} cannot re-sign records")

    @abstractmethod
    def _write(
        self, id_: Any, obj: Any, payload: bytes, *, new: bool, expected: int | None,
        must_exist: bool, root: bool = False,
    ) -> int | None:
        """Write one record inside the open transaction; return its new version.

        ``new``: the id was just issued, so no record can exist. ``expected``:
        the version this store read, to be checked (raise ConflictError if the
        stored one differs). ``must_exist``: raise NotFoundError if no record.
        ``root``: the user saved this object directly (not only as another's
        child): a backend tracking references records it as a root for good.
        """

    #: Whether this store records references (see :mod:`typedstore.references`).
    _tracks_references = False

    def _write_references(  # noqa: B027 - optional hook
            self, id_: Any, refs: list[Any], held: list[Any], fresh: bool,
            assumed: int | None = None) -> None:
        """Record that record ``id_`` (just written) references ``refs``, replacing
        what it referenced before (nothing to replace if ``fresh``: a new record,
        or one whose stored version this store knows referenced nothing;
        ``assumed``: that version, when the write did not check it, so the
        backend must, replacing the references if the write replaced another).
        ``held``: those of ``refs`` this transaction does not write; raise
        ConflictError if one of them is no longer stored."""

    @abstractmethod
    def _delete(self, id_: Any) -> None:
        """Delete one record inside the open transaction. Raises NotFoundError."""

    @abstractmethod
    def _ids(self) -> list[Any]:
        """Every stored id."""

    def _after_fork(self) -> None:
        """Called in a forked child: drop what cannot be shared with the parent
        (its lock, and a transaction another of its threads had open)."""
        self._pid = os.getpid()
        self._lock = _StoreLock(self)
        txn, self._txn = self._txn, None
        if txn is not None:
            # Another thread of the parent was inside a transaction: in the child
            # it never commits, so its writes must not be seen here either.
            self._identity.end(rollback=True)
            for obj, old_id, old_changed, old_stamp in reversed(txn.undo):
                _restore_attr(obj, "persistent_id", old_id)
                _restore_attr(obj, "changed", old_changed)
                _restore_stamp(obj, old_stamp)

    def _describe(self) -> str:
        return self.url.redacted if self.url is not None else type(self).__name__

    def _own_txn(self) -> _Transaction | None:
        """The open transaction if the calling thread opened it, else ``None``.

        A transaction holds the store's lock, so every locked method runs in
        its thread; a method that runs without the lock (a query) must ask
        this, never ``self._txn``: another thread's open transaction is not its
        own, and its uncommitted writes and connection are not to be touched.
        """
        txn = self._txn
        if txn is not None and txn.thread == threading.get_ident():
            return txn
        return None

    # ------------------------------------------------------------ transactions

    def transaction(self) -> _TransactionBlock:
        """Group saves, replaces and removes into one atomic commit.

        Everything written inside the block is committed together when it
        ends, or rolled back if an exception leaves it; after a rollback the
        identity map, ``persistent_id`` and ``changed`` of every object the
        block touched are as before it. Nested blocks join the outer one; an
        exception leaving an inner block dooms the whole transaction, so the
        outer block then raises :class:`TransactionError` instead of
        committing half of it.
        """
        return _TransactionBlock(self)

    def _forget_conflicting(self, conflict: ConflictError | ConnectionLostError) -> None:
        """After a conflict (or a write whose outcome is unknown): the next load of
        each id involved reads the stored record again, so "load it again and
        reapply" converges."""
        if isinstance(conflict, ConflictError):
            self.stats.conflicts += 1
        for ref in conflict.ids:
            try:
                self._identity.evict(self._coerce_id(ref))
            except (StoreError, TypeError) as exc:
                log.debug("%s: conflict id %r not evicted: %s", self._describe(), ref, exc)

    def retry(self, fn: Callable[[], _T], attempts: int = RETRY_ATTEMPTS,
              backoff: float = RETRY_BACKOFF, max_backoff: float = RETRY_MAX_BACKOFF) -> _T:
        """Run ``fn()`` in a transaction; on :class:`ConflictError`, run it again.

        ``fn`` should load what it changes (``store.load(id)``): after a
        conflict the store reloads those records, so each attempt works on
        the current stored state. Between attempts it sleeps a random time up
        to ``backoff * 2**attempt`` seconds (at most ``max_backoff``), so racing
        writers spread out. Returns what ``fn`` returns; raises the last
        ConflictError after ``attempts`` tries, and any other error at once.
        ``store.stats`` counts conflicts and retries.
        """
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"attempts must be an integer of at least 1, not {attempts!r}")
        for name, value in (("backoff", backoff), ("max_backoff", max_backoff)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 <= value < float("inf"):
                raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
        for attempt in range(1, attempts + 1):
            try:
                with self.transaction():
                    return fn()
            except ConflictError:
                if attempt == attempts or self._own_txn() is not None:
                    # Inside an outer transaction the whole transaction must end first.
                    raise
                self.stats.retries += 1
                time.sleep(random.uniform(0, min(max_backoff, backoff * 2 ** attempt)))
        raise AssertionError("unreachable")

    def _abort(self, txn: _Transaction) -> None:
        try:
            self._rollback()
        except Exception:
            log.exception("%s: rollback failed", self._describe())
        self._identity.end(rollback=True)
        for obj, old_id, old_changed, old_stamp in reversed(txn.undo):
            _restore_attr(obj, "persistent_id", old_id)
            _restore_attr(obj, "changed", old_changed)
            _restore_stamp(obj, old_stamp)
            if old_id is not _NO_ATTR and old_id is not None:
                # The object may hold changes the rollback did not write: the next
                # load of its id (in any thread) reads the stored record, and
                # saving this object is checked against the version it was read at.
                try:
                    self._identity.evict(self._coerce_id(old_id))
                except (StoreError, TypeError) as exc:
                    log.debug("%s: %r not evicted after rollback: %s", self._describe(),
                              old_id, exc)
        self.idfactory.discard_reserved()

    # ------------------------------------------------------------ saving

    def save(self, obj: Any) -> Any:
        """Save ``obj`` and every Persistable it references; return its id.

        An object saved before keeps its id. Sets ``obj.persistent_id``. The
        object and the referenced Persistables are written in one transaction.
        Raises :class:`SaveError` if the object cannot be pickled or a row
        field fails validation, :class:`ConflictError` if someone else changed
        the stored record since this store read it; nothing is written then.
        """
        with self.transaction():
            return self._save_tree(obj, must_exist=False)

    def save_many(self, objs: Iterable[Any]) -> list[Any]:
        """Save several objects in one transaction; return their ids in order."""
        objs = list(objs)
        with self.transaction():
            fresh = sum(1 for obj in objs if getattr(obj, "persistent_id", None) is None)
            if fresh > 1:
                self.idfactory.reserve(fresh)
            return [self._save_tree(obj, must_exist=False) for obj in objs]

    def replace(self, id_: Any, obj: Any) -> None:
        """Store ``obj`` as the record ``id_``, overwriting it whatever its version.

        Raises :class:`NotFoundError` if no record ``id_`` exists (ids are
        issued by the store only, so a new id cannot be made up here).
        """
        with self.transaction():
            self._save_tree(obj, must_exist=True, forced_id=self._coerce_id(id_))

    def _save_tree(self, root: Any, must_exist: bool, forced_id: Any = None) -> Any:
        """Write ``root`` and the Persistables it references that need writing.

        Referenced objects are queued while the referencing object is pickled
        and written afterwards, in a loop: a chain of any length needs no
        recursion. ``txn.written`` (object -> id) lives for this call only, so
        each object is written once per save, and a later save in the same
        transaction writes the object's state again.
        """
        txn = self._txn
        assert txn is not None
        txn.written.clear()
        txn.queue.clear()
        root_claim = self._claim(root, forced_id)
        self._write_object(root, root_claim, must_exist, root=True)
        while txn.queue:
            obj, claim = txn.queue.pop()
            self._write_object(obj, claim, must_exist=False)
        return root_claim[0]

    def _claim(self, obj: Any, forced_id: Any = None) -> tuple[Any, bool, int | None]:
        """Give ``obj`` its id for this save; return ``(id, new, expected version)``."""
        txn = self._txn
        assert txn is not None
        old_id = getattr(obj, "persistent_id", _NO_ATTR)
        if forced_id is not None:
            pid, new = forced_id, False
        elif old_id is _NO_ATTR or old_id is None:
            pid, new = self.idfactory.new(obj), True
        else:
            pid, new = self._coerce_id(old_id), False
        if new or forced_id is not None:
            # New, or replaced on purpose (replace() overwrites whatever is stored).
            expected = None
            if forced_id is not None and old_id is not _NO_ATTR and old_id is not None:
                # replace(b, obj) of an object stored as a: it becomes record b (as
                # in GC3Pie); a must no longer give this object.
                previous = self._coerce_id(old_id)
                if previous != forced_id and self._identity.get(previous) is obj:
                    self._identity.discard(previous)
        elif self._last_writer_wins:
            expected = None
        elif self._identity.get(pid) is obj:
            expected = self._identity.version(pid)
        else:
            # Not the mapped object: one that left the map while alive (after
            # invalidate_cache, a conflict, or a newer object for its id) is
            # checked against the version it was read at; so is a copy of a
            # Persistable this store (or another store object on the same
            # location) read or wrote, by the version stamped on it. Only an
            # object without either overwrites whatever is stored.
            expected = self._identity.retired_version(obj, pid)
            if expected is None:
                expected = stamped_version(obj, self._identity.stamp)
        txn.undo.append((obj, old_id, getattr(obj, "changed", _NO_ATTR),
                         getattr(obj, "__dict__", _EMPTY).get(VERSION_STAMP, _NO_ATTR)))
        _set_attr(obj, "persistent_id", pid)
        note_stored(obj)
        txn.written[id(obj)] = pid
        txn.keep_alive.append(obj)
        return pid, new, expected

    def _write_object(self, obj: Any, claim: tuple[Any, bool, int | None],
                      must_exist: bool, root: bool = False) -> None:
        pid, new, expected = claim
        txn = self._txn
        assert txn is not None
        txn.refs.clear()
        txn.held.clear()
        # Whether the stored record this write replaces is known to reference
        # nothing (then it has no references to delete): the version this store
        # last loaded or wrote is the one replaced, and it referenced nothing.
        known = self._identity.version(pid)
        no_old_refs = not new and known is not None and pid not in self._referencing \
            and (expected is None or expected == known)
        try:
            payload = dumps(obj, self._on_reference, self.protocol, self._gc3pie_payloads)
        except StoreError:
            raise
        except Exception as exc:
            raise SaveError(
                f"{self._describe()}: cannot pickle object {pid} ({type(obj).__name__}): "
                f"{type(exc).__name__}: {exc}",
                pid,
            ) from exc
        # Mapped before the write: a backend that learns the new version only
        # when the statement runs (maybe at commit) records it with set_version.
        self._identity.put(pid, obj, None)
        version = self._write(
            pid, obj, payload, new=new, expected=expected, must_exist=must_exist, root=root
        )
        if self._tracks_references:
            refs = list(txn.refs)
            # A write not checked against the version known (replace(), the last
            # writer wins) may replace a newer record than the one known: the
            # backend checks the version it wrote (see _write_references).
            assumed = known if no_old_refs and expected is None else None
            self._write_references(pid, refs, list(txn.held), new or no_old_refs, assumed)
            if refs:
                self._referencing.add(pid)
            else:
                self._referencing.discard(pid)
        if version is not None:
            self._identity.set_version(pid, version)
        if hasattr(obj, "changed"):
            _set_attr(obj, "changed", False)

    def _on_reference(self, child: Any) -> Any:
        """Pickler callback: the id of a referenced Persistable, queued for writing if needed."""
        txn = self._txn
        assert txn is not None
        key = id(child)
        if key in txn.written:
            pid = txn.written[key]
            txn.refs[pid] = None
            return pid
        pid = getattr(child, "persistent_id", None)
        if pid is not None:
            pid = self._coerce_id(pid)
            if pid in txn.removed:
                raise SaveError(
                    f"{self._describe()}: record {pid} ({type(child).__name__}) was removed "
                    "earlier in this transaction, and an object saved after it references "
                    "it; nothing of the transaction was written (remove it after the save "
                    "that drops the reference, or keep it)", pid)
            if self._identity.get(pid) is child and not getattr(child, "changed", True):
                txn.refs[pid] = None
                txn.held[pid] = None
                return pid
        claim = self._claim(child)
        txn.queue.append((child, claim))
        txn.refs[claim[0]] = None
        return claim[0]

    # ------------------------------------------------------------ loading

    def load(self, id_: Any) -> Any:
        """Return the object stored as ``id_``.

        Within one store an id always gives the same object until
        :meth:`invalidate_cache`. Raises :class:`NotFoundError` (a
        :class:`LoadError` and a ``KeyError``) if nothing is stored as ``id_``,
        :class:`LoadError` if the record cannot be unpickled.
        """
        with self._lock:
            pid = self._coerce_id(id_)
            obj = self._identity.get(pid)
            if obj is not None:
                return obj
            try:
                return self._load_record(pid)
            except NotFoundError:
                raise
            except BaseException:
                self._doom_own_txn()
                raise

    def _load_record(self, pid: Any, record: Record | None = None) -> Any:
        """Load record ``pid`` (from ``record`` if given: read by a query) and the
        records it references, and map them.

        References are loaded recursively up to :data:`LOAD_NESTING` levels; a
        deeper one cuts the attempt short (:class:`_Deeper`): everything that
        attempt mapped is forgotten (it may hold objects of the abandoned
        attempt), the deeper record is loaded first, and the attempt starts
        again. A chain or tree of any depth loads with bounded recursion, each
        record unpickled at most twice. A reference cycle longer than the
        nesting limit brings an abandoned record back (a cut is met twice):
        the load then starts over recursing without the cut, as deep as
        :data:`LOAD_RECURSION_LIMIT` allows (a LoadError beyond).
        """
        nesting = _nesting
        if nesting.mapped is not None:  # inside a load: one level deeper
            return self._load_one(pid, record)
        pending: list[Any] = [pid]
        seen: set[Any] = set()
        keep: list[Any] = []
        try:
            while True:
                target = pending[-1]
                nesting.mapped = []
                try:
                    obj = self._load_one(target, record if target is pid else None)
                except _Deeper as deeper:
                    for mapped in nesting.mapped:
                        self._identity.unload(mapped)
                    if deeper.pid in seen:  # a long cycle: recurse without the cut
                        log.debug("%s: record %s is in a reference cycle longer than %d; "
                                  "loading it recursively", self._describe(), pid, LOAD_NESTING)
                        nesting.depth = -1
                        pending = [pid]
                        continue
                    seen.add(deeper.pid)
                    pending.append(deeper.pid)
                    continue
                except RecursionError as exc:
                    for mapped in nesting.mapped:
                        self._identity.unload(mapped)
                    raise LoadError(
                        f"{self._describe()}: record {pid} holds references nested too deeply "
                        f"to restore (a reference cycle of thousands of records)", pid) from exc
                pending.pop()
                if not pending:
                    return obj
                keep.append(obj)  # mapped weakly: alive until its referrer holds it
        finally:
            nesting.mapped = None
            nesting.depth = 0

    def _load_one(self, pid: Any, record: Record | None = None) -> Any:
        if record is None:
            record = self._read(pid)
        version = record.version
        nesting = _nesting
        outer, nesting.resolved = nesting.resolved, 0
        outer_loading, nesting.loading = nesting.loading, (pid, version)
        try:
            obj = self._unpickle_record(pid, record)
            referencing = nesting.resolved > 0
        finally:
            nesting.resolved = outer
            nesting.loading = outer_loading
        # Whether the record references others: a later write of it then
        # replaces its stored references (see _write_object).
        if referencing:
            self._referencing.add(pid)
        else:
            self._referencing.discard(pid)
        if getattr(obj, "persistent_id", None) is not pid:
            # Payloads hold plain str/int ids (GC3Pie-readable): give the
            # object its id as this store's Id/IntId.
            _set_attr(obj, "persistent_id", pid)
        note_stored(obj)
        if getattr(obj, "changed", False) is not False:
            _set_attr(obj, "changed", False)
        # Not journaled: a record written in this transaction is already mapped
        # (so it is never loaded here), so this is committed data.
        self._identity.put(pid, obj, version, journal=False)
        mapped = _nesting.mapped
        if mapped is not None:
            mapped.append(pid)
        return obj

    def _unpickle_record(self, pid: Any, record: Record) -> Any:
        """The object of ``record``, checked (checksum, MAC) before it is
        unpickled; GC3Pie's backup copy, if any, when the record is unreadable."""
        try:
            verify(self._describe, pid, record.payload, record.checksum, record.mac,
                   self._signer)
            obj = self._unpickle(pid, record.payload)
        except UnsafeLoadError:
            raise
        except LoadError as failure:
            backup = self._read_backup(pid)
            if backup is None:
                raise
            log.warning("%s: record %s is unreadable (%s); loading its backup",
                        self._describe(), pid, failure)
            try:
                verify(self._describe, pid, backup.payload, backup.checksum, backup.mac,
                       self._signer)
            except LoadError as refused:
                log.warning("%s: the backup of record %s is refused too: %s",
                            self._describe(), pid, refused)
                raise failure from None
            obj = self._unpickle(pid, backup.payload)
            _nesting.resolved += 1  # its references are not the stored record's
        return obj

    def _load_unmapped(self, pid: Any) -> Any:
        """The object of record ``pid`` as stored now, checked as :meth:`load`
        checks it, and not mapped: for reading a record whose mapped object
        may differ from it (changed in memory, or read before another program
        rewrote the record). Records it references come from the map."""
        record = self._read(pid)
        verify(self._describe, pid, record.payload, record.checksum, record.mac,
               self._signer)
        return self._unpickle(pid, record.payload)

    def _unpickle(self, pid: Any, payload: bytes) -> Any:
        return apply_upgrades(loads(payload, self._resolve_reference, record_id=pid,
                                    allow=self._allow, owner=self,
                                    placeholders=self._placeholders,
                                    aliased=self._gc3pie_payloads))

    def _read_backup(self, id_: Any) -> Record | None:
        """Another copy of a record whose payload did not load (GC3Pie's ``.OLD``), if
        any; verified as the record was before it is unpickled."""
        return None

    def _resolve_reference(self, ref: Any) -> Any:
        """Unpickler callback: the object for a persistent id found in a payload."""
        _nesting.resolved += 1
        try:
            pid = self._coerce_id(ref)
        except (NotFoundError, TypeError) as exc:
            raise LoadError(f"{self._describe()}: bad reference {ref!r} in a record", ref) \
                from exc
        obj = self._identity.get(pid)
        if obj is not None:
            return obj
        busy, root = in_progress(self, pid)
        if busy:
            if root is None:
                raise LoadError(
                    f"{self._describe()}: record {pid} refers back to itself before it "
                    "was created; such a cycle cannot be restored",
                    pid,
                )
            return root
        nesting = _nesting
        unbounded = nesting.depth < 0  # see _load_record
        if not unbounded:
            if nesting.depth >= LOAD_NESTING:
                raise _Deeper(pid)
            nesting.depth += 1
        try:
            with _deep_references():
                return self._load_record(pid)
        except NotFoundError as exc:
            raise self._missing_reference(pid) from exc
        finally:
            if not unbounded:
                nesting.depth -= 1

    def _missing_reference(self, pid: Any) -> StoreError:
        """The error for a reference to record ``pid``, which is not stored: a
        :class:`ConflictError` if the referring record changed since it was read
        (another process dropped the reference and removed or packed the record
        meanwhile: load it again), else a :class:`LoadError` naming both (a
        record removed with ``force=True``, or damage)."""
        loading = _nesting.loading
        if loading is None:
            return LoadError(f"{self._describe()}: a record references {pid}, which is not "
                             "stored", pid)
        referrer, version = loading
        try:
            current = self._current_versions([referrer])
        except StoreError as exc:
            log.debug("%s: versions not read: %s", self._describe(), exc)
            current = None
        if current is not None and version is not None and current.get(referrer) != version:
            return ConflictError(
                f"{self._describe()}: record {referrer} referenced record {pid}, which another "
                f"writer removed after changing record {referrer} (version {version} was read); "
                "load it again", [referrer], version, current.get(referrer))
        return LoadError(f"{self._describe()}: record {referrer} references record {pid}, "
                         "which is not stored (removed with force=True, or lost)", pid)

    # ------------------------------------------------------------ the rest of the contract

    def remove(self, id_: Any, cascade: bool = False, force: bool = False) -> list[Any]:
        """Delete the record ``id_``; return the ids removed (``[id_]``, or with
        ``cascade`` the whole set), in the order they were found.

        A record that other stored records reference is not removed (they
        would be left referring to nothing): :class:`ReferencedError` names
        them, and nothing is removed. With ``cascade=True`` the record goes
        together with every record it reaches that nothing outside those
        records references (a container and the children only it holds), in
        one transaction. ``force=True`` removes even a referenced record (its
        referrers then fail to load, as in GC3Pie, which never checks). A
        store without reference tracking (a GC3Pie table read without
        adoption) removes as GC3Pie does, and refuses ``cascade``.

        Raises :class:`NotFoundError` if there is no record ``id_``,
        :class:`ConflictError` if a record to remove changed meanwhile.
        """
        with self.transaction():
            pid = self._coerce_id(id_)
            if not self._tracks_references:
                if cascade:
                    raise self._untracked("remove(..., cascade=True)")
                self._delete(pid)
                self._identity.discard(pid)
                return [pid]
            if cascade or not force:
                self._know_references()
            if cascade:
                doomed = self._cascade(pid)
                for each in doomed:
                    self._delete(each)
                if not force:
                    self._refuse_referenced(doomed)
            else:
                doomed = [pid]
                self._delete_unreferenced(pid, force)
            txn = self._txn
            assert txn is not None
            txn.removed.update(doomed)
            for each in doomed:
                # Not dropped from _referencing: if the transaction rolls back the
                # map gets the record back, and its next write must then replace
                # the references it has (a stale "references nothing" would not).
                self._identity.discard(each)
            return doomed

    def referrers(self, id_: Any) -> list[Any]:
        """The ids of the stored records that reference record ``id_``, sorted.

        Read from the references recorded with each record (written in the
        same transaction as the record; for records written by GC3Pie, read
        from their payloads first, without running them: see
        :mod:`typedstore.references`). Raises :class:`SchemaError` in a store
        without reference tracking.
        """
        with self._lock:
            pid = self._coerce_id(id_)
            if not self._tracks_references:
                raise self._untracked("referrers()")
            self._know_references()
            try:
                return sorted(self._referrers_of([pid]).get(pid, ()))
            except BaseException:
                self._doom_own_txn()
                raise

    def _cascade(self, pid: Any) -> list[Any]:
        """``pid`` and the records it reaches that nothing outside the set
        references (children referring to each other included). Every record
        reached is locked against writers before the referrers are read, so a
        reference committed meanwhile is seen and none can follow; then records
        with a referrer outside the set leave it, with what only they held,
        until none does."""
        doomed: dict[Any, None] = {pid: None}
        self._lock_records([pid])
        frontier = [pid]
        while frontier:
            reached: dict[Any, None] = {}
            for targets in self._children_of(frontier).values():
                reached.update((t, None) for t in targets if t not in doomed)
            frontier = sorted(reached)
            self._lock_records(frontier)
            doomed.update((t, None) for t in frontier)
        referrers = self._referrers_of([t for t in doomed if t != pid])
        while True:
            leaving = [t for t in doomed if t != pid
                       and any(r not in doomed for r in referrers.get(t, ()))]
            if not leaving:
                return list(doomed)
            for t in leaving:
                del doomed[t]

    def _refuse_referenced(self, doomed: list[Any]) -> None:
        """Raise :class:`ReferencedError` if a record outside ``doomed``
        references one in it (after checking that record's payload: a reference
        recorded for a record rewritten since by last-writer-wins or by GC3Pie
        may be gone; such a stale one is repaired and ignored)."""
        gone = set(doomed)
        for target, sources in self._referrers_of(doomed).items():
            outside = sorted(s for s in sources if s not in gone)
            real = [s for s in outside if self._still_references(s, target)]
            if real:
                shown = ", ".join(map(str, real[:10])) + (" ..." if len(real) > 10 else "")
                raise ReferencedError(
                    f"{self._describe()}: record {target} is referenced by {len(real)} "
                    f"other record(s) ({shown}); nothing was removed. Remove them first, "
                    "remove it with cascade=True if they go with it, or force=True to "
                    "leave them referring to nothing", target, real)

    def _still_references(self, source: Any, target: Any) -> bool:
        """Whether record ``source``'s stored payload references ``target`` (a
        payload that cannot be read is taken at its recorded word: it does)."""
        try:
            return target in self._repair_references(source)
        except LoadError as exc:
            log.warning("%s: the references of record %s cannot be read (%s); its recorded "
                        "reference to %s stands", self._describe(), source, exc, target)
            return True

    def _repair_references(self, source: Any) -> list[Any]:
        """The references record ``source`` holds, read from its stored payload
        (recorded again if they differ from what is recorded)."""
        raise NotImplementedError

    def rebuild_references(self) -> int:
        """Read every record's references from its payload again and record
        them (without running anything the payloads name); return how many
        records were read. For a store that GC3Pie also writes to, whose
        writes record no references; :meth:`pack` does it first there.
        """
        with self._lock:
            if not self._tracks_references:
                raise self._untracked("rebuild_references()")
            if self._own_txn() is not None:
                raise TransactionError(f"{self._describe()}: rebuild_references() inside a "
                                       "transaction: commit or roll it back first")
            return self._scan_references(everything=True)

    def pack(self, batch_size: int = PACK_BATCH, progress: bool | None = None) -> PackReport:
        """Remove the records nothing needs: children (records only ever
        stored because another record referenced them, never saved directly)
        that no root reaches any more. Returns a :class:`PackReport`.

        Mark and sweep in the database (a file store's index): memory stays
        bounded whatever the store's size, records go in batches of
        ``batch_size``, with a progress bar on a terminal (``progress``:
        ``None`` = when stderr is one). Safe against concurrent writers: a
        record a running transaction references (or writes) is never
        collected; a writer that references a collected record gets
        :class:`ConflictError`. Records written by GC3Pie have their
        references read from their payloads first (every record, in a store
        GC3Pie shares). Raises :class:`TransactionError` inside a
        transaction, :class:`SchemaError` without reference tracking.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer of at least 1, not {batch_size!r}")
        with self._lock:
            if not self._tracks_references:
                raise self._untracked("pack()")
            if self._own_txn() is not None:
                raise TransactionError(f"{self._describe()}: pack() inside a transaction: "
                                       "commit or roll it back first")
            scanned = self._scan_references(everything=self._shared_with_gc3pie())
            self._refuse_unknown_references()
            with pack_progress(progress, self._describe()) as bar:
                report = self._pack(batch_size, bar)
            report.scanned = scanned
            log.info("%s: pack removed %d record(s), kept %d", self._describe(),
                     report.removed, report.kept)
            return report

    # Reference-tracking primitives of backends that track references.

    def _untracked(self, what: str) -> StoreError:
        """The error for ``what`` in a store that does not track references."""
        return StoreError(f"{self._describe()}: {what} needs reference tracking, which "
                          "this store does not have")

    def _shared_with_gc3pie(self) -> bool:
        """Whether GC3Pie may write this store (its writes record no references)."""
        return False

    def _know_references(self) -> None:  # noqa: B027 - optional hook
        """Make sure every record's references are recorded (those of records
        written by GC3Pie or before tracking are read from their payloads)."""

    def _scan_references(self, everything: bool) -> int:
        """Read and record the references of records whose references are not
        known (``everything``: of all records); return how many were read."""
        raise NotImplementedError

    def _refuse_unknown_references(self) -> None:  # noqa: B027 - optional hook
        """Raise :class:`StoreError` naming the records whose references could
        not be read (a pack could take what they hold)."""

    def _referrers_of(self, ids: Sequence[Any]) -> dict[Any, set[Any]]:
        """``target -> stored records referencing it``, for each of ``ids`` referenced."""
        raise NotImplementedError

    def _children_of(self, ids: Sequence[Any]) -> dict[Any, list[Any]]:
        """``source -> records it references``, for each of ``ids`` that references any."""
        raise NotImplementedError

    def _lock_records(self, ids: Sequence[Any]) -> None:  # noqa: B027 - optional hook
        """Keep other writers from changing or referencing ``ids`` until this
        transaction ends (where the backend needs it)."""

    def _delete_unreferenced(self, id_: Any, force: bool) -> None:
        """Delete record ``id_`` unless another record references it
        (:class:`ReferencedError`; ``force``: whatever references it)."""
        self._delete(id_)
        if not force:
            self._refuse_referenced([id_])

    def _pack(self, batch_size: int, bar: Any) -> PackReport:
        raise NotImplementedError

    def list(self) -> list[Any]:
        """Return the ids of every stored object."""
        with self._lock:
            try:
                return self._ids()
            except BaseException:
                self._doom_own_txn()
                raise

    def _doom_own_txn(self) -> None:
        """A read failed inside this thread's transaction: the database may have
        ended the transaction (PostgreSQL aborts it on any error and turns its
        COMMIT into a ROLLBACK), so it must not look committed: it ends in
        :class:`TransactionError`, and no later write runs in it."""
        txn = self._own_txn()
        if txn is not None:
            txn.doomed = True

    def query(self, *conditions: Any, **equal: Any) -> Query:
        """Rows matching every condition (``JobRow.cores > 8``) and ``column=value`` pair.

        Returns a lazy :class:`~typedstore.query.Query`: iterate it for typed
        rows, or call ``.objects()``, ``.ids()``, ``.count()``. Raises
        ``NotImplementedError`` in stores that cannot answer queries.
        """
        raise NotImplementedError(f"{type(self).__name__} does not answer queries")

    def invalidate_cache(self) -> None:
        """Forget loaded objects: the next ``load`` of any id reads the backing store."""
        with self._lock:
            self._identity.clear()
            self._referencing.clear()

    def refresh(self) -> RefreshReport:
        """Bring the identity map up to date with what other processes committed.

        One read of the stored versions of the mapped ids (a query on SQL,
        the sidecar index on a file store): an object whose record another
        writer changed or removed is dropped from the map; the rest stay as
        they are. Dropped, not reloaded in place: an object the program holds
        never changes under it (a thread working on it keeps a consistent
        object), the next :meth:`load` gives the committed state, and saving
        the dropped object raises :class:`ConflictError` (the version it was
        read at is remembered), unless the store was made with
        ``conflicts="last-writer-wins"``. Objects whose version this store
        does not know (records of a GC3Pie table not adopted yet) are
        dropped too.

        Returns a :class:`RefreshReport`. Raises :class:`TransactionError`
        inside a transaction of the calling thread (its own writes would be
        taken for others').
        """
        with self._lock:
            if self._own_txn() is not None:
                raise TransactionError(
                    f"{self._describe()}: refresh() inside a transaction: commit or roll "
                    "it back first (the transaction's own writes are not others' changes)")
            mapped = self._identity.versions()
            report = RefreshReport()
            if not mapped:
                return report
            current = self._current_versions([id_ for id_, _ in mapped])
            for id_, version in mapped:
                if current is not None and id_ not in current:
                    report.removed.append(id_)
                elif current is None or version is None or current[id_] != version:
                    report.changed.append(id_)
                else:
                    report.unchanged += 1
                    continue
                self._identity.evict(id_)
            if report.changed or report.removed:
                log.debug("%s: refresh dropped %d changed and %d removed object(s)",
                          self._describe(), len(report.changed), len(report.removed))
            return report

    def _current_versions(self, ids: Sequence[Any]) -> dict[Any, int | None] | None:
        """The stored version of each of ``ids`` that is still stored (``None``
        for a record without one); ``None`` if this backend keeps no versions
        (every mapped object then counts as changed)."""
        return None

    def pre_fork(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Prepare for ``os.fork()``: release connections a child must not share.

        Forking is also handled automatically (``os.register_at_fork``); this is
        kept for GC3Pie code that calls it.
        """

    def post_fork(self) -> None:  # noqa: B027
        """Restore what :meth:`pre_fork` released (a no-op where nothing was)."""

    def close(self) -> None:  # noqa: B027
        """Release files and connections; the store must not be used afterwards."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._describe()}>"


# ---------------------------------------------------------------- make_store

#: Backends built into typedstore, imported on first use of their schemes.
_BUILTIN_SCHEMES = {
    "file": "typedstore.filesystem",
    "sqlite": "typedstore.sql",
    "postgresql": "typedstore.sql",
    "mysql": "typedstore.sql",
    "mariadb": "typedstore.sql",
}


def register(scheme: str, constructor: Callable[..., Store]) -> None:
    """Make :func:`make_store` build stores for ``scheme`` URLs with ``constructor``.

    ``constructor`` is called as ``constructor(url, *args, **kwargs)``, with the
    URL as given. A constructor registered earlier for the scheme is replaced.
    """
    Store._registry[scheme.lower()] = constructor


def make_store(uri: str | os.PathLike[str], *args: Any, **kwargs: Any) -> Store:
    """Build the store a URL names.

    A bare path or ``file:///dir`` gives a :class:`FilesystemStore`;
    ``sqlite:///...``, ``postgresql[+driver]://...`` and ``mysql[+driver]://...``
    give a :class:`SqlStore`; ``#table=NAME`` picks the SQL table. ``uri`` may
    also be a URL object whose ``str()`` is the URL (GC3Pie's ``gc3libs.url.Url``).
    Other arguments go to the constructor (see each class for its options:
    ``row_model``, ``create``, ``idfactory``, ``protocol``, ``allowed_classes``,
    ``missing_classes``, ``gc3pie_compatible``, the timeouts ``connect_timeout``,
    ``lock_timeout``, ``statement_timeout``, ``read_timeout`` in seconds, ...);
    each backend accepts the other's keyword arguments and logs a warning for
    one no backend takes. Raises :class:`UrlError` for an unknown scheme or a
    malformed URL.
    """
    parsed = parse_store_url(uri)
    constructor = Store._registry.get(parsed.scheme)
    if constructor is None and parsed.scheme in _BUILTIN_SCHEMES:
        importlib.import_module(_BUILTIN_SCHEMES[parsed.scheme])
        constructor = Store._registry.get(parsed.scheme)
    if constructor is None:
        known = sorted(set(Store._registry) | set(_BUILTIN_SCHEMES))
        raise UrlError(
            f"no store for URL scheme {parsed.scheme!r} in {redact(parsed.original)}; "
            f"known schemes: {', '.join(known)}",
            redact(parsed.original),
        )
    return constructor(parsed.text, *args, **kwargs)
