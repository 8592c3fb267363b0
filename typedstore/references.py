"""Reference tracking: which record references which, read from payloads without running them.

A record's payload names the Persistables it references by persistent id
(:mod:`typedstore.serialization`). A store that writes a record knows them
already (the pickler asked for each); for records written by someone else
(GC3Pie, or typedstore before reference tracking) :func:`referenced_ids`
reads them out of the pickle with :mod:`typedstore.pickleview`'s reader, which
imports and calls nothing the payload names, so a planted record cannot run
code here. Only ids of the id classes (typedstore's and GC3Pie's
``Id``/``IntId``) made of plain values are accepted, as ``str``/``int``.

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

from dataclasses import dataclass, field
from typing import Any

from .errors import LoadError
from .pickleview import Made, Named, persistent_ids

#: ``_root`` values (see the module docstring) and the column holding them.
CHILD, ROOT, REFERENCED_ROOT = 0, 1, 2
ROOT_COLUMN = "_root"

#: The id classes a persistent id is pickled as (typedstore's and GC3Pie's).
_INT_IDS = {("typedstore.ids", "IntId"), ("gc3libs.persistence.sql", "IntId")}
_STR_IDS = {("typedstore.ids", "Id"), ("gc3libs.persistence.idfactory", "Id"),
            ("gc3libs.persistence", "Id")}


def _plain_id(pid: Any) -> int | str | None:
    """The id a persistent id names (``None`` if it is not one): a plain ``str``
    or ``int``, or an id class made of plain values: GC3Pie's ``IntId(prefix,
    seqno)`` / ``Id(prefix, seqno)``, ``Id("job.3")``. Nothing else: an id made
    of a list nested with shared parts would make a string exponentially long
    from a few bytes."""
    if isinstance(pid, bool):
        return None
    if isinstance(pid, (int, str)):
        return pid
    if not isinstance(pid, Made) or not isinstance(pid.target, Named):
        return None
    key, args = (pid.target.module, pid.target.name), pid.args
    if key in _INT_IDS and args and isinstance(args[-1], int) \
            and not isinstance(args[-1], bool):
        return int(args[-1])
    if key in _STR_IDS:
        if len(args) == 2 and isinstance(args[0], str) and isinstance(args[1], int) \
                and not isinstance(args[1], bool):
            return f"{args[0]}.{args[1]}"
        if len(args) == 1 and isinstance(args[0], str):
            return args[0]
    return None


def referenced_ids(payload: bytes, record_id: Any = None) -> list[Any]:
    """The ids a payload references, in order of first mention (``int`` or
    ``str``, as pickled), read by :func:`typedstore.pickleview.persistent_ids`:
    nothing the payload names is imported or called.

    Raises :class:`~typedstore.errors.LoadError` naming ``record_id`` if the
    payload is not a pickle that can be read to its end, or a reference in it
    is not an id.
    """
    try:
        found = persistent_ids(payload)
    except Exception as exc:  # any damage: pickle raises many types
        raise LoadError(f"record {record_id}: its references cannot be read from its "
                        f"payload ({type(exc).__name__}: {exc})", record_id) from exc
    ids: dict[Any, None] = {}
    for pid in found:
        plain = _plain_id(pid)
        if plain is None:
            raise LoadError(f"record {record_id}: a reference in its payload is a "
                            f"{type(pid).__name__}, not an id", record_id)
        ids[plain] = None
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
