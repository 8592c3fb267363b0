"""Reading a record's references from its payload without running it (typedstore.references)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from tests.security.planted import planted
from typedstore import make_store
from typedstore.errors import LoadError
from typedstore.references import referenced_ids
from typedstore.serialization import Persistable


class Node(Persistable):
    def __init__(self, name: str, children: list[Any]) -> None:
        self.name = name
        self.children = children


def _payload(store: Any, id_: Any) -> bytes:
    return bytes(store._read(store._coerce_id(id_)).payload)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_references_of_typedstore_records(tmp_path: Path, kind: str, protocol: int) -> None:
    url = f"sqlite:///{tmp_path}/s.db" if kind == "sqlite" else str(tmp_path / "files")
    store = make_store(url, protocol=protocol)
    shared = Node("shared", [])
    inner = Node("inner", [shared])
    top = Node("top", [inner, shared, inner, {"deep": [(shared,)]}])
    top_id = store.save(top)
    found = referenced_ids(_payload(store, top_id), top_id)
    # Protocol 0 writes persistent ids as text (PERSID): the store coerces them.
    assert [store._coerce_id(i) for i in found] == [inner.persistent_id, shared.persistent_id]
    assert [store._coerce_id(i) for i in referenced_ids(_payload(store, inner.persistent_id))] \
        == [shared.persistent_id]
    assert referenced_ids(_payload(store, shared.persistent_id)) == []
    store.close()


def test_planted_records_run_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    for name, payload in planted(str(marker)).items():
        try:
            assert referenced_ids(payload, name) == []
        except LoadError as exc:
            assert name in str(exc)
        assert not marker.exists(), f"scanning {name!r} ran its payload"


def test_not_a_pickle_is_a_load_error_naming_the_record() -> None:
    with pytest.raises(LoadError, match="record 42: its references cannot be read"):
        referenced_ids(b"\x80\x04not a pickle", 42)


def test_a_reference_that_is_not_an_id_is_refused() -> None:
    class Referrer(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            return (1, 2) if obj == "child" else None

    import io

    buffer = io.BytesIO()
    Referrer(buffer, 4).dump(["child"])
    with pytest.raises(LoadError, match="record 7: a reference in its payload is a tuple"):
        referenced_ids(buffer.getvalue(), 7)
