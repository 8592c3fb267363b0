"""The identity map: one object per id per store, plus the version each was read at.

Objects are held weakly when they allow it, so streaming a large query does not
keep every loaded object alive; objects that cannot be weakly referenced
(plain ``dict``/``list`` records, classes with ``__slots__`` and no
``__weakref__``) are held strongly until ``clear()`` or ``discard()``. An
object that leaves the map while alive (``clear()``, a conflict, a newer object
for its id) is *retired*: the version it was read at is kept, so saving it
later is checked, never written blindly; a retired object that cannot be
weakly referenced is held strongly for it (its ``id()`` must not be reused)
until it is mapped again. A transaction records what it changed in a journal
so a rollback can put the map back exactly as it was. While a query reads a
snapshot (:meth:`IdentityMap.watch`), the map notes which ids its store
writes, removes or evicts, so older snapshot rows are not mapped over them.

Speed: every load and save goes through here, so each id has a single entry
object, a weak reference that also carries the id and the version (one
allocation, one dict slot); a dead entry removes itself from the map.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

try:
    from _weakref import _remove_dead_weakref  # type: ignore[attr-defined]
except ImportError:  # not CPython: the same, without its atomicity
    def _remove_dead_weakref(entries: dict[Any, Any], key: Any) -> None:
        entry = entries.get(key)
        if entry is not None and entry() is None:
            del entries[key]

_MISSING = object()


class _WeakEntry(weakref.ref):  # type: ignore[type-arg]
    """A weak reference to a mapped object, with its id and stored version."""

    __slots__ = ("key", "version")
    key: Any
    version: int | None


class _RetiredEntry(_WeakEntry):
    """A weak reference to an object that left the map while alive, with the id
    and version it was read or written at (its ``key`` is ``id(obj)``)."""

    __slots__ = ("pid",)
    pid: Any


class _StrongEntry:
    """The entry of an object that cannot be weakly referenced: held strongly."""

    __slots__ = ("key", "obj", "version")
    key: Any
    version: int | None

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __call__(self) -> Any:
        return self.obj


class _StrongRetired(_StrongEntry):
    """A retired object that cannot be weakly referenced: held strongly (its
    ``id()`` must not be reused while its version is remembered) until it is
    mapped again or the store is closed."""

    __slots__ = ("pid",)
    pid: Any


def _forgetter(entries: dict[Any, Any]) -> Callable[[_WeakEntry], None]:
    """The callback of weak entries: drop a collected object's entry from ``entries``.

    A closure over the dict, not over the map, so entries keep no map alive.
    Removes the key only if its entry is still a dead one (atomic on CPython):
    a newer entry for the same id stays.
    """

    def forget(entry: _WeakEntry) -> None:
        _remove_dead_weakref(entries, entry.key)

    return forget


_STAMP = "_typedstore_version"  # typedstore.serialization.VERSION_STAMP


def _stamp(obj: Any, key: Any, version: int) -> None:
    if getattr(type(obj), "_typedstore_stampable", False):
        obj.__dict__[_STAMP] = (key, version)


def stamped_version(obj: Any, key: Any) -> int | None:
    """The version a map with stamp ``key`` last stamped on ``obj`` (or on
    the object ``obj`` was copied from), None if none."""
    found = getattr(obj, "__dict__", {}).get(_STAMP) \
        if getattr(type(obj), "_typedstore_stampable", False) else None
    if isinstance(found, tuple) and len(found) == 2 and found[0] == key \
            and isinstance(found[1], int):
        return found[1]
    return None


class IdentityMap:
    """Maps ids to loaded or saved objects and their stored versions.

    Attributes:
        journal (list | None): while a transaction is open, the previous
            entries of every id it touched, in order; ``None`` otherwise.
    """

    def __init__(self, stamp: Any = None) -> None:
        #: What this map stamps, with the version, on objects that allow it
        #: (``Persistable``: see typedstore.serialization.VERSION_STAMP);
        #: None: no stamps.
        self.stamp = stamp
        self._entries: dict[Any, _WeakEntry | _StrongEntry] = {}
        self._forget = _forgetter(self._entries)
        # Objects that left the map while still alive (a newer object took
        # their id, invalidate_cache, a conflict), by id(obj): saving one later
        # is checked against the version it was read at, never written blindly.
        self._retired: dict[int, _RetiredEntry | _StrongRetired] = {}
        self._forget_retired = _forgetter(self._retired)
        self.journal: list[tuple[Any, Any, int | None]] | None = None
        # Queries under way (:meth:`watch`): the ids this store wrote, removed
        # or evicted since each started, so that a row of an older snapshot
        # is not mapped over them.
        self._watchers = 0
        self._generation = 0
        self._changed: dict[Any, int] = {}
        self._cleared_at = -1

    def get(self, id_: Any) -> Any:
        """Return the object mapped to ``id_``, or ``None``."""
        entry = self._entries.get(id_)
        return None if entry is None else entry()

    def version(self, id_: Any) -> int | None:
        """The stored version the mapped object was read or written at (None: unknown)."""
        entry = self._entries.get(id_)
        if entry is None or entry() is None:
            return None
        return entry.version

    def _remember(self, id_: Any) -> None:
        if self.journal is not None:
            entry = self._entries.get(id_)
            obj = None if entry is None else entry()
            if entry is None or obj is None:
                self.journal.append((id_, _MISSING, None))
            else:
                self.journal.append((id_, obj, entry.version))

    def put(self, id_: Any, obj: Any, version: int | None, journal: bool = True,
            retire: bool = True) -> None:
        """Map ``id_`` to ``obj`` stored at ``version``.

        ``journal=False`` for objects loaded from committed data: a rollback
        must not forget them (the caller still holds them, at that version).
        Another live object mapped to ``id_`` before is retired (see
        :meth:`retired_version`) unless ``retire=False`` (a rollback restoring
        the map).
        """
        if journal:
            if self.journal is not None:
                self._remember(id_)
            if self._watchers:
                self._touch(id_)
        if self._retired:
            self._retired.pop(id(obj), None)  # mapped again: its own entry from now on
        if retire:
            old = self._entries.get(id_)
            if old is not None and old.version is not None and old() is not obj:
                self._retire(old)
        entry: _WeakEntry | _StrongEntry
        try:
            entry = _WeakEntry(obj, self._forget)
        except TypeError:  # not weakly referenceable
            entry = _StrongEntry(obj)
        entry.key = id_
        entry.version = version
        self._entries[id_] = entry
        if version is not None and self.stamp is not None:
            _stamp(obj, self.stamp, version)

    def versions(self) -> list[tuple[Any, int | None]]:
        """``(id, version)`` of every id mapped to a live object."""
        return [(id_, entry.version) for id_, entry in list(self._entries.items())
                if entry() is not None]

    def set_version(self, id_: Any, version: int | None) -> None:
        """Record the version the mapped object of ``id_`` is now stored at."""
        entry = self._entries.get(id_)
        if entry is not None:
            entry.version = version
            if version is not None and self.stamp is not None:
                _stamp(entry(), self.stamp, version)
        if self._watchers:
            self._touch(id_)

    def discard(self, id_: Any) -> None:
        """Forget ``id_`` (after a remove)."""
        self._remember(id_)
        self._entries.pop(id_, None)
        if self._watchers:
            self._touch(id_)

    def unload(self, id_: Any) -> None:
        """Forget an object this map got from a load that was abandoned (no
        journal entry, no version kept: the object is thrown away)."""
        self._entries.pop(id_, None)

    def evict(self, id_: Any) -> None:
        """Forget ``id_``'s object but remember the version it was read at (after
        a conflict: the next load reads the record again; saving the stale
        object is checked against its old version and conflicts again)."""
        entry = self._entries.pop(id_, None)
        if entry is not None:
            self._retire(entry)
        if self._watchers:
            self._touch(id_)

    def clear(self) -> None:
        """Forget every object (``invalidate_cache``), remembering versions as :meth:`evict`."""
        entries = list(self._entries.values())
        self._entries.clear()
        for entry in entries:
            self._retire(entry)
        if self._watchers:
            self._generation += 1
            self._cleared_at = self._generation

    def _retire(self, entry: _WeakEntry | _StrongEntry) -> None:
        obj = entry()
        if obj is None or entry.version is None:
            return  # nothing to check against
        retired: _RetiredEntry | _StrongRetired
        if isinstance(entry, _StrongEntry):
            retired = _StrongRetired(obj)
        else:
            retired = _RetiredEntry(obj, self._forget_retired)
        retired.key = id(obj)
        retired.pid = entry.key
        retired.version = entry.version
        self._retired[id(obj)] = retired

    def retired_version(self, obj: Any, id_: Any) -> int | None:
        """The version ``obj`` was read or written at as ``id_`` before it left the
        map, or ``None`` if this map never had it under that id."""
        entry = self._retired.get(id(obj))
        if entry is None or entry() is not obj or entry.pid != id_:
            return None
        return entry.version

    def begin(self) -> None:
        """Start journaling changes for a possible rollback."""
        self.journal = []

    def end(self, rollback: bool) -> None:
        """Stop journaling; with ``rollback`` undo every change since :meth:`begin`."""
        journal, self.journal = self.journal, None
        if rollback and journal:
            for id_, obj, version in reversed(journal):
                if obj is _MISSING:
                    self._entries.pop(id_, None)
                else:
                    self.put(id_, obj, version, journal=False, retire=False)
                if self._watchers:
                    self._touch(id_)

    # ------------------------------------------------------------ queries under way

    def watch(self) -> int:
        """A query starts reading a snapshot: from now on, remember which ids
        this map's store writes, removes or evicts. Returns the generation to
        pass to :meth:`changed_since`; call :meth:`unwatch` when the query ends."""
        self._watchers += 1
        return self._generation

    def unwatch(self) -> None:
        """A query started with :meth:`watch` ended."""
        self._watchers -= 1
        if not self._watchers:
            self._changed.clear()
            self._cleared_at = -1

    def changed_since(self, id_: Any, generation: int) -> bool:
        """Whether ``id_`` was written, removed or evicted (or the whole map
        cleared) after :meth:`watch` returned ``generation``: a snapshot row
        read since is older than what this store knows, and must not be mapped."""
        return self._cleared_at > generation or self._changed.get(id_, -1) > generation

    def _touch(self, id_: Any) -> None:
        self._generation += 1
        self._changed[id_] = self._generation

    def __len__(self) -> int:
        """How many ids map to a live object."""
        return sum(1 for entry in list(self._entries.values()) if entry() is not None)
