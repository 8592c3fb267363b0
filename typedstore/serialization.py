"""Pickling with external references, and the loading side with class mapping.

This module knows nothing of SQL or files. A store hands :func:`dumps` a
callback that turns a referenced :class:`Persistable` into its id (saving it
first, when needed) and hands :func:`loads` a callback that turns an id back
into an object (through the store's identity map). The pickle then holds the
id as a *persistent id* (pickle's ``BINPERSID``), the same encoding GC3Pie
uses, so one copy of a shared object is stored and shared references, cycles
included, are restored on load.

Speed: a pickler with a ``persistent_id`` hook pays a Python call for *every*
object it writes (each float, each string). Most job objects reference no
other Persistable, so :func:`dumps` first pickles with ``reducer_override``,
which CPython calls only for non-builtin objects, and only if that pass meets
a reference does it pickle again with the ``persistent_id`` hook. Both passes
give the same bytes a plain pickle would when there are no references.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import logging
import pickle
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, SupportsIndex

from .allowlist import AllowFn, AllowList, split_name
from .defaults import DEFAULT_PROTOCOL
from .errors import ConflictError, LoadError, UnsafeLoadError
from .guarded import GuardedUnpickler
from .ids import GC3PIE_PAYLOAD_PROTOCOL, gc3pie_payload
from .ids import _pickling as _id_pickling

__all__ = [
    "DEFAULT_PROTOCOL",
    "MissingClass",
    "Persistable",
    "dumps",
    "is_external",
    "loads",
    "register_class_alias",
    "register_upgrade",
]

log = logging.getLogger(__name__)


class _CreationWatch(threading.local):
    """Per thread: one slot per load in progress, for the first Persistable it creates."""

    def __init__(self) -> None:
        self.slots: list[list[Any]] = []


_watch = _CreationWatch()


class Persistable:
    """Mix-in marking objects that are stored as records of their own.

    When an object holding a reference to a Persistable is saved, the
    Persistable is saved as its own record (if it has no id yet, or its
    ``changed`` flag is true) and the container's pickle holds only its id.
    Loading the container loads the Persistable through the store, so every
    holder of it gets the same object.

    Attributes:
        persistent_id: the id under which the object is stored; set by the
            store on save. Do not set it yourself.
        changed (bool): true when the object differs from its stored copy.
            Assigning any public attribute sets it; the store clears it after a
            save. Set it yourself after changing a nested value in place
            (``job.args.append(...)``) so that saving a container rewrites it.

    Two Persistables are equal when they have the same ``persistent_id``; ones
    without an id are equal only to themselves. Hashing is by identity, so an
    object keeps its hash when it gets an id.
    """

    changed = True
    #: Stores stamp the version they read or wrote on the object (see VERSION_STAMP).
    _typedstore_stampable = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Cooperative, as GC3Pie's: gc3libs.Task passes its keywords up through
        # Persistable.__init__; ``persistent_id=`` is taken here, the rest goes on.
        if "persistent_id" in kwargs:
            object.__setattr__(self, "persistent_id", kwargs.pop("persistent_id"))
        object.__setattr__(self, "changed", True)
        super().__init__(*args, **kwargs)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__reduce_ex__" in cls.__dict__:
            # Its own __reduce_ex__ hides it from the fast probe in dumps().
            _use_general_probe(f"{cls.__qualname__} defines __reduce_ex__")

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        # dumps()'s fast probe: a Persistable other than the record's root
        # means the record holds references.
        root = _probe.root
        if root is not _NOT_PROBING and root is not self:
            raise _FoundReference
        reduced = object.__reduce_ex__(self, protocol)
        if _storing.active and VERSION_STAMP in self.__dict__:
            reduced = _without_stamp(reduced)
        return reduced

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        obj = super().__new__(cls)
        slots = _watch.slots
        if slots and not slots[-1]:
            # The first Persistable created while a record is unpickled is that
            # record's root: remember it so a cycle back to it can be closed.
            slots[-1].append(obj)
        return obj

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if not name.startswith("_") and name not in ("changed", "persistent_id"):
            object.__setattr__(self, "changed", True)

    def __eq__(self, other: object) -> bool:
        mine = getattr(self, "persistent_id", None)
        if mine is None:
            return self is other
        return bool(mine == getattr(other, "persistent_id", None))

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = object.__hash__

    def __str__(self) -> str:
        pid = getattr(self, "persistent_id", None)
        return str(pid) if pid is not None else object.__repr__(self)


#: Key of ``Persistable.__dict__`` where a store stamps ``(store, version)``: the
#: version it last read or wrote the object at, so that a copy of the object
#: (``copy.deepcopy``, a pickle round trip) or another store object on the
#: same location still saves with the version check, never blindly. Copied by
#: ``copy`` and plain pickling, left out of records.
VERSION_STAMP = "_typedstore_version"


def _without_stamp(reduced: Any) -> Any:
    """``__reduce_ex__``'s answer with the version stamp left out of the state."""
    if not isinstance(reduced, tuple) or len(reduced) < 3:
        return reduced
    state = reduced[2]
    if isinstance(state, dict) and VERSION_STAMP in state:
        state = {k: v for k, v in state.items() if k != VERSION_STAMP}
    elif (isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict)
          and VERSION_STAMP in state[0]):
        state = ({k: v for k, v in state[0].items() if k != VERSION_STAMP}, state[1])
    else:
        return reduced
    return (*reduced[:2], state, *reduced[3:])


class _Storing(threading.local):
    """Per thread: true while a store pickles a record (dumps)."""

    active = False


_storing = _Storing()


def note_stored(obj: Any) -> None:
    """Called by stores for each object they give a ``persistent_id`` (save or load).

    An object that is not a Persistable but has an id is a reference target
    too, which only the general probe of :func:`dumps` recognizes.
    """
    if _fast_probe and not isinstance(obj, Persistable) and hasattr(obj, "persistent_id"):
        _use_general_probe(f"{type(obj).__qualname__} objects have persistent ids")


def _use_general_probe(reason: str) -> None:
    global _fast_probe
    if _fast_probe:
        log.debug("pickling probes every object from now on: %s", reason)
    _fast_probe = False


def is_external(obj: Any) -> bool:
    """True if ``obj`` is stored as a record of its own when referenced."""
    return isinstance(obj, Persistable) or (
        not isinstance(obj, type) and hasattr(obj, "persistent_id")
    )


# ---------------------------------------------------------------- pickling


class _FoundReference(Exception):
    """Raised by the probe pass when the object graph references a Persistable."""


_NOT_PROBING = object()


class _ProbeState(threading.local):
    """Per thread: the root of the record the fast probe is pickling, if any."""

    root: Any = _NOT_PROBING


_probe = _ProbeState()

#: True while every possible reference target is a Persistable that does not
#: override ``__reduce_ex__``: then the probe pass is a plain C pickling in
#: which Persistable.__reduce_ex__ spots references (no Python call per object).
_fast_probe = True


class _ProbePickler(pickle.Pickler):
    """Pickles normally, but stops at the first external reference."""

    root: Any = None

    def reducer_override(self, obj: Any) -> Any:
        if obj is not self.root and is_external(obj):
            raise _FoundReference
        return NotImplemented


class _ReferencePickler(pickle.Pickler):
    """Pickles external references as persistent ids obtained from a callback."""

    root: Any = None
    on_reference: Callable[[Any], Any]

    def persistent_id(self, obj: Any) -> Any:
        if obj is self.root or not is_external(obj):
            return None
        return self.on_reference(obj)


def dumps(
    obj: Any, on_reference: Callable[[Any], Any], protocol: int = DEFAULT_PROTOCOL,
    gc3pie: bool = False,
) -> bytes:
    """Pickle ``obj``; every other Persistable it reaches becomes ``on_reference(it)``.

    ``on_reference`` must return the referenced object's id (saving it first
    if needed). With ``gc3pie``, ids in the payload (persistent ids included)
    name GC3Pie 2.6.8's ``Id``/``IntId`` classes, so GC3Pie reads the record
    with ids of its own types; the protocol is then at most
    :data:`~typedstore.ids.GC3PIE_PAYLOAD_PROTOCOL` (see
    :func:`typedstore.ids.gc3pie_ids`). Raises whatever pickling raises
    (``pickle.PicklingError``, ``TypeError``, ``AttributeError``) for objects
    that cannot be pickled.
    """
    storing = _storing
    was, storing.active = storing.active, True
    try:
        if not gc3pie:
            return _dumps(obj, on_reference, protocol)
        ids = _id_pickling
        previous, ids.gc3pie = ids.gc3pie, True
        try:
            data = _dumps(obj, on_reference, min(protocol, GC3PIE_PAYLOAD_PROTOCOL))
        finally:
            ids.gc3pie = previous
        return gc3pie_payload(data)
    finally:
        storing.active = was


def _dumps(obj: Any, on_reference: Callable[[Any], Any], protocol: int) -> bytes:
    if _fast_probe:
        previous, _probe.root = _probe.root, obj
        try:
            return pickle.dumps(obj, protocol)
        except _FoundReference:
            pass
        finally:
            _probe.root = previous
    else:
        buffer = io.BytesIO()
        probe = _ProbePickler(buffer, protocol)
        probe.root = obj
        try:
            probe.dump(obj)
            return buffer.getvalue()
        except _FoundReference:
            pass
    buffer = io.BytesIO()
    pickler = _ReferencePickler(buffer, protocol)
    pickler.root = obj
    pickler.on_reference = on_reference
    pickler.dump(obj)
    return buffer.getvalue()


# ---------------------------------------------------------------- loading

#: Classes pickled under another name: ``(module, name) -> (module, name)``.
#: Pre-filled with GC3Pie's classes so its stores load without gc3libs.
_CLASS_ALIASES: dict[tuple[str, str], tuple[str, str]] = {
    ("gc3libs.persistence.idfactory", "Id"): ("typedstore.ids", "Id"),
    ("gc3libs.persistence.sql", "IntId"): ("typedstore.ids", "IntId"),
    ("gc3libs.persistence.serialization", "Persistable"): (
        "typedstore.serialization",
        "Persistable",
    ),
    ("gc3libs.persistence", "Persistable"): ("typedstore.serialization", "Persistable"),
    ("gc3libs.persistence", "Id"): ("typedstore.ids", "Id"),
}


_split = split_name


def register_class_alias(old: str, new: str | type) -> None:
    """Load records that name class ``old`` (``"pkg.module.Class"``) as ``new``.

    Use it after renaming or moving a class: old records keep loading. ``new``
    is a class or its dotted name.
    """
    global _ALIAS_MODULES
    target = (new.__module__, new.__qualname__) if isinstance(new, type) else _split(new)
    _CLASS_ALIASES[_split(old)] = target
    _ALIAS_MODULES = _searched_modules(_CLASS_ALIASES)


def allow_list(names: Iterable[str | type]) -> AllowList:
    """An :class:`~typedstore.allowlist.AllowList` of ``names`` (classes,
    ``module.Class`` names, ``package.*`` wildcards) that also admits the
    targets of the registered class aliases."""
    allow = AllowList(names)
    for module, name in _CLASS_ALIASES.values():
        allow.add(module, name)
    return allow


def make_allow(allowed_classes: Iterable[str | type] | AllowFn | None) -> AllowFn | None:
    """The allow function of a store's ``allowed_classes`` argument: ``None``
    (no allow-list), a function taking ``(module, name)`` (a global is admitted
    only when it returns ``True`` itself), an
    :class:`~typedstore.allowlist.AllowList` (copied, with the class aliases'
    targets added) or a list of classes and names (:func:`allow_list`).

    Raises TypeError for one string (a list of names is meant).
    """
    if isinstance(allowed_classes, (str, bytes)):
        raise TypeError(f"allowed_classes is a list of names or classes, not the "
                        f"string {allowed_classes!r}")
    if isinstance(allowed_classes, type):
        # One class (callable, but not an allow function): a list of one.
        return allow_list([allowed_classes])
    if not (allowed_classes is None or callable(allowed_classes)
            or isinstance(allowed_classes, Iterable)):
        raise TypeError(f"allowed_classes is a list of classes and names, an AllowList or "
                        f"a function (module, name) -> bool, not {allowed_classes!r}")
    if isinstance(allowed_classes, AllowList):
        allow = allow_list([])
        allow.exact |= allowed_classes.exact
        allow.packages |= allowed_classes.packages
        return allow
    if allowed_classes is None or callable(allowed_classes):
        return allowed_classes
    return allow_list(allowed_classes)


class MissingClass:
    """Stands in for an object whose class can no longer be imported.

    A store opened with ``missing_classes="placeholder"`` loads such records as
    instances of a subclass of this one named like the missing class, so the
    rest of the store stays usable and the record can be inspected or removed.

    Attributes:
        missing_class (str): ``module.Class`` of the class that is gone.
        args (tuple): the arguments pickle would have called the class with.
        state: the pickled state (usually the instance ``__dict__``).
    """

    missing_class = ""
    # Class-level defaults: pickle protocols >= 2 build instances without __init__.
    args: tuple[Any, ...] = ()
    state: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    def __reduce__(self) -> Any:
        raise pickle.PicklingError(
            f"cannot save a placeholder for missing class {self.missing_class}; "
            "restore the class or remove the record"
        )

    def __repr__(self) -> str:
        return f"<placeholder for missing class {self.missing_class}>"


_placeholders: dict[tuple[str, str], type[MissingClass]] = {}


def _placeholder(module: str, name: str) -> type[MissingClass]:
    key = (module, name)
    cls = _placeholders.get(key)
    if cls is None:
        cls = type(name, (MissingClass,), {"missing_class": f"{module}.{name}",
                                           "__module__": "typedstore.serialization"})
        _placeholders[key] = cls
    return cls


#: Per-class upgrade hooks: ``class -> [hook(obj) -> obj | None]``.
_UPGRADES: dict[type, list[Callable[[Any], Any]]] = {}


def register_upgrade(cls: type, hook: Callable[[Any], Any]) -> None:
    """Call ``hook(obj)`` on every loaded record whose object is a ``cls`` (or subclass).

    Use it to bring old objects to the current form (add a new attribute with
    a default, convert a field). A hook may modify ``obj`` in place and return
    ``None``, or return a replacement object. Hooks run in registration order.
    """
    _UPGRADES.setdefault(cls, []).append(hook)


def apply_upgrades(obj: Any) -> Any:
    """Run the registered upgrade hooks for ``obj``'s class and its bases."""
    if not _UPGRADES:
        return obj
    for klass in type(obj).__mro__:
        for hook in _UPGRADES.get(klass, ()):
            result = hook(obj)
            if result is not None:
                obj = result
    return obj


if TYPE_CHECKING:
    _UnpicklerBase = pickle.Unpickler
else:
    _UnpicklerBase = object


class _RecordMapping(_UnpicklerBase):
    """Resolves persistent ids through the store (registering its frame on first
    use) and maps class names: aliases, allow-list, placeholders for missing classes."""

    resolve: Callable[[Any], Any]
    record_id: Any = None
    frame: _LoadFrame
    frame_key: tuple[int, Any] | None = None
    allow: AllowFn | None = None
    placeholders = False

    def persistent_load(self, pid: Any) -> Any:
        if self.frame_key is None:
            # Only a record with references can be part of a cycle: make it
            # findable by in_progress() before resolving its first reference.
            self.frame_key = (id(self.frame.owner), self.record_id)
            _frames[self.frame_key] = self.frame
        return self.resolve(pid)

    def find_class(self, module: str, name: str) -> Any:
        module, name = _CLASS_ALIASES.get((module, name), (module, name))
        allow = self.allow
        if allow is not None:
            verdict = allow(module, name)
            if verdict is not True:
                # Only True admits: a policy function answering "no", or None,
                # must not admit everything by being truthy or forgetful.
                explain = getattr(allow, "refusal", None)
                why = (explain(module, name) if explain is not None and verdict is False
                       else "is not allowed by this store's allow-list" if verdict is False
                       else f"is refused: the allow function answered {verdict!r}, not True")
                raise self._refused(module, name, why)
        try:
            found = super().find_class(module, name)
        except (ImportError, AttributeError):
            if not self.placeholders:
                raise
            log.warning("record %s: class %s.%s is gone; loading a placeholder",
                        self.record_id, module, name)
            return _placeholder(module, name)
        admits = getattr(allow, "admits", None)
        if admits is not None and not admits(module, name, found):
            raise self._refused(module, name, "is not a class defined in that module (a "
                                "function, a module, or a class imported from elsewhere): "
                                "the allow-list admits it only by its exact name")
        return found

    def _refused(self, module: str, name: str, why: str) -> UnsafeLoadError:
        return UnsafeLoadError(f"record {self.record_id}: global {module}.{name} {why}; "
                               "nothing of the record was loaded", self.record_id,
                               f"{module}.{name}")


class _RecordUnpickler(_RecordMapping, pickle.Unpickler):
    """The C unpickler, mapping classes and resolving references (no allow-list)."""


class _GuardedUnpickler(_RecordMapping, GuardedUnpickler):
    """The guarded Python unpickler (:mod:`typedstore.guarded`), mapping classes
    and resolving references: loads under an allow-list. The allow-list
    (``_RecordMapping.find_class``) decides before the guard notes a global."""

    def persistent_load(self, pid: Any) -> Any:
        return self.outsider(super().persistent_load(pid))


class _LoadFrame:
    """Bookkeeping of one record being unpickled, for closing reference cycles."""

    __slots__ = ("handed_out", "owner", "slot")

    def __init__(self, owner: object) -> None:
        self.owner = owner
        self.slot: list[Any] = []
        self.handed_out = False


#: Records being unpickled that have references: ``(id(store), id) -> frame``.
#: Stores serialize their loads with their own lock, so plain dict operations
#: (atomic under the GIL) are enough here.
_frames: dict[tuple[int, Any], _LoadFrame] = {}


def _needs_mapping(data: bytes) -> bool:
    """Whether ``data`` may name an aliased class that plain unpickling would get wrong.

    That is a class whose module can be imported (a renamed class, or GC3Pie's
    when gc3libs is installed): a byte search per such module. An alias whose
    package is not installed needs no search: plain unpickling fails on it and
    :func:`loads` tries again with the aliases.
    """
    for module in _ALIAS_MODULES:  # noqa: SIM110 (no generator per load: hot path)
        if module in data:
            return True
    return False


def _searched_modules(aliases: Mapping[tuple[str, str], Any]) -> tuple[bytes, ...]:
    """Importable module names of aliased classes, as bytes, for :func:`_needs_mapping`.

    A pickle names a class's module in full, so a module is looked for only if
    no shorter one it starts with is (longer needles are found faster).
    Whether a package is installed is looked up without importing it.
    """
    names = sorted({module.encode() for module, _ in aliases
                    if _installed(module.split(".")[0])}, key=len)
    kept: list[bytes] = []
    for name in names:
        if not any(name.startswith(shorter) for shorter in kept):
            kept.append(name)
    return tuple(kept)


@functools.cache
def _installed(package: str) -> bool:
    """Whether the top-level ``package`` can be imported (found on ``sys.path``)."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError) as exc:
        log.debug("looking for package %r failed: %s", package, exc)
        return True  # unknown: keep searching payloads for it


_ALIAS_MODULES = _searched_modules(_CLASS_ALIASES)


#: A root slot that is already taken: Persistables created under it are not roots.
_CLOSED_SLOT: list[Any] = [None]


def _load_error(record_id: Any, exc: Exception) -> LoadError:
    """The LoadError naming the record for whatever unpickling raised."""
    return LoadError(
        f"record {record_id}: cannot unpickle payload: {type(exc).__name__}: {exc}",
        record_id,
    )


@contextmanager
def _naming_errors(record_id: Any) -> Iterator[None]:
    """Turn whatever unpickling raises into a LoadError naming the record."""
    try:
        yield
    except (LoadError, RecursionError, ConflictError):
        # A ConflictError: a reference to a record another writer removed meanwhile.
        raise
    except Exception as exc:  # pickle raises many types; name the record in one
        raise _load_error(record_id, exc) from exc


def loads(
    data: bytes,
    resolve: Callable[[Any], Any],
    record_id: Any = None,
    allow: AllowFn | None = None,
    owner: object = None,
    placeholders: bool = False,
    aliased: bool = False,
) -> Any:
    """Unpickle ``data``; each persistent id ``pid`` in it becomes ``resolve(pid)``.

    ``record_id`` and ``owner`` (the store) identify the record so that a
    reference cycle leading back to it (A -> B -> A) resolves to the object
    being built; :func:`in_progress` answers that question for ``resolve``.
    Raises :class:`LoadError` (naming ``record_id``) if the payload is not a
    valid pickle or names a class that cannot be imported (unless
    ``placeholders``: then a :class:`MissingClass` stands in), and
    :class:`UnsafeLoadError` if ``allow`` refuses a class.

    Speed: a record without references and without classes to map loads with
    the C loader straight from bytes. The resolving, class-mapping unpickler
    (a Python call per class named) reads the rest: records with references,
    an allow-list, placeholders, a payload naming an aliased class. With
    ``aliased`` (a GC3Pie-compatible store, whose payloads name GC3Pie's id
    classes) the mapping unpickler reads it at once, rather than after a
    failed C load.
    """
    mapped = aliased or allow is not None or placeholders or _needs_mapping(data)
    slots = _watch.slots
    if not mapped:
        # Fast path: the C loader straight from bytes. A record holding
        # references stops it at the first persistent id; then it is read again
        # with the resolving unpickler below (objects made so far are dropped).
        # Nested in another record's load, a closed slot keeps this record's
        # objects from being taken for that record's root.
        nested = bool(slots)
        if nested:
            slots.append(_CLOSED_SLOT)
        try:
            return pickle.loads(data)
        except pickle.UnpicklingError as exc:
            if "persistent" not in str(exc):
                raise _load_error(record_id, exc) from exc
        except (ImportError, AttributeError) as exc:
            # A class that cannot be found may be one under an alias whose
            # package is not installed (GC3Pie's, usually): mapped below.
            log.debug("record %s: %s; loading it again with class aliases", record_id, exc)
        except (LoadError, RecursionError):
            raise
        except Exception as exc:  # pickle raises many types; name the record in one
            raise _load_error(record_id, exc) from exc
        finally:
            if nested:
                slots.pop()
    # The resolving unpickler maps classes too (aliases of packages that are
    # not installed are not searched for in the payload).
    unpickler: _RecordMapping = (_RecordUnpickler if allow is None
                                 else _GuardedUnpickler)(io.BytesIO(data))
    unpickler.allow = allow
    unpickler.placeholders = placeholders
    unpickler.resolve = resolve
    unpickler.record_id = record_id
    frame = unpickler.frame = _LoadFrame(owner)
    slots.append(frame.slot)
    try:
        with _naming_errors(record_id):
            result = unpickler.load()
    finally:
        slots.pop()
        if unpickler.frame_key is not None:
            _frames.pop(unpickler.frame_key, None)
    if frame.handed_out and (not frame.slot or frame.slot[0] is not result):
        raise LoadError(
            f"record {record_id}: a reference cycle leads back to it, but its root is not "
            "a Persistable created by unpickling, so the cycle cannot be restored",
            record_id,
        )
    return result


def in_progress(owner: object, record_id: Any) -> tuple[bool, Any]:
    """If ``record_id`` of ``owner`` is being unpickled, return ``(True, its root)``.

    The root is the object under construction (its state may be incomplete);
    returns ``(True, None)`` if the root has not been created yet and
    ``(False, None)`` if the record is not being loaded.
    """
    frame = _frames.get((id(owner), record_id))
    if frame is None:
        return False, None
    if frame.slot:
        frame.handed_out = True
        return True, frame.slot[0]
    return True, None
