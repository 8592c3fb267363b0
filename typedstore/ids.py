"""Object ids and the factories that issue them.

Two id types exist, as in GC3Pie:

* :class:`Id` -- a ``str`` of the form ``"PREFIX.N"`` (``"Application.12"``,
  ``"job.3"``), used by the file store, whose records are files named by id;
* :class:`IntId` -- an ``int``, used by the SQL store, whose ``id`` column is an
  integer primary key.

Both take GC3Pie 2.6.8's constructor signature ``(prefix, seqno)``, which its
:class:`IdFactory` calls and its pickles carry (``gc3libs.persistence.idfactory.Id``
and ``gc3libs.persistence.sql.IntId``), so records GC3Pie wrote load with these
classes in their place. A store shared with GC3Pie writes ids into its payloads
under GC3Pie's class names (:func:`gc3pie_ids`), so GC3Pie reads them back too.

Ids are *temporally unique*: a number is never issued twice, also across
processes and program runs that share a store. An :class:`IdFactory` gets its
numbers from a *sequence* (``next_id_fn``): each store binds its own durable
sequence (a locked counter file in the store directory, or a counter row in
the database) unless the caller supplied one.
"""

from __future__ import annotations

import functools
import operator
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, SupportsIndex

from filelock import FileLock, Timeout

from . import defaults
from .defaults import ID_COUNTER_HOME_ENV
from .errors import LockTimeout, SaveError
from .tempfiles import replace_file

#: A sequence hands out fresh numbers, with GC3Pie's calling convention
#: (``gc3libs.utils.progressive_number``): called without arguments it returns
#: one number; called with ``n`` it returns either the first of ``n``
#: consecutive numbers or an iterable of ``n`` numbers.
NextIdFn = Callable[..., "int | Iterable[int]"]


class _IdPickling(threading.local):
    """Per thread: true while a store pickles a GC3Pie-compatible record."""

    gc3pie = False


_pickling = _IdPickling()


def _gc3pie_id(prefix: str, seqno: int) -> Id:
    """Stands for ``gc3libs.persistence.idfactory.Id`` in a pickle being written.

    :func:`gc3pie_payload` renames it to GC3Pie's class; typedstore loads that
    name as :class:`Id` again (a class alias).
    """
    return Id(prefix, seqno)


def _gc3pie_int_id(prefix: None, seqno: int) -> IntId:
    """Stands for ``gc3libs.persistence.sql.IntId`` in a pickle being written."""
    return IntId(prefix, seqno)


#: Protocol of GC3Pie-compatible payloads: the highest whose class references
#: are GLOBAL opcodes (``c`` module ``\n`` name ``\n``), with no frame lengths
#: to keep right when a reference is renamed.
GC3PIE_PAYLOAD_PROTOCOL = 3

_GC3PIE_RENAMES = (
    (b"c" + __name__.encode() + b"\n_gc3pie_id\n", b"cgc3libs.persistence.idfactory\nId\n"),
    (b"c" + __name__.encode() + b"\n_gc3pie_int_id\n", b"cgc3libs.persistence.sql\nIntId\n"),
)


@contextmanager
def gc3pie_ids() -> Iterator[None]:
    """Within this block, ids pickle as stand-ins that :func:`gc3pie_payload` renames.

    A store of GC3Pie's (or shared with GC3Pie) pickles records inside it, with
    protocol :data:`GC3PIE_PAYLOAD_PROTOCOL`, then passes the bytes to
    :func:`gc3pie_payload`: ids then name GC3Pie 2.6.8's own classes, with
    GC3Pie's constructor arguments, and GC3Pie reads the record back with ids of
    its own types (its ``Id`` hashes and orders unlike a plain ``str``).
    Elsewhere ids pickle as themselves.
    """
    previous, _pickling.gc3pie = _pickling.gc3pie, True
    try:
        yield
    finally:
        _pickling.gc3pie = previous


def gc3pie_payload(data: bytes) -> bytes:
    """Rename the id stand-ins of a protocol-3 pickle to GC3Pie's classes.

    A GLOBAL opcode carries its names as text between newlines, so renaming
    changes no length or memo index the rest of the pickle depends on.
    """
    for stand_in, gc3pie in _GC3PIE_RENAMES:
        if stand_in in data:
            data = data.replace(stand_in, gc3pie)
    return data


class Id(str):
    """A string id ``"PREFIX.N"`` that orders by ``N`` within a prefix.

    ``Id(prefix, seqno)`` is GC3Pie 2.6.8's signature
    (``gc3libs.persistence.idfactory.Id``), and its pickles (``__getnewargs__``
    ``(prefix, seqno)``) load as this class. ``Id("job.3")`` parses a string.
    It equals and hashes like its string, so ids work as keys of dicts keyed by
    ``str`` and in sets together with plain strings.

    Attributes:
        _prefix (str): the part before the last dot.
        _seqno (int): the number after it.

    Raises:
        TypeError: no ``seqno`` and ``prefix`` is not a ``"PREFIX.N"`` string,
            or ``seqno`` is not an integer.
    """

    _prefix: str
    _seqno: int

    def __new__(cls, prefix: Any = None, seqno: Any = None) -> Id:
        if seqno is None:
            if isinstance(prefix, str):
                try:
                    return cls.parse(prefix)
                except ValueError:
                    pass
            raise TypeError(f"Id needs (prefix, seqno) or one 'PREFIX.N' string, got {prefix!r}")
        if isinstance(seqno, bool):
            raise TypeError(f"Id seqno must be an integer, got {seqno!r}")
        number = operator.index(seqno)
        instance = super().__new__(cls, f"{prefix}.{number}")
        instance._prefix = prefix
        instance._seqno = number
        return instance

    @classmethod
    def parse(cls, text: str) -> Id:
        """Turn ``"PREFIX.N"`` into an :class:`Id`; raise ``ValueError`` otherwise."""
        prefix, sep, number = str(text).rpartition(".")
        if (not sep or not (number.isascii() and number.isdigit())
                or (number[0] == "0" and len(number) > 1)):
            # "job.01" is not job.1: it names another file (GC3Pie writes "%d").
            raise ValueError(f"not an id of the form PREFIX.N: {text!r}")
        return cls(prefix, int(number))

    def __getnewargs__(self) -> tuple[Any, ...]:
        return (self._prefix, self._seqno)

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        if _pickling.gc3pie:
            return (_gc3pie_id, self._key())
        return super().__reduce_ex__(protocol)

    def _key(self) -> tuple[str, int]:
        # Unpickled from a protocol-0/1 pickle the attributes arrive by state;
        # fall back to parsing so an Id is always comparable.
        try:
            return (self._prefix, self._seqno)
        except AttributeError:
            prefix, _, number = str.rpartition(self, ".")
            return (prefix, int(number) if number.isdigit() else -1)

    @staticmethod
    def _other_key(other: object) -> tuple[str, int] | None:
        if isinstance(other, Id):
            return other._key()
        return None

    def __lt__(self, other: object) -> bool:
        key = self._other_key(other)
        if key is None:
            return str.__lt__(self, other)  # type: ignore[operator]
        return self._key() < key

    def __le__(self, other: object) -> bool:
        key = self._other_key(other)
        if key is None:
            return str.__le__(self, other)  # type: ignore[operator]
        return self._key() <= key

    def __gt__(self, other: object) -> bool:
        key = self._other_key(other)
        if key is None:
            return str.__gt__(self, other)  # type: ignore[operator]
        return self._key() > key

    def __ge__(self, other: object) -> bool:
        key = self._other_key(other)
        if key is None:
            return str.__ge__(self, other)  # type: ignore[operator]
        return self._key() >= key

    # Equality and hashing stay those of str: Id("job.1") == "job.1".
    __eq__ = str.__eq__
    __hash__ = str.__hash__

    def __repr__(self) -> str:
        return f"Id({str.__repr__(self)})"


class IntId(int):
    """An integer id, as the SQL store's ``id`` column holds.

    ``IntId(prefix, seqno)`` is GC3Pie 2.6.8's signature
    (``gc3libs.persistence.sql.IntId``: the prefix is ignored) and its pickles
    (``(None, n)``) load as this class; ``IntId(12)`` is the short form.

    Raises:
        TypeError: the number is missing, a ``bool``, or not an integer.
    """

    def __new__(cls, prefix: Any = None, seqno: Any = None) -> IntId:
        value = prefix if seqno is None else seqno
        if value is None or isinstance(value, bool):
            raise TypeError(f"IntId needs an integer, got {value!r}")
        return super().__new__(cls, operator.index(value))

    def __getnewargs__(self) -> tuple[Any, ...]:
        return (None, int(self))

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        if _pickling.gc3pie:
            return (_gc3pie_int_id, (None, int(self)))
        return super().__reduce_ex__(protocol)

    def __repr__(self) -> str:
        return f"IntId({int(self)})"

    def __str__(self) -> str:
        return int.__repr__(self)


#: ``new_int_id(5)`` is ``IntId(5)`` built without the Python-level ``__new__``
#: (the SQL store makes one per row it loads).
new_int_id: Callable[[int], IntId] = functools.partial(int.__new__, IntId)


def normalize_id(id_: Any) -> Id | IntId | Any:
    """Return ``id_`` as the id type it spells: ``"job.3"`` -> Id, ``3`` -> IntId."""
    if isinstance(id_, (Id, IntId)):
        return id_
    if isinstance(id_, SupportsIndex) and not isinstance(id_, (bool, str)):
        return IntId(int(id_))
    if isinstance(id_, str):
        try:
            return Id.parse(id_)
        except ValueError:
            return id_
    return id_


class FileCounter:
    """A durable number sequence kept in one small file, guarded by a file lock.

    The file holds the next free number as decimal text. Reserving takes the
    lock, reads, writes the advanced value to a temporary file, fsyncs it and
    renames it over the old one, so a crash never loses or rewinds the counter.

    Attributes:
        path (Path): the counter file.
        floor_fn: called once, under the lock, when the file does not exist yet;
            returns the smallest number that may be issued (for example one more
            than the largest id already present in a store directory).
        timeout (float): seconds to wait for the lock (default
            :data:`~typedstore.defaults.LOCK_TIMEOUT`), then :class:`LockTimeout`.
        owner (str): the store the counter numbers, for messages.
    """

    def __init__(self, path: str | os.PathLike[str], floor_fn: Callable[[], int] | None = None,
                 timeout: float | None = None, owner: str = ""):
        self.path = Path(path)
        self.floor_fn = floor_fn
        self.timeout = defaults.LOCK_TIMEOUT if timeout is None else timeout
        self.owner = owner
        self.reset_locks()

    def reset_locks(self) -> None:
        """New lock objects (a forked child must not use the parent's)."""
        self._lock = FileLock(str(self.path) + ".lock", timeout=self.timeout)
        self._thread_lock = threading.Lock()

    def __call__(self, n: int = 1) -> int:
        """Reserve ``n`` consecutive numbers and return the first."""
        if n < 1:
            raise ValueError(f"cannot reserve {n} ids")
        with self._thread_lock, self._locked():
            try:
                first = int(self.path.read_text().strip() or "1")
            except FileNotFoundError:
                first = max(1, self.floor_fn() if self.floor_fn else 1)
            try:
                replace_file(self.path, f"{first + n}\n")
            except OSError as exc:
                # A full disk or a quota: the counter is as it was.
                owner = f"{self.owner}: " if self.owner else ""
                raise SaveError(f"{owner}the id counter {self.path} cannot be advanced: "
                                f"{exc.strerror or exc}; no id was issued") from exc
        return first

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The file lock, or LockTimeout naming the store, the lock and the wait."""
        try:
            self._lock.acquire()
        except Timeout:
            owner = f"{self.owner}: " if self.owner else ""
            lock = self._lock.lock_file
            raise LockTimeout(
                f"{owner}waited {self.timeout:.1f} s for the id counter lock {lock}, held by "
                f"another process (lock_timeout={self.timeout:g} s); no id was issued",
                lock, self.timeout, self.owner) from None
        try:
            yield
        finally:
            self._lock.release()


class BlockSequence:
    """A sequence that takes numbers from a durable one a block at a time.

    ``fetch(k)`` reserves ``k`` consecutive numbers durably (one counter-file
    rewrite, or one counter-row update) and returns the first; this class hands
    them out one call at a time. Numbers of a block never handed out (the
    process ends, :meth:`reset` is called) are gaps, never reissued.

    Attributes:
        block_size (int): how many numbers one fetch takes at least.
    """

    def __init__(self, fetch: Callable[[int], int], block_size: int) -> None:
        self.fetch = fetch
        self.block_size = block_size
        self._next = self._end = 0  # the cached block: [_next, _end)
        self._lock = threading.Lock()

    def __call__(self, n: int = 1) -> int:
        """``n`` consecutive fresh numbers: return the first."""
        with self._lock:
            first = self._next
            if self._end - first < n:
                # A short remainder is dropped: numbers must be consecutive.
                size = max(n, self.block_size)
                first = self.fetch(size)
                self._end = first + size
            self._next = first + n
            return first

    def reset(self) -> None:
        """Drop the cached block (after a rollback that returned it, or a fork)."""
        self._next = self._end = 0
        self._lock = threading.Lock()


def _home_counter() -> FileCounter:
    home = Path(os.environ.get(ID_COUNTER_HOME_ENV, Path.home() / ".typedstore"))
    home.mkdir(parents=True, exist_ok=True)
    return FileCounter(home / "next_id")


class IdFactory:
    """Issue temporally unique ids of class ``id_class``.

    Args:
        prefix: the prefix of :class:`Id` values; ``None`` uses the class name
            of the object the id is for (GC3Pie's default).
        next_id_fn: the number sequence. ``None`` lets the store the factory is
            given to bind its own durable sequence; a factory used outside any
            store falls back to a counter file in ``~/.typedstore`` (or
            ``$TYPEDSTORE_HOME``).
        id_class: :class:`Id` (default) or :class:`IntId`, or any class taking
            ``(prefix, seqno)`` (GC3Pie 2.6.8's convention).

    ``reserve(n)`` pre-allocates ``n`` numbers in one call to the sequence;
    ``new(obj)`` uses reserved numbers first.
    """

    def __init__(
        self,
        prefix: str | None = None,
        next_id_fn: NextIdFn | None = None,
        id_class: type[Any] = Id,
    ) -> None:
        self._prefix = prefix
        self._next_id_fn = next_id_fn
        self._id_class = id_class
        self._pool: list[int] = []
        self._lock = threading.Lock()

    @property
    def id_class(self) -> type[Any]:
        return self._id_class

    @property
    def has_sequence(self) -> bool:
        """True if a sequence was given or bound."""
        return self._next_id_fn is not None

    def with_sequence(self, next_id_fn: NextIdFn) -> IdFactory:
        """This factory if it has a sequence, else a copy of it that uses ``next_id_fn``.

        Stores call it with their own durable sequence; copying (rather than
        binding the caller's factory) keeps one factory given to two stores
        from issuing one store's numbers in the other.
        """
        if self._next_id_fn is not None:
            return self
        copy = type(self).__new__(type(self))
        IdFactory.__init__(copy, self._prefix, next_id_fn, self._id_class)
        return copy

    def discard_reserved(self) -> None:
        """Forget reserved numbers (they are never issued; gaps are harmless)."""
        with self._lock:
            self._pool.clear()

    def _take(self, n: int) -> list[int]:
        got = self._fetch(n)
        return list(range(got, got + n)) if isinstance(got, int) else self._numbers(got, n)

    def _fetch(self, n: int) -> Any:
        """Ask the sequence for ``n`` numbers (the home counter if none was bound)."""
        if self._next_id_fn is None:
            self._next_id_fn = _home_counter()
        return self._next_id_fn(n)

    @staticmethod
    def _numbers(got: Iterable[Any], n: int) -> list[int]:
        """The numbers a sequence returned as an iterable; exactly ``n`` of them."""
        numbers = [int(x) for x in got]
        if len(numbers) != n:
            raise ValueError(f"id sequence returned {len(numbers)} numbers, {n} were asked")
        return numbers

    def reserve(self, n: int) -> None:
        """Pre-allocate ``n`` ids with one call to the sequence."""
        if n < 1:
            return
        with self._lock:
            numbers = self._take(n)
            # Pop from the end: keep the smallest number last.
            self._pool[:0] = reversed(numbers)

    def new(self, obj: Any) -> Any:
        """Return a new id for ``obj``: ``id_class(prefix, seqno)``, as GC3Pie does.

        The prefix is this factory's, or ``obj``'s class name when it has none.
        """
        with self._lock:
            pool = self._pool
            if pool:
                seqno = pool.pop()
            else:
                if self._next_id_fn is None:
                    self._next_id_fn = _home_counter()
                # One number: the sequence is called without arguments, as
                # GC3Pie calls gc3libs.utils.progressive_number.
                got = self._next_id_fn()
                seqno = got if isinstance(got, int) else self._numbers(got, 1)[0]
        return self._id_class(self._prefix or type(obj).__name__, seqno)


class JobIdFactory(IdFactory):
    """An :class:`IdFactory` whose ids read ``job.N``."""

    def __init__(self, next_id_fn: NextIdFn | None = None, id_class: type[Any] = Id) -> None:
        super().__init__(prefix="job", next_id_fn=next_id_fn, id_class=id_class)
