"""Accessors: small callables that pull a value out of an object.

They are how row fields say where their value comes from, with GC3Pie's
semantics and names:

* ``GET`` returns the object itself; ``GET.a.b[0]`` returns ``obj.a.b[0]``;
* ``GetAttribute("a.b")`` follows a dotted attribute path;
* ``GetItem(key)`` indexes (``obj[key]``);
* ``GET.x.ONLY(SomeClass)`` applies ``GET.x`` only to objects that are
  ``SomeClass`` instances; any other object gives the default, or ``None``
  (GC3Pie 2.6.8's ``GetOnly``: the class test is on the object handed to the
  accessor, not on the value found, and a mismatch never raises);
* every accessor takes ``default=``, returned when the path is missing
  (an attribute, key or index that does not exist); without a default the
  lookup error propagates.

GC3Pie's older names ``GetAttributeValue`` and ``GetItemValue`` are aliases.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable
from typing import Any

#: The errors that mean "the value is not there" (as opposed to a bug in a getter).
MISSING_ERRORS: tuple[type[BaseException], ...] = (AttributeError, KeyError, IndexError)


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()


def _identity(obj: Any) -> Any:
    return obj


class GetValue:
    """The root accessor: returns its argument, transformed by ``xform``.

    Attribute access and indexing build longer accessors: ``GET.a[1]`` is
    ``GetItem(1, xform=GetAttribute("a"))``.
    """

    def __init__(self, default: Any = NO_DEFAULT, xform: Callable[[Any], Any] = _identity):
        self._default = default
        self._xform = xform

    def _lookup(self, value: Any) -> Any:
        return value

    def _describe(self) -> str:
        return "GET"

    def __call__(self, obj: Any) -> Any:
        try:
            return self._lookup(self._xform(obj))
        except MISSING_ERRORS:
            if self._default is NO_DEFAULT:
                raise
            return self._default

    def __getattr__(self, name: str) -> GetAttributeValue:
        # Private names are never paths: copy, pickle and our own attributes use
        # them. Reach an attribute named "_x" with GetAttribute("_x").
        if name.startswith("_"):
            raise AttributeError(name)
        return GetAttributeValue(name, xform=self._strict(), default=self._default)

    def __getitem__(self, key: Any) -> GetItemValue:
        return GetItemValue(key, xform=self._strict(), default=self._default)

    def ONLY(self, specifically: type | tuple[type, ...]) -> GetOnly:
        """This accessor, applied only to objects that are ``specifically`` instances.

        Another object gives this accessor's default (``None`` without one), as
        GC3Pie's ``GetValue.ONLY`` does; ``ONLY`` goes last in a path.
        """
        return GetOnly(specifically, xform=self, default=self._default)

    def _strict(self) -> GetValue:
        """This accessor without its default: inside a longer path, a missing step must
        reach the end of the path, where the one default applies."""
        if self._default is NO_DEFAULT:
            return self
        strict = copy.copy(self)
        strict._default = NO_DEFAULT
        return strict

    def __repr__(self) -> str:
        text = self._describe()
        if self._default is not NO_DEFAULT:
            text += f" (default={self._default!r})"
        return text

    def _prefix(self) -> str:
        xform = self._xform
        return xform._describe() if isinstance(xform, GetValue) else "GET"


class GetAttributeValue(GetValue):
    """Return ``obj.<attr>``; ``attr`` may be a dotted path ``"a.b.c"``."""

    def __init__(
        self, attr: str, xform: Callable[[Any], Any] = _identity, default: Any = NO_DEFAULT
    ) -> None:
        super().__init__(default=default, xform=xform)
        self._path = tuple(attr.split("."))

    def _lookup(self, value: Any) -> Any:
        for name in self._path:
            value = getattr(value, name)
        return value

    def _describe(self) -> str:
        return f"{self._prefix()}.{'.'.join(self._path)}"


class GetItemValue(GetValue):
    """Return ``obj[key]``."""

    def __init__(
        self, key: Any, xform: Callable[[Any], Any] = _identity, default: Any = NO_DEFAULT
    ) -> None:
        super().__init__(default=default, xform=xform)
        self._key = key

    def _lookup(self, value: Any) -> Any:
        return value[self._key]

    def _describe(self) -> str:
        return f"{self._prefix()}[{self._key!r}]"


class GetOnly(GetValue):
    """``xform(obj)`` if ``obj`` is an instance of ``only``, else the default.

    GC3Pie's semantics (``gc3libs.persistence.accessors.GetOnly``, 2.6.8): the
    class test is on the object passed to the accessor, before ``xform`` runs;
    a mismatch returns ``default``, or ``None`` when no default was given (it
    never raises). Errors of ``xform`` itself propagate.
    """

    def __init__(
        self,
        only: type | tuple[type, ...],
        xform: Callable[[Any], Any] = _identity,
        default: Any = NO_DEFAULT,
    ) -> None:
        super().__init__(default=default, xform=xform)
        self._only = only

    def __call__(self, obj: Any) -> Any:
        if isinstance(obj, self._only):
            return self._xform(obj)
        return None if self._default is NO_DEFAULT else self._default

    def _describe(self) -> str:
        return f"{self._prefix()}.ONLY({self._only!r})"


#: The root accessor; build paths from it: ``GET.execution.state``.
GET = GetValue()

#: GC3Pie's names.
GetAttribute = GetAttributeValue
GetItem = GetItemValue


def fast_accessor(accessor: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A callable giving the same results as ``accessor``, faster when possible.

    A pure attribute path (``GET.a.b``, ``GetAttribute("a.b")``) becomes one
    ``operator.attrgetter`` (no Python call per step; with a default, one
    call); anything else is returned as it is. Row builders use it on every
    save.
    """
    path: list[str] = []
    node: Any = accessor
    while type(node) is GetAttributeValue:
        if node is not accessor and node._default is not NO_DEFAULT:
            return accessor
        path[:0] = node._path
        node = node._xform
    root = node is _identity or (type(node) is GetValue and node._default is NO_DEFAULT
                                 and node._xform is _identity)
    if not path or not root:
        return accessor
    getter = operator.attrgetter(".".join(path))
    default = accessor._default  # type: ignore[attr-defined]
    if default is NO_DEFAULT:
        return getter

    def get_or_default(obj: Any) -> Any:
        try:
            return getter(obj)
        except MISSING_ERRORS:
            return default

    return get_or_default
