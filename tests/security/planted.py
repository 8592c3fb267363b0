"""Planted records: hand-made pickles that run a command when loaded without
an allow-list. Each touches a marker file; a test passes only if it stays absent.

These are attacks, made with pickle opcodes (``pickletools`` names them), not
records of any program: the point is what a hostile writer can put in a store.
"""

from __future__ import annotations

import pickle
import struct


def _text(value: str) -> bytes:
    data = value.encode()
    return pickle.SHORT_BINUNICODE + bytes([len(data)]) + data if len(data) < 256 \
        else pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def _global(module: str, name: str) -> bytes:
    return _text(module) + _text(name) + pickle.STACK_GLOBAL


def _call(callable_: bytes, *args: bytes) -> bytes:
    return callable_ + pickle.MARK + b"".join(args) + pickle.TUPLE + pickle.REDUCE


def _list(*items: str) -> bytes:
    return pickle.EMPTY_LIST + pickle.MARK + b"".join(map(_text, items)) + pickle.APPENDS


def _record(body: bytes) -> bytes:
    return pickle.PROTO + bytes([4]) + body + pickle.STOP


def planted(marker: str, victim: str = "tests.security.victim") -> dict[str, bytes]:
    """Name -> payload; each runs ``touch marker`` (or the like) when loaded freely."""
    command = _text(f"touch {marker}")

    os_module = _call(_global("builtins", "__loader__.load_module"), _text("os"))
    return {
        # The plain attack: os.system named directly.
        "os.system": _record(_call(_global("os", "system"), command)),
        # Protocol 0 spelling of the same (GLOBAL opcode, text arguments).
        "os.system, protocol 0": (b"cos\nsystem\n(V" + f"touch {marker}".encode()
                                  + b"\ntR."),
        # An attribute path under an allowed package: victim imports os.
        "attribute path under an allowed module": _record(
            _call(_global(victim, "os.system"), command)),
        # A function the allowed package re-exports.
        "function re-exported by an allowed module": _record(
            _call(_global(victim, "run_command"), _list("touch", marker))),
        # A module of the allowed package, then an attribute path in it.
        "module under an allowed package": _record(
            _call(_global(victim, "subprocess.call"), _list("touch", marker))),
        # Through builtins, which older allow-lists admitted whole: an
        # attribute path to the import machinery, then object.__getattribute__.
        "import machinery through builtins": _record(
            _call(_call(_global("builtins", "object.__getattribute__"), os_module,
                        _text("system")), command)),
        # Through a module every allow-list admitted (collections imports sys).
        "sys through collections": _record(
            _call(_call(_global("builtins", "object.__getattribute__"),
                        _call(_global("collections", "_sys.modules.get"), _text("os")),
                        _text("system")), command)),
        # A nested class path that leaves the module through a function.
        "nested path through a function": _record(
            _call(_global(victim, "Job.__init__.__globals__.get"), _text("os"))),
    }


def _state(**attributes: bytes) -> bytes:
    """BUILD's ``(None, {name: value})``: a "slot state", set with setattr."""
    items = b"".join(_text(name) + value for name, value in attributes.items())
    return (pickle.NONE + pickle.EMPTY_DICT + pickle.MARK + items + pickle.SETITEMS
            + pickle.TUPLE2 + pickle.BUILD)


def tampering(victim: str, reference: bytes) -> dict[str, bytes]:
    """Name -> payload changing what the record does not make: a class it names
    (for the whole process: ``Job.name``, ``Persistable.persistent_id``), or the
    object of the record ``reference`` (a pickled persistent id) points to."""
    return {
        "BUILD on an allowed class": _record(
            _global(victim, "Job") + _state(name=_text("planted")) + pickle.POP
            + pickle.NONE),
        "BUILD on Persistable": _record(
            _global("typedstore.serialization", "Persistable")
            + _state(persistent_id=_text("hijacked")) + pickle.POP + pickle.NONE),
        "BUILD on a referenced record's object": _record(
            reference + pickle.BINPERSID + _state(name=_text("hijacked"))),
        "calling a referenced record's object": _record(
            _call(reference + pickle.BINPERSID, _text("x"))),
        # Found by a second attack on the guard:
        "a top object that is an allowed class": _record(
            _global("typedstore.serialization", "Persistable")),
        "a top object that is a referenced record's object": _record(
            reference + pickle.BINPERSID),
        "_reconstructor building on a referenced record's object": _record(
            _call(_global("copyreg", "_reconstructor"), _global(victim, "Job"),
                  reference + pickle.BINPERSID, _text("hijacked"))),
        "BUILD on an enum member": _record(
            _call(_global(victim, "Color"), pickle.BININT1 + bytes([1]))
            + _state(_name_=_text("GREEN")) + pickle.POP + pickle.NONE),
        "a __setstate__ planted in a new object's __dict__": _record(
            _global(victim, "Job") + pickle.EMPTY_TUPLE + pickle.NEWOBJ
            + pickle.EMPTY_DICT + _text("__setstate__") + reference + pickle.BINPERSID
            + pickle.SETITEM + pickle.BUILD + _text("name") + pickle.BUILD),
        "a codec module imported by _codecs.encode": _record(
            _call(_global("_codecs", "encode"), _text("x"), _text("uu_codec"))),
    }


def planted_global(module: str, name: str) -> bytes:
    """A record naming ``module.name`` (and calling it): whatever importing
    ``module`` does happens before anything is called."""
    return _record(_call(_global(module, name)))
