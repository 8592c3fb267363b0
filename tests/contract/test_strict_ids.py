"""Ids are ints/IntIds, strings of their digits (SQL) or strings (files): nothing is coerced.

Regression (issue 10): on the SQL stores ``remove(1.9)`` deleted record 1 and
``load(True)`` loaded record 1.
"""

from __future__ import annotations

import pytest

from typedstore import LoadError, NotFoundError, Store


@pytest.mark.parametrize("bad", [1.9, 1.0, True, False, None, b"1", [1], object()])
def test_wrong_id_types_are_refused_before_anything_runs(store: Store, bad: object) -> None:
    first = store.save({"n": 1})
    for operation in (store.load, store.remove, lambda i: store.replace(i, {"n": 2})):
        with pytest.raises(TypeError, match="id"):
            operation(bad)
    assert store.load(first) == {"n": 1}
    assert [str(i) for i in store.list()] == [str(first)]


@pytest.mark.parametrize("bad", ["1.0", " 1", "1 ", "+1", "-1", "\u0661", "0x1", ""])
def test_malformed_id_strings_are_not_found(store: Store, backend: str, bad: str) -> None:
    first = store.save({"n": 1})
    with pytest.raises(NotFoundError):
        store.load(bad)
    with pytest.raises(LoadError):
        store.remove(bad)
    assert store.load(first) == {"n": 1}


def test_digit_strings_name_sql_records(store: Store, backend: str) -> None:
    if backend == "file":
        pytest.skip("file store ids are names, not numbers")
    first = store.save({"n": 1})
    assert store.load(str(int(first))) is store.load(first)
