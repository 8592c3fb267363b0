"""The identity map on its own: entries, versions, weak holding, journal and rollback."""

from __future__ import annotations

import gc
import sys
import weakref
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from typedstore.identity import IdentityMap


class Thing:
    """A weakly referenceable object."""


def test_weakly_held_objects_leave_the_map_when_collected() -> None:
    m = IdentityMap()
    kept, dropped = Thing(), Thing()
    m.put(1, kept, 3)
    m.put(2, dropped, 4)
    del dropped
    gc.collect()
    assert m.get(1) is kept and m.version(1) == 3
    assert m.get(2) is None and m.version(2) is None
    assert len(m) == 1
    assert 2 not in m._entries  # the dead entry removed itself


def test_objects_without_weak_references_are_held_strongly() -> None:
    m = IdentityMap()
    m.put(1, {"a": 1}, 7)
    gc.collect()
    assert m.get(1) == {"a": 1} and m.version(1) == 7
    m.discard(1)
    assert m.get(1) is None


def test_a_dead_entry_does_not_remove_a_newer_one() -> None:
    m = IdentityMap()
    old = Thing()
    m.put(1, old, 1)
    new = Thing()
    m.put(1, new, 2)
    del old
    gc.collect()
    assert m.get(1) is new and m.version(1) == 2


def test_entries_keep_no_map_alive_and_outlive_it_quietly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A store's map goes away with the store even while its objects live on;
    their entries' callbacks then find nothing to do (and raise nothing)."""
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    m = IdentityMap()
    obj = Thing()
    m.put(1, obj, 1)
    gone = weakref.ref(m)
    del m
    assert gone() is None  # freed by reference counting: the map is in no cycle
    del obj
    gc.collect()
    assert unraisable == []


operations = st.lists(
    st.tuples(st.sampled_from(["put", "discard", "drop"]), st.integers(0, 5),
              st.integers(0, 3)),
    max_size=30,
)


@given(before=operations, during=operations, rollback=st.booleans())
def test_rollback_restores_exactly_the_map_before_the_transaction(
    before: list[tuple[str, int, int]], during: list[tuple[str, int, int]], rollback: bool
) -> None:
    """Model: a dict id -> (object, version); objects may also die (``drop``)."""
    m = IdentityMap()
    alive: dict[int, Any] = {}  # the caller's references, as a user would hold them
    model: dict[int, tuple[Any, int]] = {}

    def apply(ops: list[tuple[str, int, int]]) -> None:
        for op, key, version in ops:
            if op == "put":
                obj = alive.setdefault(key, Thing()) if version % 2 else Thing()
                alive[key] = obj
                m.put(key, obj, version)
                model[key] = (obj, version)
            elif op == "discard":
                m.discard(key)
                model.pop(key, None)
            elif key in alive and m.journal is None:
                # Only outside a transaction: the journal holds what it replaced.
                # The last reference: freed at once (reference counting; no
                # gc.collect, which costs seconds in a large test process).
                del alive[key]
                model.pop(key, None)

    apply(before)
    snapshot = dict(model)
    m.begin()
    apply(during)
    m.end(rollback=rollback)
    expected = snapshot if rollback else model
    for key in range(6):
        if key in expected:
            assert m.get(key) is expected[key][0]
            assert m.version(key) == expected[key][1]
        else:
            assert m.get(key) is None
