"""The identity map: one object per id per store, plus the version each was read at.

Objects are held weakly when they allow it, so streaming a large query does not
keep every loaded object alive; objects that cannot be weakly referenced
(plain ``dict``/``list`` records) are held strongly until ``clear()`` or
``discard()``. A transaction records what it changed in a journal so a
rollback can put the map back exactly as it was.
"""

from __future__ import annotations

import weakref
from typing import Any

_MISSING = object()


class IdentityMap:
    """Maps ids to loaded or saved objects and their stored versions.

    Attributes:
        journal (list | None): while a transaction is open, the previous
            entries of every id it touched, in order; ``None`` otherwise.
    """

    def __init__(self) -> None:
        self._weak: weakref.WeakValueDictionary[Any, Any] = weakref.WeakValueDictionary()
        self._strong: dict[Any, Any] = {}
        self._versions: dict[Any, int | None] = {}
        self._prune_at = 1024
        self.journal: list[tuple[Any, Any, int | None]] | None = None

    def get(self, id_: Any) -> Any:
        """Return the object mapped to ``id_``, or ``None``."""
        obj = self._weak.get(id_)
        if obj is None:
            obj = self._strong.get(id_)
        return obj

    def version(self, id_: Any) -> int | None:
        """The stored version the mapped object was read or written at (None: unknown)."""
        if self.get(id_) is None:
            return None
        return self._versions.get(id_)

    def _remember(self, id_: Any) -> None:
        if self.journal is not None:
            obj = self.get(id_)
            self.journal.append((id_, _MISSING if obj is None else obj, self._versions.get(id_)))

    def _set(self, id_: Any, obj: Any, version: int | None) -> None:
        try:
            self._weak[id_] = obj
            self._strong.pop(id_, None)
        except TypeError:  # not weakly referenceable
            self._weak.pop(id_, None)
            self._strong[id_] = obj
        versions = self._versions
        versions[id_] = version
        if len(versions) > self._prune_at:
            # Versions of objects that were garbage collected: drop them so a
            # long stream of loads keeps this map small.
            live = set(self._weak.keys()) | set(self._strong)
            self._versions = {k: v for k, v in versions.items() if k in live}
            self._prune_at = 2 * len(self._versions) + 1024

    def _unset(self, id_: Any) -> None:
        self._weak.pop(id_, None)
        self._strong.pop(id_, None)
        self._versions.pop(id_, None)

    def put(self, id_: Any, obj: Any, version: int | None, journal: bool = True) -> None:
        """Map ``id_`` to ``obj`` stored at ``version``.

        ``journal=False`` for objects loaded from committed data: a rollback
        must not forget them (the caller still holds them, at that version).
        """
        if journal:
            self._remember(id_)
        self._set(id_, obj, version)

    def discard(self, id_: Any) -> None:
        """Forget ``id_`` (after a remove)."""
        self._remember(id_)
        self._unset(id_)

    def clear(self) -> None:
        """Forget everything (``invalidate_cache``)."""
        self._weak.clear()
        self._strong.clear()
        self._versions.clear()
        self._prune_at = 1024

    def begin(self) -> None:
        """Start journaling changes for a possible rollback."""
        self.journal = []

    def end(self, rollback: bool) -> None:
        """Stop journaling; with ``rollback`` undo every change since :meth:`begin`."""
        journal, self.journal = self.journal, None
        if rollback and journal:
            for id_, obj, version in reversed(journal):
                if obj is _MISSING:
                    self._unset(id_)
                else:
                    self._set(id_, obj, version)

    def __len__(self) -> int:
        return len(self._weak) + len(self._strong)
