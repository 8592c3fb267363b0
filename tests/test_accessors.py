"""Accessors: GET, GetAttribute, GetItem, ONLY, defaults, GC3Pie aliases, repr."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from typedstore import (
    GET,
    GetAttribute,
    GetAttributeValue,
    GetItem,
    GetItemValue,
    GetOnly,
    GetValue,
)
from typedstore.accessors import NO_DEFAULT, fast_accessor


def job(**attrs: Any) -> SimpleNamespace:
    return SimpleNamespace(**attrs)


def test_get_returns_the_object() -> None:
    obj = object()
    assert GET(obj) is obj
    assert isinstance(GET, GetValue)


def test_chained_attributes_and_items() -> None:
    obj = job(a=job(b=["first", "second"]))
    assert GET.a.b[0](obj) == "first"
    assert GET.a.b[1](obj) == "second"
    assert GET.a.b(obj) is obj.a.b


def test_chain_through_dict_keys() -> None:
    obj = job(execution={"state": "RUNNING", "info": {"cores": 4}})
    assert GET.execution["state"](obj) == "RUNNING"
    assert GET.execution["info"]["cores"](obj) == 4


def test_accessors_are_reusable_and_independent() -> None:
    a = GET.a
    a_b, a_c = a.b, a.c
    obj = job(a=job(b=1, c=2))
    assert (a(obj), a_b(obj), a_c(obj)) == (obj.a, 1, 2)
    assert a_b(job(a=job(b=9, c=0))) == 9


def test_get_attribute_dotted_path() -> None:
    obj = job(execution=job(state="TERMINATED", returncode=0))
    assert GetAttribute("execution.state")(obj) == "TERMINATED"
    assert GetAttribute("execution")(obj) is obj.execution
    assert GetAttribute("execution.returncode")(obj) == 0


def test_get_attribute_reaches_private_names() -> None:
    obj = job(_hidden=5)
    assert GetAttribute("_hidden")(obj) == 5


def test_get_item() -> None:
    assert GetItem("k")({"k": "v"}) == "v"
    assert GetItem(2)([10, 20, 30]) == 30
    assert GetItem(-1)((1, 2)) == 2
    assert GetItem("x")(job(x=1).__dict__) == 1


@pytest.mark.parametrize(
    ("accessor", "obj"),
    [
        (GetAttribute("missing", default="dflt"), job()),
        (GetAttribute("a.missing", default="dflt"), job(a=job())),
        (GetItem("missing", default="dflt"), {}),
        (GetItem(5, default="dflt"), [1, 2]),
    ],
    ids=["attribute", "dotted-attribute", "key", "index"],
)
def test_default_when_missing(accessor: GetValue, obj: Any) -> None:
    assert accessor(obj) == "dflt"


def test_default_of_root_applies_to_attribute_chain() -> None:
    accessor = GetValue(default=None).a.b
    assert accessor(job()) is None
    assert accessor(job(a=job())) is None
    assert accessor(job(a=job(b="here"))) == "here"


@pytest.mark.parametrize("default", ["n/a", None])
def test_default_of_root_applies_to_whole_chain(default: Any) -> None:
    accessor = GetValue(default=default).a.b[0]
    assert accessor(job(a=job(b=["here"]))) == "here"
    assert accessor(job(a=job(b=[]))) == default
    assert accessor(job()) == default


def test_default_of_outer_step_covers_inner_steps() -> None:
    accessor = GetItem(0, xform=GetAttribute("a"), default="none")
    assert accessor(job()) == "none"
    assert accessor(job(a=[])) == "none"
    assert accessor(job(a=["x"])) == "x"


def test_default_none_is_a_real_default() -> None:
    assert GetAttribute("nope", default=None)(job()) is None


@pytest.mark.parametrize(
    ("accessor", "obj", "error"),
    [
        (GetAttribute("missing"), job(), AttributeError),
        (GetAttribute("a.missing"), job(a=job()), AttributeError),
        (GetItem("missing"), {}, KeyError),
        (GetItem(5), [1, 2], IndexError),
        (GET.a.b[0], job(a=job(b=[])), IndexError),
        (GET.a["k"], job(a={}), KeyError),
    ],
    ids=["attribute", "dotted", "key", "index", "chain-index", "chain-key"],
)
def test_error_propagates_without_default(
    accessor: GetValue, obj: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        accessor(obj)


def test_other_errors_are_not_swallowed_by_default() -> None:
    # Indexing an int is a TypeError: a bug, not a missing value.
    with pytest.raises(TypeError):
        GetItem(0, default="dflt")(5)


class Other:
    def __init__(self, **attrs: Any) -> None:
        self.__dict__.update(attrs)


def test_only_tests_the_object_not_the_value() -> None:
    # GC3Pie 2.6.8: GET.x.ONLY(cls) reads obj.x only when obj is a cls.
    accessor = GET.x.ONLY(type(job()))
    assert isinstance(accessor, GetOnly)
    assert accessor(job(x=3)) == 3
    assert accessor(job(x="3")) == "3"
    assert accessor(Other(x=3)) is None


def test_only_mismatch_gives_the_default() -> None:
    accessor = GetAttribute("x", default=-1).ONLY(type(job()))
    assert accessor(job(x=3)) == 3
    assert accessor(job()) == -1
    assert accessor(Other(x=3)) == -1


def test_only_without_default_never_raises_on_mismatch_but_path_errors_propagate() -> None:
    accessor = GET.x.ONLY(type(job()))
    assert accessor(Other()) is None
    with pytest.raises(AttributeError):
        accessor(job())


def test_only_accepts_a_tuple_of_types() -> None:
    accessor = GetValue(default="no").ONLY((int, float))
    assert accessor(1.5) == 1.5
    assert accessor(2) == 2
    assert accessor("2") == "no"


def test_only_on_root() -> None:
    assert GetValue(default=0).ONLY(str)("text") == "text"
    assert GetValue(default=0).ONLY(str)(12) == 0


def test_gc3pie_aliases() -> None:
    assert GetAttributeValue is GetAttribute
    assert GetItemValue is GetItem
    assert isinstance(GET.a, GetAttributeValue)
    assert isinstance(GET["k"], GetItemValue)


@pytest.mark.parametrize(
    ("accessor", "text"),
    [
        (GET, "GET"),
        (GET.a, "GET.a"),
        (GET.a.b[0], "GET.a.b[0]"),
        (GET["key"], "GET['key']"),
        (GetAttribute("a.b"), "GET.a.b"),
        (GetItem(3), "GET[3]"),
        (GET.execution.state.ONLY(str), "GET.execution.state.ONLY(<class 'str'>)"),
    ],
)
def test_repr_is_readable(accessor: GetValue, text: str) -> None:
    assert repr(accessor) == text


def test_repr_shows_default() -> None:
    assert "default=7" in repr(GetAttribute("a", default=7))


def test_private_names_are_not_paths() -> None:
    with pytest.raises(AttributeError):
        _ = GET._private


# ---------------------------------------------------------------- fast_accessor

NAMES = st.sampled_from(["a", "b", "c"])


def nested(depth: int, draw: Any) -> Any:
    """Objects nested ``depth`` deep with some of a, b, c set, leaves numbers."""
    if depth == 0:
        return draw(st.integers(0, 9))
    return SimpleNamespace(**{name: nested(depth - 1, draw)
                              for name in draw(st.sets(NAMES))})


def build(path: list[str], default: Any, style: str) -> Any:
    if style == "GetAttribute":
        return GetAttribute(".".join(path), default=default)
    accessor: Any = GET
    for name in path:
        accessor = getattr(accessor, name)
    return accessor if default is NO_DEFAULT else GetAttribute(".".join(path), xform=GET,
                                                                 default=default)


@given(data=st.data(), path=st.lists(NAMES, min_size=1, max_size=3),
       default=st.sampled_from([NO_DEFAULT, None, 7]),
       style=st.sampled_from(["GET", "GetAttribute"]))
def test_fast_accessor_gives_what_the_accessor_gives(data: Any, path: list[str], default: Any,
                                                     style: str) -> None:
    accessor = build(path, default, style)
    fast = fast_accessor(accessor)
    assert fast is not accessor  # attribute paths are always made fast
    obj = nested(3, data.draw)

    def outcome(fn: Any) -> Any:
        try:
            return ("value", fn(obj))
        except AttributeError:
            return ("missing", None)

    assert outcome(fast) == outcome(accessor)


@pytest.mark.parametrize("accessor", [GET, GET["x"], GET.a["x"], GET.a.ONLY(int),
                                      GET.a[0].b, len])
def test_fast_accessor_keeps_other_accessors(accessor: Any) -> None:
    assert fast_accessor(accessor) is accessor
