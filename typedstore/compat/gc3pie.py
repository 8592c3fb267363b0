"""GC3Pie 2.6.8 on typedstore: ``gc3libs.persistence`` served by typedstore.

Call :func:`install` before anything imports ``gc3libs``::

    import typedstore.compat.gc3pie
    typedstore.compat.gc3pie.install()

    import gc3libs                      # its persistence package is typedstore's
    from gc3libs.session import Session

:func:`install` puts a finder at the front of :data:`sys.meta_path`. It answers
for ``gc3libs.persistence`` and its submodules (``store``, ``filesystem``,
``sql``, ``idfactory``, ``serialization``, ``accessors``) with modules that hold
typedstore's public classes and functions under GC3Pie's names; every other
GC3Pie module is imported from GC3Pie's own files as usual. The import system
binds the served modules as attributes of the ``gc3libs`` package, as it would
GC3Pie's. So ``gc3libs.Task`` is a :class:`typedstore.Persistable`, and
``Session``, ``Engine`` and GC3Pie's scripts save and load through
:func:`typedstore.make_store` stores. No other GC3Pie module imports
SQLAlchemy, so GC3Pie then runs beside SQLAlchemy 2.

When the served package is imported (``gc3libs`` imports it right after
``gc3libs.exceptions``), typedstore's :class:`~typedstore.LoadError` gets
GC3Pie's ``gc3libs.exceptions.LoadError`` as an additional base class: GC3Pie
code that catches ``gc3libs.exceptions.LoadError`` (``gclean``) or
``gc3libs.exceptions.Error`` catches typedstore's load errors, including
:class:`~typedstore.NotFoundError` and :class:`~typedstore.UnsafeLoadError`.

GC3Pie names without a typedstore counterpart (``make_pickler``,
``make_unpickler``, ``_registered_store_ctors``, ...) are absent; reading one
raises ``AttributeError`` that says so.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import threading
import types
from collections.abc import Callable, Sequence
from typing import Any

import typedstore

__all__ = [
    "EXPORTS",
    "ORIGIN",
    "PACKAGE",
    "SUBMODULES",
    "AlreadyImportedError",
    "install",
    "installed",
    "served_names",
]

#: The GC3Pie package this module serves.
PACKAGE = "gc3libs.persistence"

#: Its submodules, each served too.
SUBMODULES = ("store", "filesystem", "sql", "idfactory", "serialization", "accessors")

#: What each served module holds (by its name relative to :data:`PACKAGE`;
#: ``""`` is the package): GC3Pie's public names, every one taken from
#: typedstore's public API.
EXPORTS: dict[str, tuple[str, ...]] = {
    "": ("make_store", "Persistable", "IdFactory", "JobIdFactory", "FilesystemStore",
         "Store", "register"),
    "store": ("Store", "register", "make_store"),
    "filesystem": ("FilesystemStore", "make_filesystemstore", "IdFactory", "Store",
                   "DEFAULT_PROTOCOL"),
    "sql": ("SqlStore", "make_sqlstore", "IntId", "IdFactory", "Store"),
    "idfactory": ("Id", "IdFactory", "JobIdFactory"),
    "serialization": ("Persistable", "DEFAULT_PROTOCOL"),
    "accessors": ("GET", "GetValue", "GetAttributeValue", "GetItemValue", "GetOnly",
                  "GetAttribute", "GetItem"),
}

#: Shown as the served modules' origin (``repr(gc3libs.persistence)``).
ORIGIN = "typedstore.compat.gc3pie"

#: GC3Pie's ``__all__`` of the package (the rest of its names are importable too).
_PACKAGE_ALL = ("make_store", "Persistable", "IdFactory", "JobIdFactory", "FilesystemStore")


class AlreadyImportedError(RuntimeError):
    """:func:`install` was called after GC3Pie's own ``gc3libs.persistence`` was imported.

    Attributes:
        modules (tuple[str, ...]): the GC3Pie persistence modules already imported.
    """

    def __init__(self, message: str, modules: Sequence[str]) -> None:
        super().__init__(message)
        self.modules = tuple(modules)


def served_names() -> tuple[str, ...]:
    """Full names of every module the finder serves, the package first."""
    return (PACKAGE, *(f"{PACKAGE}.{name}" for name in SUBMODULES))


class _PersistenceFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds and loads the served modules; declines every other name."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == PACKAGE:
            return importlib.machinery.ModuleSpec(fullname, self, origin=ORIGIN, is_package=True)
        parent, _, child = fullname.rpartition(".")
        if parent == PACKAGE and child in SUBMODULES:
            return importlib.machinery.ModuleSpec(fullname, self, origin=ORIGIN)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None  # the default module object

    def exec_module(self, module: types.ModuleType) -> None:
        relative = module.__name__[len(PACKAGE):].lstrip(".")
        names = EXPORTS[relative]
        for name in names:
            setattr(module, name, getattr(typedstore, name))
        module.__doc__ = (
            f"GC3Pie's {module.__name__}, served by typedstore ({ORIGIN}); "
            f"it holds {', '.join(names)}."
        )
        setattr(module, "__all__", list(_PACKAGE_ALL if not relative else names))  # noqa: B010
        setattr(module, "__getattr__", _missing_name(module.__name__, names))  # noqa: B010
        if not relative:
            _bridge_load_error()
            # As GC3Pie's package, which imports its submodules from __init__.py;
            # ours are cheap (names bound to typedstore objects), so all are loaded.
            for child in SUBMODULES:
                importlib.import_module(f"{PACKAGE}.{child}")


def _missing_name(module_name: str, names: Sequence[str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` explaining that a GC3Pie name is not served."""

    def __getattr__(name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        raise AttributeError(
            f"module {module_name!r} has no attribute {name!r}: this module is served by "
            f"typedstore ({ORIGIN}) and holds {', '.join(names)}; GC3Pie's other "
            f"persistence internals are not provided"
        )

    return __getattr__


def _bridge_load_error() -> None:
    """Make typedstore's LoadError (and so its subclasses) a GC3Pie LoadError too."""
    try:
        exceptions = importlib.import_module("gc3libs.exceptions")
    except ImportError:
        return
    theirs = getattr(exceptions, "LoadError", None)
    ours = typedstore.LoadError
    if not isinstance(theirs, type) or not issubclass(theirs, Exception):
        return
    if issubclass(ours, theirs):
        return
    ours.__bases__ = (*ours.__bases__, theirs)


_finder = _PersistenceFinder()
_lock = threading.Lock()


def installed() -> bool:
    """True when :func:`install` is in effect in this interpreter."""
    return _finder in sys.meta_path


def install() -> None:
    """Serve ``gc3libs.persistence`` from typedstore from now on in this interpreter.

    Call it before anything imports ``gc3libs``. Calling it again does nothing.

    Raises:
        AlreadyImportedError: GC3Pie's own ``gc3libs.persistence`` (or one of
            its submodules) is already imported: the process already holds
            GC3Pie's classes, and would mix them with typedstore's.
    """
    with _lock:
        foreign = []
        for name in served_names():
            module = sys.modules.get(name)
            if module is not None and getattr(module.__spec__, "loader", None) is not _finder:
                where = getattr(module, "__file__", None) or "unknown location"
                foreign.append(f"{name} ({where})")
        if foreign:
            raise AlreadyImportedError(
                "typedstore.compat.gc3pie.install() must run before gc3libs is imported, "
                f"but GC3Pie's own persistence modules are already loaded: {', '.join(foreign)}. "
                "Call install() first thing in the program (before 'import gc3libs' and "
                "before importing anything that imports gc3libs).",
                [entry.split(" ", 1)[0] for entry in foreign],
            )
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
