"""A readable view of a record's pickle that runs none of its code.

Unpickling calls what a payload names, so a record planted by someone else can
run a command when it is loaded. :func:`read_payload` reads a payload with
pickle's own opcode reader but never imports a module or calls anything the
payload names: every global it names becomes a :class:`Named` value (module and
name, nothing imported), a call or a class instantiation becomes a
:class:`Made` value holding what it would have been called with, ``BUILD``
keeps the state it would have set, and a reference to another record becomes a
:class:`Reference`. Only plain data (numbers, text, bytes, lists, tuples,
dicts, sets) is made for real, and a few helpers pickle uses for plain data are
understood by name (``_codecs.encode`` of Latin-1 text: ``bytes``;
``copyreg.__newobj__`` and ``copyreg._reconstructor``: a new instance).

The result, :class:`PayloadView`, describes the object as JSON-able data
(:func:`describe`, with ``$``-tagged objects for what JSON has no form for) and
as indented text lines (:func:`render`), bounded in depth and length so that a
hostile payload cannot flood a terminal. Nothing here depends on the store:
``typedstore show`` (:func:`typedstore.inspection.show_record`) uses it.
"""

from __future__ import annotations

import _compat_pickle
import copyreg
import datetime as dt
import io
import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

__all__ = ["Made", "Named", "PayloadView", "Reference", "describe", "persistent_ids",
           "read_payload", "render"]

#: How deep :func:`describe` follows nested values; deeper ones are cut.
MAX_DEPTH = 16
#: Items shown per container (list, dict, state...); the rest are counted.
MAX_ITEMS = 100
#: Values described per payload in all; the rest are cut.
MAX_VALUES = 5000
#: Characters of text, and bytes of binary data, shown per value.
MAX_TEXT = 500
#: Bits of the largest integer shown as a number (4300 digits: Python's limit).
MAX_INT_BITS = 14000
#: Characters of a value written on one line by :func:`render`.
INLINE_WIDTH = 90


@dataclass(eq=False)
class Named:
    """A global the payload names (a class or a function), never imported."""

    module: str
    name: str

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(eq=False)
class Reference:
    """A reference to another record (a pickle persistent id)."""

    target: Any


@dataclass(eq=False)
class Made:
    """What the payload would make by calling something, left uncalled.

    Attributes:
        how: ``"new"`` (an instance of a class: ``NEWOBJ``, ``OBJ``, ``INST``,
            copyreg's helpers) or ``"call"`` (``REDUCE``: a call of whatever
            the payload named, a class or not).
        target: what would be called (usually a :class:`Named`).
        args, kwargs: what it would be called with.
        states: what each ``BUILD`` would set on it (usually its ``__dict__``).
        items: what ``APPEND(S)``/``ADDITEMS`` would add to it.
        entries: the ``(key, value)`` pairs ``SETITEM(S)`` would set on it.
    """

    how: str
    target: Any
    args: tuple[Any, ...] = ()
    kwargs: dict[Any, Any] | None = None
    states: list[Any] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)
    entries: list[tuple[Any, Any]] = field(default_factory=list)


@dataclass(eq=False)
class Known:
    """A standard library value read from its pickled arguments by this module's
    own code (a date from its bytes...), never by calling what the payload names.

    Attributes:
        kind: ``datetime``, ``date``, ``time``, ``timedelta``, ``timezone`` or
            ``decimal``.
        value: the value made here (a ``datetime.date``..., or the text of a
            ``Decimal``).
        tzinfo: a time zone the payload gives that is not a plain UTC offset
            (left as the viewer read it).
    """

    kind: str
    value: Any
    tzinfo: Any = None


@dataclass
class PayloadView:
    """What :func:`read_payload` made of a payload.

    Attributes:
        size (int): bytes of the payload.
        protocol (int): its pickle protocol (0 for protocols 0 and 1, which do
            not say).
        value: the object, described by :func:`describe` (JSON-able; ``None``
            when nothing could be read).
        names (list[str]): every global the payload names, ``module.name``, in
            order of first appearance: the classes (and anything else) loading
            it would import.
        references (list[str]): ids of the other records it references.
        notes (list[str]): operations a loader would refuse or that would
            change something outside the record (a ``BUILD`` on a global...).
        error (str | None): why the payload could not be read to its end
            (the view then holds what was read before, if anything).
    """

    size: int
    protocol: int
    value: Any
    names: list[str]
    references: list[str]
    notes: list[str]
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The view as JSON-able data (the shape ``typedstore show --json`` prints)."""
        return {"size": self.size, "protocol": self.protocol, "value": self.value,
                "names": self.names, "references": self.references, "notes": self.notes,
                "error": self.error}


_NAMED_HELPERS = {
    ("copyreg", "_reconstructor"), ("copyreg", "__newobj__"), ("copyreg", "__newobj_ex__"),
    ("_codecs", "encode"),
}
_LATIN1 = frozenset({"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1", "l1"})
#: Builtin containers a REDUCE may rebuild from plain data (protocol 0-2 sets...).
_CONTAINERS: dict[str, Callable[[Any], Any]] = {
    "set": set, "frozenset": frozenset, "list": list, "tuple": tuple,
}


class _Viewer(pickle._Unpickler):
    """pickle's Python unpickler with every opcode that imports, calls or
    changes an object replaced by one that records what it would do."""

    dispatch: ClassVar[dict[int, Callable[[Any], None]]] = dict(pickle._Unpickler.dispatch)
    if TYPE_CHECKING:  # pickle._Unpickler's own, which typeshed does not describe
        stack: list[Any]
        append: Callable[[Any], None]
        proto: int
        fix_imports: bool

        def pop_mark(self) -> list[Any]: ...

    def __init__(self, payload: bytes) -> None:
        super().__init__(io.BytesIO(payload), encoding="latin1")
        self.names: list[str] = []
        self.references: list[Any] = []
        self.notes: list[str] = []

    # ------------------------------------------------------------ globals and references

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3 and self.fix_imports:
            # Python 2 names, as pickle maps them: a table lookup, no import.
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        dotted = f"{module}.{name}"
        if dotted not in self.names:
            self.names.append(dotted)
        return Named(module, name)

    def get_extension(self, code: int) -> None:
        # pickle's caches the object it finds for every later unpickler: not ours.
        key = copyreg._inverted_registry.get(code)  # type: ignore[attr-defined]
        if not key:
            raise pickle.UnpicklingError(f"unregistered extension code {code}")
        self.append(self.find_class(*key))

    def persistent_load(self, pid: Any) -> Any:
        reference = Reference(pid)
        self.references.append(pid)
        return reference

    # ------------------------------------------------------------ calls

    def _call(self, target: Any, args: Any) -> Any:
        if not isinstance(args, tuple):
            self.notes.append(f"a call with arguments that are not a tuple ({_kind(args)})")
            args = (args,)
        if isinstance(target, Named):
            key = (target.module, target.name)
            if key in _NAMED_HELPERS:
                return self._helper(key, target, args)
            if target.module in ("datetime", "decimal"):
                known = _known(target.name, args)
                if known is not None:
                    return known
            if target.module == "builtins" and target.name in _CONTAINERS and \
                    len(args) == 1 and type(args[0]) in (list, tuple):
                try:
                    return _CONTAINERS[target.name](args[0])
                except TypeError:  # an unhashable member of a set: shown as the call
                    pass
        else:
            self.notes.append(f"a call of {_kind(target)}, which is not a global the "
                              "payload names")
        return Made("call", target, args)

    def _helper(self, key: tuple[str, str], target: Named, args: tuple[Any, ...]) -> Any:
        if key == ("_codecs", "encode") and len(args) == 2 and isinstance(args[0], str) \
                and isinstance(args[1], str) and args[1].lower() in _LATIN1:
            return args[0].encode("latin-1")
        if key == ("copyreg", "__newobj__") and args:
            return Made("new", args[0], args[1:])
        if key == ("copyreg", "__newobj_ex__") and len(args) == 3 and \
                isinstance(args[1], tuple) and isinstance(args[2], dict):
            return Made("new", args[0], args[1], args[2])
        if key == ("copyreg", "_reconstructor") and len(args) == 3:
            base = args[1]
            plain = isinstance(base, Named) and base.dotted == "builtins.object"
            return Made("new", args[0], () if plain or args[2] is None else (args[2],))
        return Made("call", target, args)

    def load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(Made("new", cls, tuple(args) if isinstance(args, tuple) else (args,)))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(Made("new", cls, tuple(args) if isinstance(args, tuple) else (args,),
                         kwargs if isinstance(kwargs, dict) else {"**": kwargs}))

    def _instantiate(self, klass: Any, args: list[Any]) -> None:
        self.append(Made("new", klass, tuple(args)))

    # ------------------------------------------------------------ changes

    def _odd(self, opcode: str, target: Any) -> None:
        self.notes.append(f"{opcode} on {_kind(target)} (a loader would change an object "
                          "the record did not make; typedstore refuses it)")

    def load_build(self) -> None:
        state = self.stack.pop()
        target = self.stack[-1]
        if isinstance(target, Made):
            target.states.append(state)
        else:
            self._odd("BUILD", target)

    def _add(self, opcode: str, values: list[Any]) -> None:
        target = self.stack[-1]
        if type(target) is list:
            target.extend(values)
        elif type(target) is set and opcode == "ADDITEMS":
            target.update(values)
        elif isinstance(target, Made):
            target.items.extend(values)
        else:
            self._odd(opcode, target)

    def load_append(self) -> None:
        value = self.stack.pop()
        self._add("APPEND", [value])

    def load_appends(self) -> None:
        self._add("APPENDS", self.pop_mark())

    def load_additems(self) -> None:
        self._add("ADDITEMS", self.pop_mark())

    def _set(self, opcode: str, pairs: list[tuple[Any, Any]]) -> None:
        target = self.stack[-1]
        if type(target) is dict:
            for key, value in pairs:
                target[key] = value
        elif isinstance(target, Made):
            target.entries.extend(pairs)
        else:
            self._odd(opcode, target)

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._set("SETITEM", [(key, value)])

    def load_setitems(self) -> None:
        items = self.pop_mark()
        self._set("SETITEMS", list(zip(items[::2], items[1::2], strict=False)))

    for _opcode, _method in ((pickle.REDUCE, load_reduce), (pickle.NEWOBJ, load_newobj),
                             (pickle.NEWOBJ_EX, load_newobj_ex), (pickle.BUILD, load_build),
                             (pickle.APPEND, load_append), (pickle.APPENDS, load_appends),
                             (pickle.ADDITEMS, load_additems), (pickle.SETITEM, load_setitem),
                             (pickle.SETITEMS, load_setitems)):
        dispatch[_opcode[0]] = _method
    del _opcode, _method


def _known(name: str, args: tuple[Any, ...]) -> Known | None:
    """The value ``datetime.<name>(*args)`` or ``decimal.Decimal(*args)`` would
    make, decoded here from pickle's argument layout; ``None`` if the arguments
    are not that layout (the call is then shown as it is)."""
    try:
        if name == "Decimal" and len(args) == 1 and isinstance(args[0], str):
            return Known("decimal", args[0][:MAX_TEXT])
        if name == "timedelta" and len(args) == 3 and all(type(a) is int for a in args):
            return Known("timedelta", dt.timedelta(*args))
        if name == "timezone" and args and isinstance(args[0], Known) and \
                args[0].kind == "timedelta" and (len(args) == 1 or isinstance(args[1], str)):
            return Known("timezone", dt.timezone(args[0].value, *args[1:]))
        if not (args and isinstance(args[0], bytes)) or len(args) > 2:
            return None
        data, zone = args[0], (args[1] if len(args) == 2 else None)
        tzinfo = zone.value if isinstance(zone, Known) and zone.kind == "timezone" else None
        other = zone if zone is not None and tzinfo is None else None
        if name == "date" and len(data) == 4 and zone is None:
            return Known("date", dt.date(data[0] * 256 + data[1], data[2], data[3]))
        if name == "datetime" and len(data) == 10:
            made = dt.datetime(data[0] * 256 + data[1], data[2] & 0x7F, data[3], data[4],
                               data[5], data[6], int.from_bytes(data[7:], "big"),
                               tzinfo=tzinfo, fold=data[2] >> 7)
            return Known("datetime", made, other)
        if name == "time" and len(data) == 6:
            made_time = dt.time(data[0] & 0x7F, data[1], data[2], int.from_bytes(data[3:], "big"),
                                tzinfo=tzinfo, fold=data[0] >> 7)
            return Known("time", made_time, other)
    except (ValueError, OverflowError, TypeError):
        pass
    return None


def read_payload(payload: bytes) -> PayloadView:
    """Read ``payload`` (a pickle) without importing or calling anything it names.

    Returns a :class:`PayloadView`; never raises for a damaged or hostile
    payload (its :attr:`~PayloadView.error` says what stopped the reading).
    """
    viewer = _Viewer(payload)
    value: Any = None
    error: str | None = None
    try:
        value = describe(viewer.load())
    except Exception as exc:  # any malformed pickle: say so, show what was found
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return PayloadView(len(payload), viewer.proto, value, viewer.names,
                       [_reference_id(r) for r in viewer.references], viewer.notes, error)


def persistent_ids(payload: bytes) -> list[Any]:
    """The persistent ids in ``payload``, in order, as read: ``str``/``int``, or
    the :class:`Made` of an id class; nothing the payload names is imported or
    called. Raises whatever stops the reading of a damaged payload
    (``pickle.UnpicklingError``, ``EOFError``, ...)."""
    viewer = _Viewer(payload)
    viewer.load()
    return viewer.references


def _reference_id(pid: Any) -> str:
    """The id a persistent id names: itself, or what an id class is made from,
    ``(prefix, number)`` joined by a dot as ids are written (typedstore's and
    GC3Pie's ``Id('job', 5)``: ``job.5``; ``IntId(None, 5)``: ``5``)."""
    if isinstance(pid, Made) and pid.args and all(
            a is None or (isinstance(a, (str, int)) and not isinstance(a, bool))
            for a in pid.args):
        pid = ".".join(str(a) for a in pid.args if a is not None)
    if isinstance(pid, (str, int)) and not isinstance(pid, bool):
        return str(pid)
    return repr(describe(pid))


def _kind(value: Any) -> str:
    if isinstance(value, Named):
        return f"the global {_safe_name(value.dotted)}"
    if isinstance(value, Reference):
        return f"the record {_reference_id(value.target)}"
    if isinstance(value, Made):
        return f"an object made by {_kind(value.target)}"
    return f"a {type(value).__name__}"


# ---------------------------------------------------------------- description


class _Budget:
    def __init__(self) -> None:
        self.left = MAX_VALUES
        self.path: set[int] = set()


def describe(value: Any) -> Any:
    """``value`` (from the viewer) as JSON-able data.

    Plain values stay themselves (a non-finite float becomes ``{"$float":
    "nan"}``); lists stay lists; a dict whose keys are all text not starting
    with ``$`` stays a dict. Tagged objects stand for the rest:
    ``{"$tuple": [...]}``, ``{"$set": [...]}``, ``{"$frozenset": [...]}``,
    ``{"$dict": [[key, value], ...]}``, ``{"$bytes": "b'...'"}`` (Python's
    literal), ``{"$datetime": "2024-05-01T12:00:00+00:00"}`` (also ``$date``,
    ``$time``, ``$timedelta``, ``$timezone``, ``$decimal``; ``"$tzinfo"`` beside
    a time zone that is not a plain offset), ``{"$global": "module.name"}``,
    ``{"$ref": "id"}``, and an object made by a call: ``{"$new": "module.Class"}`` or ``{"$call":
    "module.function"}`` with ``"$args"``, ``"$kwargs"``, ``"$state"``,
    ``"$items"``, ``"$entries"`` where it has them. Cut values:
    ``{"$cycle": "..."}`` (an object inside itself), ``{"$cut": "..."}``
    (too deep, or over :data:`MAX_VALUES`), and ``{"$more": n}`` as the last
    item of a container with ``n`` items more than :data:`MAX_ITEMS`.
    """
    return _describe(value, _Budget(), 0)


def _describe(value: Any, budget: _Budget, depth: int) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        # Python will not write an integer of more than 4300 digits as text.
        return value if value.bit_length() <= MAX_INT_BITS else \
            {"$cut": f"an integer of {value.bit_length()} bits"}
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else \
            value[:MAX_TEXT] + f"... ({len(value)} characters)"
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        literal = repr(data[:MAX_TEXT])
        return {"$bytes": literal if len(data) <= MAX_TEXT
                else f"{literal}... ({len(data)} bytes)"}
    if isinstance(value, Named):
        return {"$global": value.dotted}
    if isinstance(value, Reference):
        return {"$ref": _reference_id(value.target)}
    if isinstance(value, Known):
        text = value.value if isinstance(value.value, str) else \
            value.value.isoformat() if hasattr(value.value, "isoformat") else str(value.value)
        known: dict[str, Any] = {f"${value.kind}": text}
        if value.tzinfo is not None:
            known["$tzinfo"] = _describe(value.tzinfo, budget, depth + 1)
        return known
    budget.left -= 1
    if depth >= MAX_DEPTH or budget.left < 0:
        return {"$cut": "too deep" if depth >= MAX_DEPTH else "too many values"}
    if id(value) in budget.path:
        return {"$cycle": f"{_kind(value)}, inside itself"}
    budget.path.add(id(value))
    try:
        return _describe_container(value, budget, depth + 1)
    finally:
        budget.path.discard(id(value))


def _items(values: Any, budget: _Budget, depth: int) -> list[Any]:
    values = list(values)
    shown = [_describe(v, budget, depth) for v in values[:MAX_ITEMS]]
    if len(values) > MAX_ITEMS:
        shown.append({"$more": len(values) - MAX_ITEMS})
    return shown


def _pairs(pairs: list[tuple[Any, Any]], budget: _Budget, depth: int) -> list[Any]:
    shown: list[Any] = [[_describe(k, budget, depth), _describe(v, budget, depth)]
                        for k, v in pairs[:MAX_ITEMS]]
    if len(pairs) > MAX_ITEMS:
        shown.append({"$more": len(pairs) - MAX_ITEMS})
    return shown


def _mapping(mapping: dict[Any, Any], budget: _Budget, depth: int) -> Any:
    pairs = list(mapping.items())
    if all(isinstance(k, str) and not k.startswith("$") for k, _ in pairs):
        shown = {k: _describe(v, budget, depth) for k, v in pairs[:MAX_ITEMS]}
        if len(pairs) > MAX_ITEMS:
            shown["$more"] = len(pairs) - MAX_ITEMS
        return shown
    return {"$dict": _pairs(pairs, budget, depth)}


def _describe_container(value: Any, budget: _Budget, depth: int) -> Any:
    if type(value) is list:
        return _items(value, budget, depth)
    if type(value) is tuple:
        return {"$tuple": _items(value, budget, depth)}
    if type(value) in (set, frozenset):
        return {f"${type(value).__name__}": _items(value, budget, depth)}
    if type(value) is dict:
        return _mapping(value, budget, depth)
    if isinstance(value, Made):
        target = value.target
        shown: dict[str, Any] = {
            f"${value.how}": target.dotted if isinstance(target, Named)
            else _describe(target, budget, depth)}
        if value.args:
            shown["$args"] = _items(value.args, budget, depth)
        if value.kwargs:
            shown["$kwargs"] = _mapping(value.kwargs, budget, depth)
        if value.states:
            states = value.states
            shown["$state"] = _describe(states[0] if len(states) == 1 else list(states),
                                        budget, depth)
        if value.items:
            shown["$items"] = _items(value.items, budget, depth)
        if value.entries:
            shown["$entries"] = _pairs(value.entries, budget, depth)
        return shown
    return {"$cut": f"a {type(value).__name__}"}  # nothing else is made; kept safe


# ---------------------------------------------------------------- text


def render(value: Any) -> list[str]:
    """Indented text lines for a described value (:func:`describe`): one line
    per attribute or item, nested objects indented under their class; text is
    shown as Python literals, so no control character reaches a terminal."""
    lines: list[str] = []
    _render_into(lines, "", value, 0)
    return lines


def _safe_name(dotted: str) -> str:
    return dotted if all(part.isidentifier() for part in dotted.split(".")) else repr(dotted)


def _label(key: Any) -> str:
    if isinstance(key, str):
        return key if key.isidentifier() else repr(key)
    return f"[{_inline(key) or '...'}]"


_KNOWN_TAGS = frozenset({"$datetime", "$date", "$time", "$timedelta", "$timezone",
                         "$decimal"})


def _tagged(value: Any) -> str | None:
    if isinstance(value, dict) and value:
        first = next(iter(value))
        if isinstance(first, str) and first.startswith("$"):
            return first
    return None


def _inline(value: Any) -> str | None:
    """``value`` on one line, if it is short and simple enough."""
    text = _inline_text(value)
    return text if text is not None and len(text) <= INLINE_WIDTH else None


def _inline_join(values: list[Any]) -> str | None:
    parts = [_inline_text(v) for v in values]
    if any(p is None for p in parts):
        return None
    return ", ".join(p for p in parts if p is not None)


def _inline_text(value: Any) -> str | None:
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    tag = _tagged(value)
    if isinstance(value, list):
        joined = _inline_join(value)
        return None if joined is None else f"[{joined}]"
    if tag is None:  # a dict of text keys
        return _inline_pairs(list(value.items()), text_keys=True)
    inner = value[tag]
    if tag == "$more":
        return f"... {inner} more"
    if tag in ("$bytes", "$float"):
        return str(inner)
    if tag in _KNOWN_TAGS:
        zone = value.get("$tzinfo")
        zone_text = "" if zone is None else _inline_text(zone)
        if zone_text is None:
            return None
        return f"{tag[1:]}({inner}{', tzinfo=' + zone_text if zone_text else ''})"
    if tag == "$global":
        return _safe_name(inner)
    if tag == "$ref":
        return f"<record {inner}>"
    if tag in ("$cycle", "$cut"):
        return f"<{tag[1:]}: {inner}>"
    if tag in ("$tuple", "$set", "$frozenset"):
        joined = _inline_join(inner)
        if joined is None:
            return None
        if tag == "$tuple":
            return f"({joined},)" if len(inner) == 1 else f"({joined})"
        return f"{tag[1:]}({{{joined}}})" if inner else f"{tag[1:]}()"
    if tag == "$dict":
        if not all(isinstance(pair, list) and len(pair) == 2 for pair in inner):
            return None
        return _inline_pairs([(k, v) for k, v in inner], text_keys=False)
    if tag in ("$new", "$call"):
        if any(k in value for k in ("$state", "$items", "$entries")):
            return None
        return _call_text(value)
    return None


def _inline_pairs(pairs: list[tuple[Any, Any]], text_keys: bool) -> str | None:
    parts = []
    for key, value in pairs:
        key_text = repr(key) if text_keys else _inline_text(key)
        value_text = _inline_text(value)
        if key_text is None or value_text is None:
            return None
        parts.append(f"{key_text}: {value_text}")
    return "{" + ", ".join(parts) + "}"


def _call_text(value: dict[str, Any]) -> str | None:
    tag = "$new" if "$new" in value else "$call"
    target = value[tag]
    name = _safe_name(target) if isinstance(target, str) else _inline_text(target)
    args = _inline_join(value.get("$args", []))
    if name is None or args is None:
        return None
    kwargs = value.get("$kwargs") or {}
    if tag == "$new" and not args and not kwargs:
        return name
    if kwargs:
        pairs = [f"{k}={_inline_text(v)}" for k, v in kwargs.items()] \
            if isinstance(kwargs, dict) and _tagged(kwargs) is None else None
        if pairs is None or any(p.endswith("=None") for p in pairs):
            return None
        args = ", ".join(a for a in (args, *pairs) if a)
    return f"{name}({args})"


def _header(value: dict[str, Any]) -> tuple[str, bool]:
    """The first line of an object that does not fit on one: its class and its
    arguments, and whether the arguments are all in it (else: ``Class(...)``)."""
    text = _call_text({k: v for k, v in value.items()
                       if k not in ("$state", "$items", "$entries")})
    if text is not None and len(text) <= INLINE_WIDTH:
        return text, True
    tag = "$new" if "$new" in value else "$call"
    target = value[tag]
    return f"{_safe_name(target) if isinstance(target, str) else '<call>'}(...)", False


def _length(items: list[Any]) -> int:
    """How many items a described container had (its ``$more`` counted)."""
    last = items[-1] if items else None
    if isinstance(last, dict) and set(last) == {"$more"}:
        return len(items) - 1 + int(last["$more"])
    return len(items)


def _render_into(lines: list[str], prefix: str, value: Any, depth: int) -> None:
    """Append ``value``'s lines; ``prefix`` is the first line's start (indent and label)."""
    indent = "  " * (depth + 1)
    text = _inline(value)
    if text is not None:
        lines.append(prefix + text)
        return
    tag = _tagged(value)
    if tag in ("$new", "$call"):
        header, whole = _header(value)
        lines.append(prefix + header)
        if not whole:  # the arguments did not fit on the first line: one per line
            for index, item in enumerate(value.get("$args", [])):
                _render_into(lines, f"{indent}args[{index}]: ", item, depth + 1)
            if value.get("$kwargs"):
                _render_into(lines, f"{indent}kwargs: ", value["$kwargs"], depth + 1)
        state = value.get("$state")
        if isinstance(state, dict) and _tagged(state) is None:
            for key, item in state.items():
                _render_into(lines, f"{indent}{_label(key)}: ", item, depth + 1)
        elif "$state" in value:
            _render_into(lines, f"{indent}state: ", state, depth + 1)
        for index, item in enumerate(value.get("$items", [])):
            _render_into(lines, f"{indent}[{index}]: ", item, depth + 1)
        for pair in value.get("$entries", []):
            if isinstance(pair, list) and len(pair) == 2:
                _render_into(lines, f"{indent}{_label(pair[0])}: ", pair[1], depth + 1)
            else:
                _render_into(lines, indent, pair, depth + 1)
        return
    if isinstance(value, list) or tag in ("$tuple", "$set", "$frozenset"):
        items = value if isinstance(value, list) else value[tag]
        kind = {None: "list", "$tuple": "tuple", "$set": "set", "$frozenset": "frozenset"}[tag]
        lines.append(f"{prefix}{kind} of {_length(items)}")
        texts = [_inline_text(item) for item in items]
        if all(t is not None and len(t) <= INLINE_WIDTH for t in texts):
            line = ""
            for text in texts:
                if line and len(line) + len(str(text)) + 2 > INLINE_WIDTH:
                    lines.append(f"{indent}{line},")
                    line = ""
                line = f"{line}, {text}" if line else str(text)
            lines.append(indent + line)
            return
        for index, item in enumerate(items):
            _render_into(lines, f"{indent}[{index}]: ", item, depth + 1)
        return
    if tag == "$dict":
        lines.append(f"{prefix}dict of {len(value[tag])}")
        for pair in value[tag]:
            if isinstance(pair, list) and len(pair) == 2:
                _render_into(lines, f"{indent}{_label(pair[0])}: ", pair[1], depth + 1)
            else:
                _render_into(lines, indent, pair, depth + 1)
        return
    if isinstance(value, dict) and tag is None:
        lines.append(f"{prefix}dict of {len(value)}")
        for key, item in value.items():
            _render_into(lines, f"{indent}{_label(key)}: ", item, depth + 1)
        return
    text = _inline_text(value)  # a long text, a reference with a long id...
    lines.append(prefix + (text if text is not None else repr(value)))
