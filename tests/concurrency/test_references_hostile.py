"""References under the conditions a fresh-context attack found wanting (issue 14):
rollbacks, last-writer-wins, unreadable and planted records, loads racing a pack,
the transaction's own writes, cycles among children, large packs."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from tests.concurrency.graphs import Node
from typedstore import (
    ConflictError,
    LoadError,
    NotFoundError,
    ReferencedError,
    SaveError,
    Store,
    StoreError,
)
from typedstore.cli import app
from typedstore.references import referenced_ids


def names(store: Store, ids: Any) -> set[str]:
    return {store.load(i).name for i in ids}


def plant(store: Any, id_: int, payload: bytes) -> Any:
    """Write ``payload`` as record ``id_`` behind the store's back, as a program
    that knows nothing of typedstore would (GC3Pie, or damage)."""
    if hasattr(store, "directory"):
        name = f"Node.{id_}"
        (Path(store.directory) / name).write_bytes(payload)
        return store._coerce_id(name)
    with store.engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO {store._q['table']} (id, data, state) "
                             "VALUES (:id, :data, 'NEW')"), {"id": id_, "data": payload})
    return store._coerce_id(id_)


def test_a_rolled_back_remove_keeps_the_references_right(
        open_store: Callable[..., Store]) -> None:
    store = open_store()
    child = Node("c")
    box = Node("x", [child])
    box_id = store.save(box)
    with pytest.raises(RuntimeError), store.transaction():
        store.remove(box_id, cascade=True)
        raise RuntimeError("changed my mind")
    box.name = "renamed"
    store.save(box)  # was: UNIQUE constraint failed on the reference table
    box.kids = [Node("d")]
    store.save(box)
    fresh = open_store()
    assert fresh.referrers(child.persistent_id) == []
    assert fresh.pack().removed == 1  # c: nothing holds it any more


def test_last_writer_wins_replaces_the_references_it_overwrites(
        open_store: Callable[..., Store]) -> None:
    a = open_store(conflicts="last-writer-wins")
    b = open_store(conflicts="last-writer-wins")
    box_id = a.save(Node("x"))
    stale = b.load(box_id)
    mine = a.load(box_id)
    child = Node("c")
    mine.kids.append(child)
    a.save(mine)
    stale.name = "by b"
    b.save(stale)  # overwrites the version that referenced c
    fresh = open_store()
    assert fresh.load(box_id).kids == []
    assert fresh.referrers(child.persistent_id) == []
    assert fresh.pack().removed == 1


def test_a_record_whose_references_cannot_be_read_blocks_only_pack(
        open_store: Callable[..., Store], caplog: pytest.LogCaptureFixture) -> None:
    store = open_store()
    lone = store.save(Node("lone"))
    bad = plant(store, 900, b"\x80\x04\x95truncated")
    store = open_store()
    assert store.remove(lone) == [lone]  # an unrelated record goes as ever
    with pytest.raises(StoreError, match=f"{bad}") as info:
        store.pack()
    assert "remove(id, force=True)" in str(info.value)
    assert not isinstance(info.value, LoadError)
    assert store.remove(bad, force=True) == [bad]
    assert store.pack().removed == 0


@pytest.mark.timeout(60)
def test_a_planted_id_bomb_is_read_at_once() -> None:
    """An ``Id`` made of a list nested with shared parts: made into a string, each
    level doubles it (40 levels: a terabyte). The reader makes nothing of it."""
    layers = [b"\x80\x02]q\x00"]
    for k in range(40):
        layers.append(b"(h%ch%clq%c" % (k, k, k + 1))
    bomb = b"cgc3libs.persistence.idfactory\nId\nh%cK\x01\x86R" % 40
    assert referenced_ids(b"".join(layers) + b"0" + bomb + b".", 7) == []
    # The same as a reference (a persistent id) is refused as not an id.
    with pytest.raises(LoadError, match="record 7: a reference in its payload is a Made"):
        referenced_ids(b"".join(layers) + b"0" + bomb + b"Q.", 7)


def test_a_load_racing_a_pack_is_a_conflict_to_retry(open_store: Callable[..., Store]) -> None:
    writer = open_store()
    box_id = writer.save(Node("x", [Node("c")]))
    reader = open_store()
    real_read = reader._read
    raced: list[int] = []

    def read_then_race(id_: Any) -> Any:
        record = real_read(id_)
        if str(id_) == str(box_id) and not raced:
            raced.append(1)  # another process drops the child and packs, right now
            other = open_store()
            box = other.load(box_id)
            box.kids = []
            other.save(box)
            assert other.pack().removed == 1
        return record

    reader._read = read_then_race  # type: ignore[method-assign]
    with pytest.raises(ConflictError) as info:
        reader.load(box_id)
    assert [str(i) for i in info.value.ids] == [str(box_id)]
    reader._read = real_read  # type: ignore[method-assign]
    assert reader.retry(lambda: reader.load(box_id)).kids == []


def test_a_force_removed_child_is_named_with_its_referrer(
        open_store: Callable[..., Store]) -> None:
    store = open_store()
    child = Node("c")
    box_id = store.save(Node("x", [child]))
    store.remove(child.persistent_id, force=True)
    with pytest.raises(LoadError) as info:
        open_store().load(box_id)
    assert not isinstance(info.value, ConflictError)
    assert f"record {box_id} references record {child.persistent_id}" in str(info.value)


def test_referencing_a_record_removed_in_the_same_transaction_is_refused(
        open_store: Callable[..., Store]) -> None:
    store = open_store()
    gone = Node("e")
    gone_id = store.save(gone)
    with pytest.raises(SaveError, match="removed earlier in this transaction"), \
            store.transaction():
        store.remove(gone_id)
        store.save(Node("z", [gone]))
    assert open_store().load(gone_id).name == "e"  # nothing of it was written


def test_cascade_sees_the_transactions_own_new_references(
        open_store: Callable[..., Store]) -> None:
    store = open_store()
    child = Node("c")
    box_id = store.save(Node("x", [child]))
    with store.transaction():
        keeper = Node("y", [child])
        store.save(keeper)
        assert store.remove(box_id, cascade=True) == [box_id]
    fresh = open_store()
    assert fresh.load(keeper.persistent_id).kids[0].name == "c"
    assert fresh.referrers(child.persistent_id) == [keeper.persistent_id]


def test_cascade_takes_children_that_reference_each_other(
        open_store: Callable[..., Store]) -> None:
    store = open_store()
    a, b = Node("a"), Node("b")
    a.kids.append(b)
    b.kids.append(a)
    top_id = store.save(Node("y", [a]))
    assert len(store.remove(top_id, cascade=True)) == 3
    assert open_store().list() == []


def test_a_large_pack_forgets_every_object_it_removed(open_store: Callable[..., Store]) -> None:
    store = open_store()
    box = Node("x", [Node(str(n)) for n in range(1200)])
    store.save(box)
    kids, box.kids = box.kids, []
    store.save(box)
    report = store.pack(batch_size=100)
    assert report.removed == 1200 and len(report.sample) == 1000
    with pytest.raises(NotFoundError):
        store.load(kids[-1].persistent_id)


def test_removing_a_child_of_a_damaged_record_is_refused(
        open_store: Callable[..., Store], backend: str) -> None:
    if backend == "file":
        pytest.skip("a damaged record file keeps its writer's index row and references")
    store = open_store()
    child = Node("c")
    box_id = store.save(Node("x", [child]))
    with store.engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {store._q['table']} SET data = :d, _checksum = NULL "
                             "WHERE id = :id"), {"d": b"\x80\x04\x95trunc", "id": int(box_id)})
    with pytest.raises(ReferencedError) as info:
        open_store().remove(child.persistent_id)
    assert info.value.referrers == (box_id,)


def test_pack_and_references_commands_create_nothing(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = tmp_path / "nx.db"
    for args in (["pack", f"sqlite:///{missing}"],
                 ["references", f"sqlite:///{missing}", "1"],
                 ["references", str(tmp_path / "nodir"), "Node.1"]):
        done = runner.invoke(app, args)
        assert done.exit_code == 1, done.output
    assert list(tmp_path.iterdir()) == []


def test_a_pickled_child_is_not_an_id() -> None:
    payload = pickle.dumps(Node("x", [Node("y")]))  # plain pickle: no persistent ids
    assert referenced_ids(payload) == []
