"""The contract every store backend must pass (GC3Pie's ``Store`` API plus transactions).

Backend-agnostic: ids are opaque (file stores issue ``"Job.3"`` strings, SQL stores
integers), nothing here touches the files or tables behind a store, and a "fresh
instance" is always another store opened on the same URL with ``open_store()``.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from typing import Any

import pytest

from typedstore import (
    LoadError,
    NotFoundError,
    Persistable,
    ReferencedError,
    SaveError,
    Store,
    StoreError,
    TransactionError,
)

OpenStore = Callable[..., Store]


class Job(Persistable):
    """A Persistable with arbitrary public attributes."""

    def __init__(self, name: str = "", **attrs: Any) -> None:
        self.name = name
        for key, value in attrs.items():
            setattr(self, key, value)


class Plain:
    """Not a Persistable, but it accepts attributes (so the store sets ``persistent_id``)."""

    def __init__(self, value: Any) -> None:
        self.value = value


class Boom(Exception):
    """Raised on purpose inside transaction blocks."""


def vanished_id(store: Store) -> Any:
    """An id the store issued once and no longer holds."""
    id_ = store.save(Job("short-lived"))
    store.remove(id_)
    return id_


def listed(store: Store) -> set[Any]:
    ids = store.list()
    assert len(ids) == len(set(ids)), f"list() repeats ids: {ids!r}"
    return set(ids)


def has_no_id(obj: Any) -> bool:
    return getattr(obj, "persistent_id", None) is None


# ---------------------------------------------------------------- save and load


def test_empty_store_lists_nothing(store: Store) -> None:
    assert store.list() == []


def test_save_returns_id_and_sets_persistent_id(store: Store) -> None:
    job = Job("first")
    id_ = store.save(job)
    assert id_ is not None
    assert job.persistent_id == id_
    assert listed(store) == {id_}


def test_save_sets_persistent_id_on_plain_objects(store: Store, open_store: OpenStore) -> None:
    obj = Plain([1, 2])
    id_ = store.save(obj)
    assert obj.persistent_id == id_
    loaded = open_store().load(id_)
    assert type(loaded) is Plain
    assert loaded.value == [1, 2]
    assert loaded.persistent_id == id_


def test_loaded_object_carries_its_id(store: Store, open_store: OpenStore) -> None:
    id_ = store.save(Job("a", cores=4))
    loaded = open_store().load(id_)
    assert isinstance(loaded, Job)
    assert (loaded.name, loaded.cores) == ("a", 4)
    assert loaded.persistent_id == id_


def test_saving_again_keeps_id_and_stores_new_state(store: Store, open_store: OpenStore) -> None:
    job = Job("v1", cores=1)
    id_ = store.save(job)
    job.name = "v2"
    job.cores = 8
    assert store.save(job) == id_
    assert job.persistent_id == id_
    assert listed(store) == {id_}
    loaded = open_store().load(id_)
    assert (loaded.name, loaded.cores) == ("v2", 8)


def test_saving_a_loaded_object_keeps_its_id(store: Store, open_store: OpenStore) -> None:
    id_ = store.save(Job("v1"))
    other = open_store()
    loaded = other.load(id_)
    loaded.name = "v2"
    assert other.save(loaded) == id_
    assert listed(other) == {id_}
    assert open_store().load(id_).name == "v2"


def test_load_twice_gives_same_object(store: Store, open_store: OpenStore) -> None:
    id_ = store.save(Job("same"))
    assert store.load(id_) is store.load(id_)
    fresh = open_store()
    first = fresh.load(id_)
    assert fresh.load(id_) is first
    assert first is not store.load(id_)


def test_load_after_save_gives_the_saved_object(store: Store) -> None:
    job = Job("kept")
    id_ = store.save(job)
    assert store.load(id_) is job


def test_invalidate_cache_makes_next_load_fresh(store: Store) -> None:
    job = Job("cached", cores=2)
    id_ = store.save(job)
    store.invalidate_cache()
    reloaded = store.load(id_)
    assert reloaded is not job
    assert (reloaded.name, reloaded.cores) == ("cached", 2)
    assert store.load(id_) is reloaded
    store.invalidate_cache()
    assert store.load(id_) is not reloaded


def test_invalidate_cache_reads_changes_made_elsewhere(
    store: Store, open_store: OpenStore
) -> None:
    id_ = store.save(Job("old"))
    assert store.load(id_).name == "old"
    other = open_store()
    changed = other.load(id_)
    changed.name = "new"
    other.save(changed)
    store.invalidate_cache()
    assert store.load(id_).name == "new"


# ---------------------------------------------------------------- missing ids


def test_load_of_removed_id_raises_not_found(store: Store) -> None:
    missing = vanished_id(store)
    with pytest.raises(NotFoundError) as info:
        store.load(missing)
    assert isinstance(info.value, LoadError)
    assert isinstance(info.value, KeyError)
    assert isinstance(info.value, StoreError)
    assert info.value.id == missing
    assert str(missing) in str(info.value)


def test_load_of_never_issued_id_raises_not_found(store: Store) -> None:
    store.save(Job("present"))
    never_saved = store.idfactory.new(Job())
    with pytest.raises(LoadError):
        store.load(never_saved)
    with pytest.raises(KeyError):
        store.load(never_saved)


def test_missing_id_is_missing_in_fresh_instance(store: Store, open_store: OpenStore) -> None:
    missing = vanished_id(store)
    with pytest.raises(NotFoundError):
        open_store().load(missing)


# ---------------------------------------------------------------- replace


def test_replace_overwrites_record(store: Store, open_store: OpenStore) -> None:
    id_ = store.save(Job("original", cores=1))
    replacement = Job("replacement", cores=16)
    store.replace(id_, replacement)
    assert replacement.persistent_id == id_
    assert listed(store) == {id_}
    assert store.load(id_) is replacement
    loaded = open_store().load(id_)
    assert (loaded.name, loaded.cores) == ("replacement", 16)


def test_replace_with_non_persistable_value(store: Store, open_store: OpenStore) -> None:
    id_ = store.save(Job("was a job"))
    store.replace(id_, {"now": "a dict"})
    assert open_store().load(id_) == {"now": "a dict"}


def test_replace_of_missing_id_raises_and_writes_nothing(
    store: Store, open_store: OpenStore
) -> None:
    kept = store.save(Job("kept"))
    missing = vanished_id(store)
    obj = Job("never stored")
    with pytest.raises(NotFoundError):
        store.replace(missing, obj)
    assert has_no_id(obj)
    assert listed(store) == {kept}
    assert listed(open_store()) == {kept}
    with pytest.raises(NotFoundError):
        store.load(missing)


# ---------------------------------------------------------------- remove and list


def test_remove_deletes_record(store: Store, open_store: OpenStore) -> None:
    keep = store.save(Job("keep"))
    gone = store.save(Job("gone"))
    store.remove(gone)
    assert listed(store) == {keep}
    with pytest.raises(NotFoundError):
        store.load(gone)
    fresh = open_store()
    assert listed(fresh) == {keep}
    with pytest.raises(NotFoundError):
        fresh.load(gone)
    assert fresh.load(keep).name == "keep"


def test_remove_of_missing_id_raises_not_found(store: Store) -> None:
    keep = store.save(Job("keep"))
    missing = vanished_id(store)
    with pytest.raises(NotFoundError):
        store.remove(missing)
    with pytest.raises(KeyError):
        store.remove(missing)
    assert listed(store) == {keep}


def test_list_returns_exactly_the_saved_ids(store: Store, open_store: OpenStore) -> None:
    ids = [store.save(Job(f"j{i}")) for i in range(5)]
    ids.append(store.save({"a": "dict"}))
    ids.append(store.save([1, 2, 3]))
    ids.append(store.save(Plain("x")))
    assert len(set(ids)) == len(ids)
    assert listed(store) == set(ids)
    assert listed(open_store()) == set(ids)


def test_list_ids_load(store: Store, open_store: OpenStore) -> None:
    names = {f"n{i}" for i in range(4)}
    for name in names:
        store.save(Job(name))
    fresh = open_store()
    assert {fresh.load(id_).name for id_ in fresh.list()} == names


def test_ids_are_never_reused(store: Store, open_store: OpenStore) -> None:
    seen = [store.save(Job("a")), store.save(Job("b"))]
    store.remove(seen[-1])
    seen.append(store.save(Job("c")))
    assert len(set(seen)) == len(seen)
    store.remove(seen[0])
    store.remove(seen[2])
    assert store.list() == []
    reopened = open_store()
    again = [reopened.save(Job("d")), reopened.save(Job("e"))]
    assert not set(again) & set(seen)
    assert len(set(again)) == 2
    reopened.remove(again[-1])
    third = open_store().save(Job("f"))
    assert third not in set(seen) | set(again)


def test_two_instances_never_issue_the_same_id(open_store: OpenStore) -> None:
    first, second = open_store(), open_store()
    ids = []
    for i in range(5):
        ids.append(first.save(Job(f"a{i}")))
        ids.append(second.save(Job(f"b{i}")))
    assert len(set(ids)) == len(ids)
    assert listed(open_store()) == set(ids)


# ---------------------------------------------------------------- external references


def test_shared_child_is_stored_once(store: Store, open_store: OpenStore) -> None:
    child = Job("child")
    box = Job("box", first=child, second=child)
    box_id = store.save(box)
    child_id = child.persistent_id
    assert child_id is not None
    assert child_id != box_id
    assert listed(store) == {box_id, child_id}

    fresh = open_store()
    loaded = fresh.load(box_id)
    assert loaded.first is loaded.second
    assert loaded.first.name == "child"
    assert loaded.first.persistent_id == child_id
    assert fresh.load(child_id) is loaded.first


def test_child_loaded_first_is_shared_by_container(store: Store, open_store: OpenStore) -> None:
    child = Job("child")
    box_id = store.save(Job("box", items=[child, child]))
    fresh = open_store()
    loaded_child = fresh.load(child.persistent_id)
    box = fresh.load(box_id)
    assert box.items[0] is loaded_child
    assert box.items[1] is loaded_child


def test_child_shared_by_two_containers(store: Store, open_store: OpenStore) -> None:
    child = Job("shared")
    left_id = store.save(Job("left", child=child))
    right_id = store.save(Job("right", child=child))
    assert listed(store) == {left_id, right_id, child.persistent_id}
    fresh = open_store()
    assert fresh.load(left_id).child is fresh.load(right_id).child


def test_plain_container_references_children(store: Store, open_store: OpenStore) -> None:
    child = Job("in a dict")
    holder = {"a": child, "b": [child], "n": 3}
    holder_id = store.save(holder)
    assert listed(store) == {holder_id, child.persistent_id}
    loaded = open_store().load(holder_id)
    assert loaded["a"] is loaded["b"][0]
    assert loaded["a"].name == "in a dict"
    assert loaded["n"] == 3


def test_saved_plain_object_becomes_external_reference(
    store: Store, open_store: OpenStore
) -> None:
    # Any object with a persistent_id is an external reference, as in GC3Pie.
    inner = Plain("inner")
    inner_id = store.save(inner)
    box_id = store.save(Job("box", one=inner, two=inner))
    assert listed(store) == {inner_id, box_id}
    fresh = open_store()
    box = fresh.load(box_id)
    assert box.one is box.two
    assert box.one is fresh.load(inner_id)


def test_two_cycle_restores_identity(store: Store, open_store: OpenStore) -> None:
    a, b = Job("a"), Job("b")
    a.peer = b
    b.peer = a
    a_id = store.save(a)
    b_id = b.persistent_id
    assert listed(store) == {a_id, b_id}

    fresh = open_store()
    loaded_a = fresh.load(a_id)
    assert loaded_a.peer.name == "b"
    assert loaded_a.peer.peer is loaded_a
    assert fresh.load(b_id) is loaded_a.peer

    other = open_store()
    loaded_b = other.load(b_id)
    assert loaded_b.peer.peer is loaded_b
    assert other.load(a_id) is loaded_b.peer


def test_three_cycle_restores_identity(store: Store, open_store: OpenStore) -> None:
    a, b, c = Job("a"), Job("b"), Job("c")
    a.next, b.next, c.next = b, c, a
    store.save(a)
    fresh = open_store()
    loaded = fresh.load(c.persistent_id)
    assert loaded.name == "c"
    assert loaded.next.next.next is loaded
    assert [loaded.next.name, loaded.next.next.name] == ["a", "b"]


def test_self_reference_restores_identity(store: Store, open_store: OpenStore) -> None:
    job = Job("narcissus")
    job.me = job
    id_ = store.save(job)
    assert listed(store) == {id_}
    loaded = open_store().load(id_)
    assert loaded.me is loaded


def test_long_chain_of_references(store: Store, open_store: OpenStore) -> None:
    length = 200
    head = Job("0")
    node = head
    for i in range(1, length):
        node.next = Job(str(i))
        node = node.next
    id_ = store.save(head)
    assert len(listed(store)) == length
    node = open_store().load(id_)
    names = [node.name]
    while hasattr(node, "next"):
        node = node.next
        names.append(node.name)
    assert names == [str(i) for i in range(length)]


def test_load_of_container_with_removed_child_raises_load_error(
    store: Store, open_store: OpenStore
) -> None:
    child = Job("child")
    box_id = store.save(Job("box", child=child))
    # Refused while the box references it (reference tracking), removed by force.
    with pytest.raises(ReferencedError) as refused:
        store.remove(child.persistent_id)
    assert refused.value.referrers == (box_id,)
    assert store.load(child.persistent_id) is child
    assert store.remove(child.persistent_id, force=True) == [child.persistent_id]
    with pytest.raises(LoadError) as info:
        open_store().load(box_id)
    # The container exists: "not found" (a KeyError) would be misleading.
    assert not isinstance(info.value, KeyError)
    assert str(child.persistent_id) in str(info.value)


# ---------------------------------------------------------------- changed flag


def test_changed_flag_tracks_public_assignments(store: Store, open_store: OpenStore) -> None:
    job = Job("fresh")
    assert job.changed is True
    store.save(job)
    assert job.changed is False
    job._scratch = 1  # private names do not count
    assert job.changed is False
    job.name = "edited"
    assert job.changed is True
    store.save(job)
    assert job.changed is False
    assert open_store().load(job.persistent_id).changed is False


def test_unchanged_child_is_not_rewritten(store: Store, open_store: OpenStore) -> None:
    child = Job("child", items=[1])
    parent = Job("parent", child=child)
    store.save(parent)
    child.items.append(2)  # in place: the flag stays down
    assert child.changed is False
    store.save(parent)
    assert open_store().load(child.persistent_id).items == [1]


def test_changed_child_is_rewritten_with_parent(store: Store, open_store: OpenStore) -> None:
    child = Job("child", items=[1])
    parent = Job("parent", child=child)
    store.save(parent)
    child_id = child.persistent_id
    child.items.append(2)
    child.changed = True
    store.save(parent)
    assert child.persistent_id == child_id
    assert child.changed is False
    assert open_store().load(child_id).items == [1, 2]
    child.name = "renamed"  # assignment raises the flag by itself
    store.save(parent)
    loaded = open_store().load(parent.persistent_id)
    assert loaded.child.name == "renamed"
    assert loaded.child.items == [1, 2]


def test_new_child_of_saved_parent_is_saved(store: Store, open_store: OpenStore) -> None:
    parent = Job("parent")
    parent_id = store.save(parent)
    parent.child = Job("late child")
    store.save(parent)
    assert parent.child.persistent_id is not None
    assert listed(store) == {parent_id, parent.child.persistent_id}
    assert open_store().load(parent_id).child.name == "late child"


# ---------------------------------------------------------------- equality


def test_persistable_equality_is_by_persistent_id(store: Store, open_store: OpenStore) -> None:
    a, b = Job("same name"), Job("same name")
    assert a == a
    assert a != b  # unsaved: equal only to themselves
    a_id, _ = store.save(a), store.save(b)
    assert a != b
    copy = open_store().load(a_id)
    assert copy is not a
    assert copy == a
    assert (copy != a) is False
    assert copy != b


def test_persistable_hash_survives_save(store: Store) -> None:
    job = Job("hashed")
    before = hash(job)
    bag = {job}
    store.save(job)
    assert hash(job) == before
    assert job in bag


# ---------------------------------------------------------------- values without attributes


@pytest.mark.parametrize(
    "value",
    [{"a": 1, "b": [2, 3]}, 42, [1, "two", 3.0], "a string", (1, ("nested",)), 2.5, None],
    ids=["dict", "int", "list", "str", "tuple", "float", "None"],
)
def test_values_without_attributes_round_trip(
    store: Store, open_store: OpenStore, value: Any
) -> None:
    id_ = store.save(value)
    assert id_ in listed(store)
    assert store.load(id_) == value
    assert open_store().load(id_) == value


def test_each_save_of_a_dict_makes_a_new_record(store: Store, open_store: OpenStore) -> None:
    value = {"k": "v"}
    first = store.save(value)
    second = store.save(value)
    assert first != second
    assert listed(store) == {first, second}
    fresh = open_store()
    assert fresh.load(first) == fresh.load(second) == value


# ---------------------------------------------------------------- transactions


def test_transaction_commits_saves_together(store: Store, open_store: OpenStore) -> None:
    observer = open_store()
    with store.transaction():
        ids = [store.save(Job(f"t{i}")) for i in range(3)]
        ids.append(store.save({"raw": True}))
        assert listed(store) == set(ids)  # the writer sees its own writes
        assert not listed(observer) & set(ids)  # nobody else does before the commit
    assert listed(observer) == set(ids)
    fresh = open_store()
    assert [fresh.load(i).name for i in ids[:3]] == ["t0", "t1", "t2"]


def test_transaction_returns_the_store(store: Store) -> None:
    with store.transaction() as txn:
        assert txn is store


def test_exception_rolls_back_everything(store: Store, open_store: OpenStore) -> None:
    old = Job("old", cores=1)
    old_id = store.save(old)
    doomed_id = store.save(Job("doomed"))
    before = listed(store)

    new_a, new_b, child = Job("a"), Job("b"), Job("child")
    new_b.child = child
    error = Boom("abort")
    with pytest.raises(Boom) as info, store.transaction():
        would_be = [store.save(new_a), store.save(new_b)]
        old.cores = 99
        store.save(old)
        store.remove(doomed_id)
        raise error
    assert info.value is error

    assert listed(store) == before
    for obj in (new_a, new_b, child):
        assert has_no_id(obj)
        assert obj.changed is True
    for id_ in would_be:
        with pytest.raises(NotFoundError):
            store.load(id_)
    assert old.persistent_id == old_id
    assert old.changed is True  # its new state was never stored

    fresh = open_store()
    assert listed(fresh) == before
    assert fresh.load(old_id).cores == 1
    assert fresh.load(doomed_id).name == "doomed"
    for id_ in would_be:
        with pytest.raises(NotFoundError):
            fresh.load(id_)


def test_store_works_after_rollback(store: Store, open_store: OpenStore) -> None:
    job = Job("retry")
    with pytest.raises(Boom), store.transaction():
        rolled_back = store.save(job)
        raise Boom
    id_ = store.save(job)
    assert job.persistent_id == id_
    assert listed(open_store()) == {id_}
    if id_ != rolled_back:
        with pytest.raises(NotFoundError):
            store.load(rolled_back)


def test_nested_transactions_join(store: Store, open_store: OpenStore) -> None:
    observer = open_store()
    with store.transaction():
        outer = store.save(Job("outer"))
        with store.transaction():
            inner = store.save(Job("inner"))
        assert not listed(observer) & {outer, inner}  # the inner block did not commit
    assert listed(observer) == {outer, inner}


def test_failure_after_inner_block_rolls_back_inner_saves(
    store: Store, open_store: OpenStore
) -> None:
    job = Job("inner")
    with pytest.raises(Boom), store.transaction():
        with store.transaction():
            inner = store.save(job)
        raise Boom
    assert store.list() == []
    assert open_store().list() == []
    assert has_no_id(job)
    with pytest.raises(NotFoundError):
        store.load(inner)


def test_failed_inner_block_dooms_outer(store: Store, open_store: OpenStore) -> None:
    outer_job = Job("outer")
    with pytest.raises(TransactionError), store.transaction():
        store.save(outer_job)
        with pytest.raises(Boom), store.transaction():
            store.save(Job("inner"))
            raise Boom
    assert store.list() == []
    assert open_store().list() == []
    assert has_no_id(outer_job)


def test_second_save_in_transaction_stores_latest_state(
    store: Store, open_store: OpenStore
) -> None:
    job = Job("v1")
    with store.transaction():
        id_ = store.save(job)
        job.name = "v2"
        assert store.save(job) == id_
    assert open_store().load(id_).name == "v2"


def test_child_changed_after_its_save_in_transaction_is_rewritten(
    store: Store, open_store: OpenStore
) -> None:
    child = Job("child v1")
    parent = Job("parent", child=child)
    with store.transaction():
        store.save(child)
        child.name = "child v2"
        store.save(parent)
    assert open_store().load(parent.persistent_id).child.name == "child v2"


def test_save_many(store: Store, open_store: OpenStore) -> None:
    saved = Job("already saved")
    saved_id = store.save(saved)
    objs = [Job("x"), saved, {"plain": 1}, Job("y")]
    ids = store.save_many(objs)
    assert len(ids) == 4
    assert ids[1] == saved_id
    assert len(set(ids)) == 4
    assert [objs[0].persistent_id, objs[3].persistent_id] == [ids[0], ids[3]]
    assert listed(store) == set(ids)
    fresh = open_store()
    assert fresh.load(ids[0]).name == "x"
    assert fresh.load(ids[2]) == {"plain": 1}
    assert fresh.load(ids[3]).name == "y"


def test_save_many_is_atomic(store: Store, open_store: OpenStore) -> None:
    good = Job("good")
    bad = Job("bad", fn=lambda: None)
    with pytest.raises(SaveError):
        store.save_many([good, bad])
    assert store.list() == []
    assert open_store().list() == []
    assert has_no_id(good)


def test_save_many_of_nothing(store: Store) -> None:
    assert store.save_many([]) == []
    assert store.list() == []


# ---------------------------------------------------------------- unpicklable objects


def _lambda() -> Any:
    return lambda: 1


def _open_file() -> Any:
    return open(os.devnull)


def _lock() -> Any:
    return threading.Lock()


@pytest.mark.parametrize("make_bad", [_lambda, _open_file, _lock], ids=["lambda", "file", "lock"])
def test_unpicklable_object_raises_save_error(
    store: Store, open_store: OpenStore, make_bad: Callable[[], Any]
) -> None:
    kept = store.save(Job("kept"))
    job = Job("bad", payload=make_bad())
    with pytest.raises(SaveError) as info:
        store.save(job)
    error = info.value
    assert error.id is not None
    assert str(error.id) in str(error)
    assert has_no_id(job)
    assert listed(store) == {kept}
    assert listed(open_store()) == {kept}
    with pytest.raises(NotFoundError):
        store.load(error.id)


def test_unpicklable_object_saved_before_keeps_old_record(
    store: Store, open_store: OpenStore
) -> None:
    job = Job("good", cores=2)
    id_ = store.save(job)
    job.callback = lambda: None
    job.cores = 4
    with pytest.raises(SaveError) as info:
        store.save(job)
    assert info.value.id == id_
    assert str(id_) in str(info.value)
    assert job.persistent_id == id_
    assert job.changed is True
    loaded = open_store().load(id_)
    assert loaded.cores == 2
    assert not hasattr(loaded, "callback")


def test_unpicklable_container_does_not_save_its_children(
    store: Store, open_store: OpenStore
) -> None:
    child = Job("fine child")
    box = Job("box", child=child, hook=lambda: None)
    with pytest.raises(SaveError):
        store.save(box)
    assert has_no_id(child)
    assert has_no_id(box)
    assert store.list() == []
    assert open_store().list() == []


def test_unpicklable_child_fails_the_whole_save(store: Store, open_store: OpenStore) -> None:
    bad_child = Job("bad child", hook=lambda: None)
    box = Job("box", child=bad_child)
    with pytest.raises(SaveError):
        store.save(box)
    assert has_no_id(box)
    assert has_no_id(bad_child)
    assert open_store().list() == []


# ---------------------------------------------------------------- fork support


def test_pre_fork_and_post_fork_keep_store_working(store: Store, open_store: OpenStore) -> None:
    before = store.save(Job("before"))
    store.pre_fork()
    store.post_fork()
    after = store.save(Job("after"))
    assert listed(store) == {before, after}
    assert store.load(before).name == "before"
    store.invalidate_cache()
    assert store.load(after).name == "after"
    assert listed(open_store()) == {before, after}


def _save_in_forked_child(store: Store, queue: Any) -> None:
    store.post_fork()
    job = Job("from child")
    store.save(job)
    queue.put(job.persistent_id)


def test_store_survives_a_fork(
    store: Store, open_store: OpenStore, backend: str, request: pytest.FixtureRequest
) -> None:
    parent_id = store.save(Job("from parent"))
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    store.pre_fork()
    child = ctx.Process(target=_save_in_forked_child, args=(store, queue))
    child.start()
    store.post_fork()
    child.join(timeout=60)
    assert child.exitcode == 0
    child_id = queue.get(timeout=10)
    assert child_id != parent_id
    assert listed(store) == {parent_id, child_id}
    assert store.load(child_id).name == "from child"
    again = store.save(Job("parent again"))
    assert again not in {parent_id, child_id}
    assert listed(open_store()) == {parent_id, child_id, again}
