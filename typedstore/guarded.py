"""Unpickling that only makes new objects: the reader behind allow-lists.

An allow-list bounds which globals a payload may name, but pickle's opcodes
can do more with an allowed global than construct it. ``BUILD`` sets
attributes on whatever object is below it on the stack: a payload that puts
an allowed *class* there changes the class for the whole process
(``Job.command = "rm -rf ~"``, ``Persistable.persistent_id = <a victim's
id>``), and the store itself sets ``persistent_id`` on a record's top object,
which a payload could make a class. pickle's own helpers call what they are
given (``copyreg._reconstructor(cls, base, state)`` calls
``base.__init__``), and pickle looks ``__setstate__``, ``append`` and
``extend`` up on the *instance*, where a payload can plant any object.

:class:`GuardedUnpickler` is pickle's Python unpickler with the opcodes that
call or change an object reimplemented so that a payload can only make new
objects of what it named:

* ``REDUCE``, ``OBJ``, ``NEWOBJ`` and ``NEWOBJ_EX`` call only globals the
  payload named (resolved by :meth:`find_class`, so checked by the
  allow-list), the last three only classes; pickle's reconstruction helpers
  are replaced by checked ones that accept classes only, and
  ``_codecs.encode`` by one that accepts Latin-1 only (what protocol 0-2
  pickles of ``bytes`` use; another codec name imports a module);
* ``BUILD``, ``APPEND(S)``, ``SETITEM(S)`` and ``ADDITEMS`` never change an
  object the payload did not make (a global, the object of a record it
  references) nor an :class:`enum.Enum` member (a constructor call hands out
  the shared member), and find ``__setstate__``, ``append``, ``extend`` and
  ``add`` on the object's class, never in its ``__dict__``;
* the top object of a record is one the payload made: not a global, not a
  referenced record's object, not an enum member.

A refusal is :class:`~typedstore.errors.UnsafeLoadError` naming the record
and the opcode. The C unpickler has no hooks for opcodes, so this one costs
about five times as much per record; stores use it only under an allow-list
(:func:`typedstore.serialization.loads`).
"""

from __future__ import annotations

import _codecs
import copyreg
import enum
import pickle
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import UnsafeLoadError

#: pickle's reconstruction helpers (private names of copyreg).
_RECONSTRUCTOR = vars(copyreg)["_reconstructor"]
_NEWOBJ = vars(copyreg)["__newobj__"]
_NEWOBJ_EX = vars(copyreg)["__newobj_ex__"]

#: The Latin-1 spellings ``_codecs.encode`` accepts from a payload.
_LATIN1 = frozenset({"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1", "l1"})


class GuardedUnpickler(pickle._Unpickler):
    """pickle's Python unpickler, making only new objects of the globals a
    payload names (see the module's docstring).

    Subclasses resolve globals (``find_class``, called through this class's
    own) and references (``persistent_load``, whose objects they hand to
    :meth:`outsider`), and set :attr:`record_id`, which errors name.
    """

    dispatch: ClassVar[dict[int, Callable[[Any], None]]] = dict(pickle._Unpickler.dispatch)
    record_id: Any = None
    if TYPE_CHECKING:  # pickle._Unpickler's own, which typeshed does not describe
        stack: list[Any]
        append: Callable[[Any], None]

        def pop_mark(self) -> list[Any]: ...
        def _instantiate(self, klass: Any, args: list[Any]) -> None: ...

    def __init__(self, file: Any) -> None:
        super().__init__(file)
        # id() -> object, for everything the payload did not make; kept alive
        # here, so that no id is reused while the load runs.
        self._outside: dict[int, Any] = {}
        self._globals: set[int] = set()
        self._checked = {
            _RECONSTRUCTOR: self._reconstructor,
            _NEWOBJ: self._newobj,
            _NEWOBJ_EX: self._newobj_ex,
            _codecs.encode: self._encode,
        }

    def _refusal(self, opcode: str, why: str) -> UnsafeLoadError:
        return UnsafeLoadError(f"record {self.record_id}: {opcode} {why} (a planted record?); "
                               "nothing of the record was loaded", self.record_id, opcode)

    # ------------------------------------------------------------ what comes from outside

    def find_class(self, module: str, name: str) -> Any:
        found = super().find_class(module, name)
        found = self._checked.get(found, found)
        self._outside[id(found)] = found
        self._globals.add(id(found))
        return found

    def outsider(self, obj: Any) -> Any:
        """Note ``obj`` as one the payload did not make; return it. Subclasses
        pass every object their ``persistent_load`` resolves through this."""
        self._outside[id(obj)] = obj
        return obj

    def load(self) -> Any:
        result = super().load()
        if id(result) in self._outside or isinstance(result, enum.Enum):
            raise self._refusal("its top object", f"is not an object it makes (a "
                                f"{type(result).__name__} that exists outside the record)")
        return result

    # ------------------------------------------------------------ calls

    def _callable(self, target: Any, opcode: str, classes_only: bool) -> None:
        if id(target) not in self._globals:
            raise self._refusal(opcode, f"would call an object it did not name as a global "
                                f"(a {type(target).__name__})")
        if classes_only and not isinstance(target, type):
            raise self._refusal(opcode, f"would call {target!r}, which is not a class")

    def load_reduce(self) -> None:
        args = self.stack.pop()
        self._callable(self.stack[-1], "REDUCE", classes_only=False)
        self.stack[-1] = self.stack[-1](*args)

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self._callable(cls, "NEWOBJ", classes_only=True)
        self.append(cls.__new__(cls, *args))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self._callable(cls, "NEWOBJ_EX", classes_only=True)
        self.append(cls.__new__(cls, *args, **kwargs))

    def load_obj(self) -> None:
        args = self.pop_mark()
        cls = args.pop(0)
        self._callable(cls, "OBJ", classes_only=True)
        self._instantiate(cls, args)

    def _reconstructor(self, cls: Any, base: Any, state: Any) -> Any:
        if not (isinstance(cls, type) and isinstance(base, type)):
            raise self._refusal("copyreg._reconstructor", "was given something other than "
                                "classes to build from")
        return _RECONSTRUCTOR(cls, base, state)

    def _newobj(self, cls: Any, *args: Any) -> Any:
        if not isinstance(cls, type):
            raise self._refusal("copyreg.__newobj__", "was given something other than a class")
        return cls.__new__(cls, *args)

    def _newobj_ex(self, cls: Any, args: Any, kwargs: Any) -> Any:
        if not isinstance(cls, type):
            raise self._refusal("copyreg.__newobj_ex__",
                                "was given something other than a class")
        return cls.__new__(cls, *args, **kwargs)

    def _encode(self, text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> Any:
        if not isinstance(encoding, str) or encoding.lower() not in _LATIN1:
            raise self._refusal("_codecs.encode", f"asks for the codec {encoding!r} (only "
                                "Latin-1 is pickle's; another name imports a module)")
        return _codecs.encode(text, "latin-1", errors)

    # ------------------------------------------------------------ changes

    def _changeable(self, target: Any, opcode: str) -> None:
        if id(target) in self._outside or isinstance(target, enum.Enum):
            what = (f"the class {target.__module__}.{target.__qualname__}"
                    if isinstance(target, type) else
                    f"a {type(target).__name__} that exists outside the record")
            raise self._refusal(opcode, f"would change {what}")

    def load_build(self) -> None:
        state = self.stack.pop()
        target = self.stack[-1]
        self._changeable(target, "BUILD")
        setstate = getattr(type(target), "__setstate__", None)
        if setstate is not None:
            setstate(target, state)
            return
        slots = None
        if isinstance(state, tuple) and len(state) == 2:
            state, slots = state
        if state:
            vars(target).update(state)
        if slots:
            for name, value in slots.items():
                setattr(target, name, value)

    def load_append(self) -> None:
        value = self.stack.pop()
        target = self.stack[-1]
        self._changeable(target, "APPEND")
        type(target).append(target, value)

    def load_appends(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        self._changeable(target, "APPENDS")
        extend = getattr(type(target), "extend", None)
        if extend is not None:
            extend(target, items)
            return
        for item in items:
            type(target).append(target, item)

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        target = self.stack[-1]
        self._changeable(target, "SETITEM")
        target[key] = value

    def load_setitems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        self._changeable(target, "SETITEMS")
        for index in range(0, len(items), 2):
            target[items[index]] = items[index + 1]

    def load_additems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        self._changeable(target, "ADDITEMS")
        if isinstance(target, set):
            set.update(target, items)
            return
        for item in items:
            type(target).add(target, item)

    for _opcode, _method in ((pickle.REDUCE, load_reduce), (pickle.NEWOBJ, load_newobj),
                             (pickle.NEWOBJ_EX, load_newobj_ex), (pickle.OBJ, load_obj),
                             (pickle.BUILD, load_build), (pickle.APPEND, load_append),
                             (pickle.APPENDS, load_appends), (pickle.SETITEM, load_setitem),
                             (pickle.SETITEMS, load_setitems),
                             (pickle.ADDITEMS, load_additems)):
        dispatch[_opcode[0]] = _method
    del _opcode, _method
