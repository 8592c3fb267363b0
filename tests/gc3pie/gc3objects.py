"""Object classes stored by GC3Pie and by typedstore in the GC3Pie interoperability tests.

This module is imported under the same name (``gc3objects``) on both sides, so the
pickles either side writes name the same classes:

* in GC3Pie's venv (``gc3side.py``), where gc3libs is installed and typedstore is
  not, the classes derive from ``gc3libs.persistence.Persistable``;
* in typedstore's test environment, where gc3libs is not installed, they derive
  from ``typedstore.Persistable``.

It also holds what both sides must agree on: the object graphs the tests store,
the GC3Pie ``extra_fields`` columns (built from either side's accessors), and
:func:`describe`, which turns loaded objects into JSON-able data, value by value,
so that what one side wrote can be compared with what the other side read.

Keep it importable on Python 3 without anything but the standard library and one
of the two ``Persistable`` classes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

try:
    from gc3libs.persistence import Persistable

    SIDE = "gc3pie"
except ImportError:
    from typedstore import Persistable

    SIDE = "typedstore"


# ---------------------------------------------------------------- the classes


class Run:
    """A plain object (not a Persistable) in ``AppLike.execution``, as GC3Pie's ``Run``."""

    def __init__(self, state: str = "NEW", returncode: int | None = None) -> None:
        self.state = state
        self.returncode = returncode


class Child(Persistable):
    """A small Persistable held by containers (sometimes by several)."""

    def __init__(self, name: str, value: int) -> None:
        Persistable.__init__(self)
        self.name = name
        self.value = value


class Container(Persistable):
    """A Persistable holding a list of other Persistables (children, jobs, containers)."""

    def __init__(self, name: str, children: Iterable[Any] = ()) -> None:
        Persistable.__init__(self)
        self.name = name
        self.children = list(children)


#: Text with Latin-1, BMP and non-BMP characters (and a NUL), kept exactly by both sides.
UNICODE_TEXT = "Zürich naïve café \u2013 \u03a9\u2248 \U0001d11e \U0001f600 \u00a0\x00end"
#: Floats whose exact value matters (compared by ``float.hex``).
FLOATS = [0.1 + 0.2, -0.0, 1e-310, float("inf"), 1.0 / 3.0]


class AppLike(Persistable):
    """Stands for a GC3Pie ``Application``: a job name, cores and ``execution.state``."""

    def __init__(self, jobname: str, cores: int, state: str, returncode: int | None = None,
                 arguments: Iterable[str] = (), blob: bytes | None = None) -> None:
        Persistable.__init__(self)
        self.jobname = jobname
        self.cores = cores
        self.execution = Run(state, returncode)
        self.arguments = list(arguments)
        self.progress = cores / 7.0
        self.floats = list(FLOATS)
        self.label = f"{UNICODE_TEXT} {jobname}"
        self.blob = blob if blob is not None else bytes(range(256)) + jobname.encode()
        self.params = {
            "a": cores * 10,
            "nested": [1, 2.5, None, True, ("t", 1)],
            3: "int key",
            ("k", 1): {"set": {1, 2, 3}, "frozen": frozenset({"x"})},
        }


def make_app(jobname: str, cores: int, state: str, returncode: int | None = None,
             blob: bytes | None = None) -> AppLike:
    return AppLike(jobname, cores, state, returncode,
                   arguments=["--name", jobname, f"--cores={cores}", UNICODE_TEXT], blob=blob)


#: The jobs GC3Pie writes first: ``(jobname, cores, state, returncode)``.
INITIAL_APPS = [
    ("app0", 1, "NEW", None),
    ("app1", 2, "SUBMITTED", None),
    ("app2", 4, "RUNNING", None),
    ("app3", 8, "RUNNING", None),
    ("app4", 3, "TERMINATING", None),
    ("app5", 5, "TERMINATED", 0),
    ("app6", 6, "TERMINATED", 1),
    ("app7", 2, "STOPPED", None),
]


def initial_graph() -> tuple[list[AppLike], list[Container]]:
    """The objects the first writer saves: jobs, then containers (in save order).

    ``alpha`` and ``beta`` share the child ``shared``; ``twice`` holds one child
    twice; ``jobs`` holds two of the jobs; ``outer`` holds a container.
    """
    apps = [make_app(*spec) for spec in INITIAL_APPS]
    shared = Child("shared", 42)
    once = Child("once", 1)
    containers = [
        Container("alpha", [Child("alpha-0", 0), shared, Child("alpha-2", 2)]),
        Container("beta", [shared, Child("beta-1", 11)]),
        Container("empty", []),
        Container("twice", [once, once]),
        Container("jobs", [apps[0], apps[2]]),
        Container("outer", [Container("inner", [Child("deep", 7)])]),
    ]
    return apps, containers


def new_batch(tag: str, count: int) -> list[Persistable]:
    """``count`` new, self-contained top-level objects named after ``tag`` (mixed writers)."""
    batch: list[Persistable] = []
    for k in range(count):
        name = f"{tag}-{k}"
        if k % 2 == 0:
            batch.append(Container(name, [Child(f"{name}-a", k), Child(f"{name}-b", -k)]))
        else:
            batch.append(make_app(name, k, "RUNNING" if k % 4 == 1 else "NEW"))
    return batch


# ------------------------------------------------------ GC3Pie extra_fields


def extra_fields(sa: Any, accessors: Any, app_class: type = AppLike,
                 container_class: type = Container) -> dict[Any, Any]:
    """GC3Pie ``extra_fields`` (``{Column: extractor}``) built from either side's modules.

    ``sa`` is ``sqlalchemy``; ``accessors`` a namespace with GC3Pie's accessor
    names (``gc3libs.persistence.accessors`` or ``typedstore``). Columns:

    * ``jobname`` -- ``GetAttributeValue('jobname')`` (raises on containers: NULL);
    * ``cores`` -- ``GET.cores``;
    * ``returncode`` -- ``GET.execution.returncode`` (NULL where it is None);
    * ``param_a`` -- ``GET.params['a']`` (a ``GetItemValue`` after attributes);
    * ``app_cores`` -- ``GetValue(default=-1).cores.ONLY(AppLike)``: the cores of a
      job, ``-1`` for any other object (GC3Pie tests the class of the object);
    * ``container_name`` -- ``GetOnly(Container, xform=GetAttributeValue('name'))``:
      a container's name, NULL for anything else.
    """
    get = accessors.GET
    return {
        sa.Column("jobname", sa.String(128)): accessors.GetAttributeValue("jobname"),
        sa.Column("cores", sa.Integer()): get.cores,
        sa.Column("returncode", sa.Integer()): get.execution.returncode,
        sa.Column("param_a", sa.Integer()): get.params["a"],
        sa.Column("app_cores", sa.Integer()): accessors.GetValue(default=-1).cores.ONLY(app_class),
        sa.Column("container_name", sa.String(64)): accessors.GetOnly(
            container_class, xform=accessors.GetAttributeValue("name")),
    }


EXTRA_COLUMNS = ["jobname", "cores", "returncode", "param_a", "app_cores", "container_name"]


# ---------------------------------------------------------------- describe


#: Attributes describe() leaves out: the store's bookkeeping, which differs by
#: design (GC3Pie pickles ``changed=True`` and clears it in memory afterwards;
#: typedstore stamps the version it read on the object in memory, never in
#: the record: typedstore.serialization.VERSION_STAMP).
BOOKKEEPING = frozenset({"changed", "persistent_id", "_typedstore_version"})
#: Longer byte strings are described by length and digest.
SHORT_BYTES = 64


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class Describer:
    """Describes objects value by value and watches the identity of Persistables.

    Every Persistable met (loaded directly or reached through another one) is
    remembered by its ``persistent_id``: two different Python objects under one
    id are reported in ``duplicates``, and a Persistable held by more than one
    record is reported in ``shared`` with its holders' ids.
    """

    def __init__(self) -> None:
        self._objects: dict[str, list[Any]] = {}
        self._holders: dict[str, set[str]] = {}

    def record(self, obj: Any) -> dict[str, Any]:
        """The description of one stored object (a Persistable)."""
        self._note(obj)
        return self._record(obj, (id(obj),))

    def result(self, records: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
        return {
            "records": dict(records),
            "duplicates": {pid: len(objs) for pid, objs in sorted(self._objects.items())
                           if len(objs) > 1},
            "shared": {pid: sorted(holders) for pid, holders in sorted(self._holders.items())
                       if len(holders) > 1},
        }

    def _note(self, obj: Any) -> None:
        pid = _pid(obj)
        seen = self._objects.setdefault(pid, [])
        if not any(other is obj for other in seen):
            seen.append(obj)

    def _record(self, obj: Any, stack: tuple[int, ...]) -> dict[str, Any]:
        pid = getattr(obj, "persistent_id", None)
        try:
            state = vars(obj)
        except TypeError:
            state = {}
        return {
            "class": _name(type(obj)),
            "id": None if pid is None else str(pid),
            "id_type": type(pid).__name__,
            "attrs": {name: self._value(value, obj, stack)
                      for name, value in sorted(state.items()) if name not in BOOKKEEPING},
        }

    def _value(self, value: Any, holder: Any, stack: tuple[int, ...]) -> Any:
        if isinstance(value, Persistable):
            self._note(value)
            self._holders.setdefault(_pid(value), set()).add(_pid(holder))
            if id(value) in stack:
                return ["ref-cycle", _pid(value)]
            return ["ref", self._record(value, (*stack, id(value)))]
        kind = type(value)
        if value is None or kind is bool:
            return value
        if kind is int:
            return ["int", value]
        if kind is float:
            return ["float", value.hex()]
        if kind is str:
            return ["str", value]
        if kind is bytes:
            if len(value) <= SHORT_BYTES:
                return ["bytes", value.hex()]
            return ["bytes", len(value), hashlib.sha256(value).hexdigest()]
        if kind in (list, tuple):
            return [kind.__name__, [self._value(v, holder, stack) for v in value]]
        if kind is dict:
            return ["dict", [[self._value(k, holder, stack), self._value(v, holder, stack)]
                             for k, v in value.items()]]
        if kind in (set, frozenset):
            items = [self._value(v, holder, stack) for v in value]
            return [kind.__name__, sorted(items, key=repr)]
        if isinstance(value, (str, int, float, bytes)):
            # A subclass (an id, an enum): its class name and plain value.
            return ["subclass", kind.__name__, self._value(_plain(value), holder, stack)]
        if hasattr(value, "__dict__"):
            return ["object", _name(kind),
                    {k: self._value(v, holder, stack) for k, v in sorted(vars(value).items())}]
        return ["repr", _name(kind), repr(value)]


def _plain(value: Any) -> Any:
    for base in (bool, int, float, str, bytes):
        if isinstance(value, base):
            return base(value)
    return value


def _pid(obj: Any) -> str:
    pid = getattr(obj, "persistent_id", None)
    return f"<no persistent_id: {_name(type(obj))} at {id(obj):#x}>" if pid is None else str(pid)


def describe(obj: Any) -> dict[str, Any]:
    """One object, value by value, as JSON-able data (see :func:`describe_all`)."""
    return Describer().record(obj)


def describe_all(objects: Iterable[Any]) -> dict[str, Any]:
    """Describe stored objects together, keyed by ``str(persistent_id)``.

    Returns ``{"records": {id: description}, "duplicates": {id: n},
    "shared": {id: [holder ids]}}``. A description is ``{"class", "id",
    "id_type", "attrs"}``; attribute values are tagged (``["int", 3]``,
    ``["float", hex]``, ``["str", s]``, ``["bytes", ...]``, ``["list", [...]]``,
    ``["dict", [[k, v], ...]]``, ``["object", class, attrs]``) and a referenced
    Persistable is ``["ref", description]``, its content included.
    ``duplicates`` lists ids under which more than one Python object was met
    (the stores must give one object per id), ``shared`` the Persistables held
    by more than one record.
    """
    describer = Describer()
    records = {}
    for obj in objects:
        records[_pid(obj)] = describer.record(obj)
    return describer.result(records)


def all_persistables(roots: Iterable[Any]) -> list[Any]:
    """The Persistables reachable from ``roots`` (through lists, tuples, dicts and
    attributes), each once, in a stable order: what saving ``roots`` stores."""
    found: list[Any] = []
    seen: set[int] = set()

    def walk(value: Any) -> None:
        if isinstance(value, (list, tuple, set, frozenset)):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(key)
                walk(item)
        elif isinstance(value, Persistable) or hasattr(value, "__dict__"):
            if id(value) in seen:
                return
            seen.add(id(value))
            if isinstance(value, Persistable):
                found.append(value)
            for item in vars(value).values():
                walk(item)

    for root in roots:
        walk(root)
    return found


def write_result(path: str, result: Mapping[str, Any]) -> None:
    """Write a side's JSON result to ``path`` whole (temporary file, then rename),
    so the test never reads a half-written one."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as stream:
        json.dump(result, stream, ensure_ascii=True, indent=1, sort_keys=True)
    os.replace(tmp, path)
