"""Property tests: any picklable value survives save + load in a fresh store instance.

The stores come from the ``open_store`` fixture, so every backend is covered; the
fixture is function-scoped, so all examples of one test share one store location:
each example writes through the test's ``store`` and reads through a new instance,
looking only at its own ids.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from typedstore import NotFoundError, Persistable, Store

OpenStore = Callable[..., Store]

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
hashables = st.recursive(scalars, lambda inner: st.tuples(inner, inner), max_leaves=4)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(hashables, inner, max_size=5)
    ),
    max_leaves=15,
)


class Box(Persistable):
    """A Persistable holding one arbitrary value."""

    def __init__(self, value: Any) -> None:
        self.value = value


def same(a: Any, b: Any) -> bool:
    """Equality that also tells 0.0 from -0.0 and compares containers element-wise."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


@SETTINGS
@given(value=values)
def test_value_in_persistable_round_trips(
    store: Store, open_store: OpenStore, value: Any
) -> None:
    box = Box(value)
    id_ = store.save(box)
    loaded = open_store().load(id_)
    assert isinstance(loaded, Box)
    assert loaded.persistent_id == id_
    assert same(loaded.value, value)


@SETTINGS
@given(value=values)
def test_raw_value_round_trips(store: Store, open_store: OpenStore, value: Any) -> None:
    id_ = store.save(value)
    assert same(open_store().load(id_), value)


@SETTINGS
@given(batch=st.lists(values, min_size=1, max_size=4))
def test_save_many_round_trips(store: Store, open_store: OpenStore, batch: list[Any]) -> None:
    boxes = [Box(v) for v in batch]
    ids = store.save_many(boxes)
    assert len(set(ids)) == len(ids)
    fresh = open_store()
    assert set(ids) <= set(fresh.list())
    for id_, value in zip(ids, batch, strict=True):
        assert same(fresh.load(id_).value, value)


# A small model-based test: a random sequence of operations, checked against a dict.
operations = st.lists(
    st.one_of(
        st.tuples(st.just("save"), values),
        st.tuples(st.just("update"), st.integers(0, 10), values),
        st.tuples(st.just("replace"), st.integers(0, 10), values),
        st.tuples(st.just("remove"), st.integers(0, 10)),
        st.tuples(st.just("reopen")),
    ),
    max_size=12,
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
def test_operation_sequences_match_a_dict(
    open_store: OpenStore, ops: list[tuple[Any, ...]]
) -> None:
    store = open_store()
    earlier = set(store.list())  # left by previous examples on the same location
    model: dict[Any, Any] = {}
    removed: list[Any] = []
    for op in ops:
        kind = op[0]
        if kind == "save":
            id_ = store.save(Box(op[1]))
            assert id_ not in model
            assert id_ not in earlier
            assert id_ not in removed
            model[id_] = op[1]
        elif kind == "reopen":
            store = open_store()
        elif not model:
            continue
        else:
            id_ = sorted(model, key=str)[op[1] % len(model)]
            if kind == "update":
                box = store.load(id_)
                box.value = op[2]
                assert store.save(box) == id_
                model[id_] = op[2]
            elif kind == "replace":
                store.replace(id_, Box(op[2]))
                model[id_] = op[2]
            else:
                store.remove(id_)
                del model[id_]
                removed.append(id_)

    fresh = open_store()
    assert set(fresh.list()) - earlier == set(model)
    for id_, value in model.items():
        assert same(fresh.load(id_).value, value)
    for id_ in removed:
        with pytest.raises(NotFoundError):
            fresh.load(id_)
