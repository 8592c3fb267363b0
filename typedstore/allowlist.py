"""The allow-list of globals a record may name: exact classes, never a path to code.

Unpickling calls what a payload names: a planted record that names
``os.system`` (or reaches it as ``mypkg.os.system``, an attribute path under an
allowed module, or through a module that imports ``os``) runs a command on
load. An :class:`AllowList` admits a global ``(module, qualname)`` only if it is

* one of :data:`SAFE_GLOBALS`, a small vetted set of builtins and standard
  library value types whose construction runs no code chosen by the payload
  (docs/security.md says why each is safe), or
* a class the program listed exactly (the class object, ``"pkg.mod.Class"``, or
  ``"pkg.mod:Outer.Inner"`` for a nested class), or
* under a listed package (``"pkg.*"``: ``pkg`` and its submodules): a name
  that resolves to a *class defined there* (its ``__module__`` and
  ``__qualname__`` are the ones the payload gave), so a function, a module, or
  a class re-exported from elsewhere (``from os import ...``) is refused. A
  dotted name (a nested class, GC3Pie's ``Run.State``) is followed only
  through classes defined in that module, read from their ``__dict__`` (no
  attribute hooks run): never through a module or a function's attributes.
  A wildcard imports nothing but the package itself: a submodule must be
  imported already (by the program, as it is when the program made the
  objects), since importing a module runs its code (``pkg.__main__``, a
  script); a record naming another one is refused.

A refused global raises :class:`~typedstore.errors.UnsafeLoadError` naming the
record and the global, when the unpickler meets it: before anything of the
payload that needs it can run.

:func:`allowed_classes` derives a list from the program's own classes (its
Persistable job classes, row models, and the packages they live in), so that
turning the allow-list on is one line::

    store = make_store(url, allowed_classes=allowed_classes(MyJob, "gc3libs.*"))
"""

from __future__ import annotations

import builtins
import importlib
import sys
from collections.abc import Callable, Iterable
from typing import Any

#: Decides whether a record may name a global: ``(module, name) -> bool``.
AllowFn = Callable[[str, str], bool]

_DATA_BUILTINS = ("int", "float", "complex", "str", "bytes", "bytearray", "list", "tuple",
                  "dict", "set", "frozenset", "slice", "object", "bool")
# Not range: a 40-byte payload could feed deque(range(10**13), 0) to the reader
# (hours of CPU in one C call). List it exactly if your records hold ranges.

#: Globals every allow-list admits: ``(module, qualname)``. Each is a value
#: type whose construction from pickled arguments runs no code the payload
#: chooses (the callables ``copyreg`` uses construct only classes that are
#: themselves checked), or the exception classes of the builtins (GC3Pie
#: records keep exceptions). docs/security.md gives the reason for each.
SAFE_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {("builtins", name) for name in _DATA_BUILTINS}
    | {("builtins", name) for name, value in vars(builtins).items()
       if isinstance(value, type) and issubclass(value, BaseException)}
    | {
        # Protocol 0-2 reconstruction: each calls a class the unpickler
        # resolved (and checked) before.
        ("copyreg", "_reconstructor"), ("copyreg", "__newobj__"), ("copyreg", "__newobj_ex__"),
        # Protocol 0-2 bytes: _codecs.encode(text, "latin1").
        ("_codecs", "encode"),
        ("collections", "OrderedDict"), ("collections", "defaultdict"),
        ("collections", "deque"), ("collections", "Counter"),
        ("datetime", "date"), ("datetime", "datetime"), ("datetime", "time"),
        ("datetime", "timedelta"), ("datetime", "timezone"),
        ("decimal", "Decimal"), ("fractions", "Fraction"), ("uuid", "UUID"),
        ("pathlib", "PurePosixPath"), ("pathlib", "PureWindowsPath"),
        ("pathlib", "PosixPath"),
        # typedstore's own record types.
        ("typedstore.ids", "Id"), ("typedstore.ids", "IntId"),
        ("typedstore.serialization", "Persistable"),
    }
)


class AllowList:
    """An allow-list of globals (see the module's docstring); an :data:`AllowFn`.

    Args:
        entries: classes, ``"module.Class"`` / ``"module:Qual.Name"`` strings,
            and ``"package.*"`` wildcards.

    Raises ValueError for an entry that is none of these, TypeError for an
    object that is not a class.
    """

    def __init__(self, entries: Iterable[str | type]) -> None:
        self.exact: set[tuple[str, str]] = set(SAFE_GLOBALS)
        self.packages: set[str] = set()
        for entry in entries:
            if isinstance(entry, type):
                self.exact.add((entry.__module__, entry.__qualname__))
            elif not isinstance(entry, str):
                raise TypeError(f"an allow-list entry is a class or a string, not {entry!r}")
            elif entry.endswith(".*"):
                package = entry[:-2]
                if not package or not all(part.isidentifier() for part in package.split(".")):
                    raise ValueError(f"allow-list entry {entry!r}: expected 'package.*'")
                self.packages.add(package)
            else:
                module, name = split_name(entry)
                _check_class_entry(entry, module, name)
                self.exact.add((module, name))

    def add(self, module: str, qualname: str) -> None:
        """Admit one more global exactly (class aliases add their targets)."""
        self.exact.add((module, qualname))

    def _package(self, module: str) -> bool:
        while True:
            if module in self.packages:
                return True
            module, dot, _ = module.rpartition(".")
            if not dot:
                return False

    def __call__(self, module: str, name: str) -> bool:
        """Whether ``module``/``name`` may be resolved at all (checked again,
        once resolved, by :meth:`admits`)."""
        return self.refusal(module, name) is None

    def refusal(self, module: str, name: str) -> str | None:
        """Why ``module``/``name`` may not be resolved (``None``: it may)."""
        if (module, name) in self.exact:
            return None
        if not self._package(module):
            return "is not allowed by this store's allow-list"
        if module not in sys.modules and module not in self.packages:
            return (f"is in a package the allow-list admits, but module {module} is not "
                    "imported, and a wildcard imports no module (that would run its "
                    "code): import it in the program, or list the class exactly")
        if "." in name and not _nested_classes(module, name):
            return "is not a class nested in classes of that module"
        return None

    def admits(self, module: str, name: str, obj: Any) -> bool:
        """Whether the resolved ``obj`` is what the entry that let it through
        allows: a class (or one of the vetted helpers of :data:`SAFE_GLOBALS`)
        for an exact entry; for a package, a class defined in ``module`` under
        the name ``name``."""
        if (module, name) in SAFE_GLOBALS:
            return True
        if not isinstance(obj, type):
            return False
        return (module, name) in self.exact or (obj.__module__ == module
                                                and obj.__qualname__ == name)

    def __repr__(self) -> str:
        listed = sorted(f"{m}.{n}" for m, n in self.exact - SAFE_GLOBALS)
        return f"AllowList({listed + sorted(p + '.*' for p in self.packages)!r})"


def _check_class_entry(entry: str, module: str, name: str) -> None:
    """Refuse (ValueError) an exact entry that names something other than a
    class, when its module is imported already (none is imported here)."""
    owner: Any = sys.modules.get(module)
    if owner is None:
        return
    for part in name.split("."):
        owner = vars(owner).get(part) if hasattr(owner, "__dict__") else None
        if owner is None:
            return  # not there (yet): a missing class gives a placeholder or an error
    if not isinstance(owner, type):
        raise ValueError(f"allow-list entry {entry!r} names a {type(owner).__name__}, not a "
                         "class: an allow-list admits classes only")


def _nested_classes(module: str, name: str) -> bool:
    """Whether every step of the dotted ``name`` but the last is a class
    defined in ``module``, read from ``__dict__`` (no ``__getattr__`` runs)."""
    try:
        owner: Any = importlib.import_module(module)
    except ImportError:
        return False
    for part in name.split(".")[:-1]:
        owner = vars(owner).get(part)
        if not isinstance(owner, type) or owner.__module__ != module:
            return False
    return True


def split_name(dotted: str) -> tuple[str, str]:
    """``"pkg.mod.Class"`` -> ``("pkg.mod", "Class")``; ``"pkg.mod:Outer.Inner"``
    -> ``("pkg.mod", "Outer.Inner")``. Raises ValueError for another form."""
    module, sep, name = dotted.rpartition(":") if ":" in dotted else dotted.rpartition(".")
    if not sep or not module or not name:
        raise ValueError(f"expected 'module.ClassName' or 'module:ClassName', got {dotted!r}")
    return module, name


def allowed_classes(*entries: str | type, subclasses: bool = True) -> AllowList:
    """An allow-list from a program's own classes: each class given, and with
    ``subclasses`` every subclass of it imported so far (give the program's
    job base class or :class:`~typedstore.Persistable` to admit all of its
    job classes), plus ``"module.Class"`` names and ``"package.*"`` wildcards
    (for the packages whose classes the jobs hold, e.g. ``"gc3libs.*"``).

    A row model given is admitted with nothing else: records never name row
    models, but listing them is harmless.
    """
    found: list[str | type] = []
    for entry in entries:
        found.append(entry)
        if subclasses and isinstance(entry, type):
            todo: list[type] = list(entry.__subclasses__())
            while todo:
                cls = todo.pop()
                found.append(cls)
                todo.extend(cls.__subclasses__())
    return AllowList(found)
