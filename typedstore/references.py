"""Reference tracking: which record references which, read from payloads without running them.

A record's payload names the Persistables it references by persistent id
(:mod:`typedstore.serialization`). A store that writes a record knows them
already (the pickler asked for each); for records written by someone else
(GC3Pie, or typedstore before reference tracking) :func:`referenced_ids`
reads them out of the pickle with a *skeleton* unpickler: every class the
payload names is replaced by an inert stand-in, no module is imported and no
callable of the payload's is called, so a planted record cannot run code
here. Only the id classes (typedstore's and GC3Pie's ``Id``/``IntId``) are
rebuilt, as plain ``str``/``int``.

The graph lives in the backend: a reference table per store table on SQL
(:func:`typedstore.tables.refs_table`), written in the same transaction as
the records; a ``refs`` table in a file store's sidecar index, written with
the index rows. Each record's ``_root`` says what it is:

* 1 (:data:`ROOT`): saved directly by the user, and never referenced by
  another record: removing it needs no look at the references (one
  statement, as before reference tracking);
* 2 (:data:`REFERENCED_ROOT`): saved directly, and referenced at some time;
* 0 (:data:`CHILD`): only ever stored because another record referenced it;
  :meth:`Store.pack <typedstore.store.Store.pack>` collects it once nothing
  reachable from a root references it (mark and sweep, as ZODB's and
  Durus's pack);
* NULL: not known (a row written by GC3Pie, or before reference tracking):
  a root for pack, and its references are read from its payload before
  anything relies on them.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import LoadError

#: ``_root`` values (see the module docstring) and the column holding them.
CHILD, ROOT, REFERENCED_ROOT = 0, 1, 2
ROOT_COLUMN = "_root"

#: Classes a persistent id is pickled as, and what each becomes.
_INT_IDS = {
    ("typedstore.ids", "IntId"),
    ("gc3libs.persistence.sql", "IntId"),
    ("builtins", "int"),
}
_STR_IDS = {
    ("typedstore.ids", "Id"),
    ("gc3libs.persistence.idfactory", "Id"),
    ("gc3libs.persistence", "Id"),
    ("builtins", "str"),
}


class _Inert:
    """Stands in for every class a payload names: takes any arguments and
    state, and does nothing with them."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Inert:
        return object.__new__(_Inert)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Inert:
        return _Inert()

    def __setstate__(self, state: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass

    def add(self, item: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


class _IntRef:
    """An ``IntId`` as a plain ``int``: GC3Pie's ``IntId(prefix, seqno)`` (as
    ``NEWOBJ``), ``IntId(5)``, or ``copyreg._reconstructor(IntId, int, 5)``."""

    def __new__(cls, *args: Any) -> Any:
        seqno = args[-1] if args else None
        if isinstance(seqno, bool) or not isinstance(seqno, (int, str)):
            raise TypeError(f"an IntId is made of an int, not {type(seqno).__name__}")
        return int(seqno)


class _StrRef:
    """An ``Id`` as a plain ``str``: ``Id("job.3")`` or GC3Pie's ``Id(prefix, seqno)``."""

    def __new__(cls, *args: Any) -> Any:
        # Only plain values (a list argument nested with shared parts would make
        # a string exponentially long from a few bytes).
        if len(args) == 2 and isinstance(args[0], str) and isinstance(args[1], int) \
                and not isinstance(args[1], bool):
            return f"{args[0]}.{args[1]}"
        if len(args) == 1 and isinstance(args[0], str):
            return args[0]
        raise TypeError("an Id is made of a prefix and a number, or a string")


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` for the skeleton: ids rebuilt, the rest inert."""
    if cls is _IntRef or cls is _StrRef:
        return cls(state)
    return _Inert()


class _SkeletonUnpickler(pickle._Unpickler):
    """pickle's Python unpickler with every class inert (see the module docstring)."""

    dispatch: ClassVar[dict[int, Callable[[Any], None]]] = dict(pickle._Unpickler.dispatch)
    if TYPE_CHECKING:  # pickle._Unpickler's own, which typeshed does not describe
        stack: list[Any]

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.found: list[Any] = []

    def _build(self) -> None:
        # BUILD on whatever a payload made does nothing (an int id has no __dict__).
        self.stack.pop()

    dispatch[pickle.BUILD[0]] = _build

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _INT_IDS:
            return _IntRef
        if (module, name) in _STR_IDS:
            return _StrRef
        if (module, name) in (("copyreg", "_reconstructor"), ("copy_reg", "_reconstructor")):
            return _reconstructor
        return _Inert

    def persistent_load(self, pid: Any) -> Any:
        self.found.append(pid)
        return _Inert()


def referenced_ids(payload: bytes, record_id: Any = None) -> list[Any]:
    """The persistent ids a payload references, in order of first mention
    (``int`` or ``str``, as pickled), read without running anything the
    payload names.

    Raises :class:`~typedstore.errors.LoadError` naming ``record_id`` if the
    payload is not a pickle this can read, or a reference is not an id.
    """
    skeleton = _SkeletonUnpickler(payload)
    try:
        skeleton.load()
    except Exception as exc:
        raise LoadError(f"record {record_id}: its references cannot be read from its "
                        f"payload ({type(exc).__name__}: {exc})", record_id) from exc
    ids: dict[Any, None] = {}
    for pid in skeleton.found:
        if isinstance(pid, bool) or not isinstance(pid, (int, str)):
            raise LoadError(f"record {record_id}: a reference in its payload is a "
                            f"{type(pid).__name__}, not an id", record_id)
        ids[pid] = None
    return list(ids)


@dataclass
class PackReport:
    """What :meth:`Store.pack <typedstore.store.Store.pack>` did.

    Attributes:
        removed (int): records removed (children no root reaches).
        sample (list): the first removed ids, at most :data:`PACK_SAMPLE` (a
            pack of a large store does not hold every id in memory).
        kept (int): records left: roots and what they reach.
        scanned (int): records whose references were read from their payloads
            first (written by GC3Pie, or before reference tracking).
    """

    removed: int = 0
    sample: list[Any] = field(default_factory=list)
    kept: int = 0
    scanned: int = 0


#: How many removed ids a PackReport keeps.
PACK_SAMPLE = 1000
#: Records removed per statement by pack (and read per batch by a scan).
PACK_BATCH = 1000
