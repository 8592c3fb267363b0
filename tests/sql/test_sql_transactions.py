"""Transactions and optimistic conflict detection on the SQL backends.

What is checked here beyond the backend-agnostic contract: the rows and their
``version`` column after commits and rollbacks, that a rollback also restores
the versions the identity map remembers (so the next save does not conflict
with itself), and the ConflictError raised when two store instances write the
same record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sql_jobs import SQL_BACKENDS, Job, SqlTestJobRow, make_job

from typedstore import ConflictError, NotFoundError, SaveError, SqlStore, Store, TransactionError

OpenStore = Callable[..., Any]

pytestmark = pytest.mark.parametrize("backend", SQL_BACKENDS)


class Boom(Exception):
    """Raised on purpose inside transaction blocks."""


def stored_versions(store: SqlStore) -> dict[int, int]:
    """``id -> version`` of every row, read with SQLAlchemy Core (not through the store)."""
    t = store.table
    with store.engine.connect() as conn:
        return {int(i): int(v) for i, v in conn.execute(sa.select(t.c.id, t.c.version))}


def has_no_id(obj: Any) -> bool:
    return getattr(obj, "persistent_id", None) is None


# ---------------------------------------------------------------- commits


def test_saves_and_removes_commit_together(open_store: OpenStore) -> None:
    store = open_store()
    observer = open_store()
    old = Job("old", cores=1)
    old_id = store.save(old)
    gone_id = store.save(Job("gone"))

    with store.transaction():
        a = store.save(Job("a"))
        b = store.save(Job("b", child=Job("child")))
        old.cores = 2
        store.save(old)
        store.remove(gone_id)
        # The writer reads its own writes...
        assert set(store.list()) == {old_id, a, b, store.load(b).child.persistent_id}
        assert store.load(old_id).cores == 2
        # ...nobody else does before the commit.
        assert set(observer.list()) == {old_id, gone_id}
        assert open_store().load(old_id).cores == 1

    child = store.load(b).child.persistent_id
    assert set(observer.list()) == {old_id, a, b, child}
    fresh = open_store()
    assert fresh.load(old_id).cores == 2
    assert fresh.load(b).child.jobname == "child"
    with pytest.raises(NotFoundError):
        fresh.load(gone_id)
    assert stored_versions(store) == {old_id: 2, a: 1, b: 1, child: 1}


def test_rollback_restores_rows_ids_and_identity_map(open_store: OpenStore) -> None:
    store = open_store()
    kept = Job("kept", cores=1)
    kept_id = store.save(kept)
    removed = Job("removed")
    removed_id = store.save(removed)
    new_a = Job("a")
    new_b = Job("b", child=Job("child"))

    with pytest.raises(Boom), store.transaction():
        would_a = store.save(new_a)
        would_b = store.save(new_b)
        would_child = new_b.child.persistent_id
        kept.cores = 5
        store.save(kept)
        store.remove(removed_id)
        assert set(store.list()) == {kept_id, would_a, would_b, would_child}
        raise Boom

    # Nothing of the block in the database.
    assert stored_versions(store) == {kept_id: 1, removed_id: 1}
    fresh = open_store()
    assert set(fresh.list()) == {kept_id, removed_id}
    assert fresh.load(kept_id).cores == 1
    for id_ in (would_a, would_b, would_child):
        with pytest.raises(NotFoundError):
            fresh.load(id_)
    # The identity map is as before the block.
    for id_ in (would_a, would_b, would_child):
        with pytest.raises(NotFoundError):
            store.load(id_)
    assert store.load(removed_id) is removed
    # A record the block wrote is read again: load gives its stored state, not the
    # changes the rolled-back code made to the object (which the caller still holds).
    reread = store.load(kept_id)
    assert reread is not kept and reread.cores == 1
    # Objects' ids are as before the block.
    assert has_no_id(new_a) and has_no_id(new_b) and has_no_id(new_b.child)
    assert kept.persistent_id == kept_id
    assert removed.persistent_id == removed_id
    assert kept.changed is True  # its new state was never stored

    # The object keeps the version it was read at: saving it does not conflict.
    kept.cores = 7
    assert store.save(kept) == kept_id
    assert open_store().load(kept_id).cores == 7
    assert stored_versions(store)[kept_id] == 2
    # The objects of the rolled-back block can be saved for real.
    again = store.save(new_b)
    assert open_store().load(again).child.jobname == "child"


def test_object_loaded_inside_a_rolled_back_block_stays_the_loaded_object(
    open_store: OpenStore,
) -> None:
    id_ = open_store().save(Job("committed before"))
    store = open_store()
    with pytest.raises(Boom), store.transaction():
        loaded = store.load(id_)
        raise Boom
    assert store.load(id_) is loaded


def test_object_loaded_inside_a_rolled_back_block_keeps_its_version_check(
    open_store: OpenStore,
) -> None:
    id_ = open_store().save(Job("committed before"))
    store = open_store()
    with pytest.raises(Boom), store.transaction():
        loaded = store.load(id_)
        raise Boom
    other = open_store()
    theirs = other.load(id_)
    theirs.jobname = "changed elsewhere"
    other.save(theirs)
    loaded.jobname = "stale"
    with pytest.raises(ConflictError):
        store.save(loaded)
    assert open_store().load(id_).jobname == "changed elsewhere"


def test_nested_blocks_commit_with_the_outermost(open_store: OpenStore) -> None:
    store = open_store()
    observer = open_store()
    pre = store.save(Job("pre"))
    with store.transaction():
        a = store.save(Job("a"))
        with store.transaction():
            b = store.save(Job("b"))
            with store.transaction():
                store.remove(pre)
        assert set(store.list()) == {a, b}
        assert store.load(b).jobname == "b"
        assert set(observer.list()) == {pre}
    assert set(observer.list()) == {a, b}
    assert set(stored_versions(store)) == {a, b}


def test_caught_failure_of_an_inner_block_dooms_the_outer(open_store: OpenStore) -> None:
    store = open_store(row_model=SqlTestJobRow)
    pre_job = make_job("pre", cores=1)
    pre = store.save(pre_job)
    outer_job = make_job("outer", cores=2)
    after_job = make_job("after", cores=3)
    with pytest.raises(TransactionError), store.transaction():
        store.save(outer_job)
        with pytest.raises(SaveError), store.transaction():
            store.save(make_job("invalid", cores="many"))
        pre_job.requested_cores = 9
        store.save(pre_job)
        store.save(after_job)
    assert has_no_id(outer_job) and has_no_id(after_job)
    fresh = open_store(row_model=SqlTestJobRow)
    assert fresh.list() == [pre]
    assert fresh.load(pre).requested_cores == 1
    assert [r.cores for r in fresh.query()] == [1]
    # The store is usable afterwards and its version of pre is still right.
    assert store.save(pre_job) == pre
    assert open_store().load(pre).requested_cores == 9


# ---------------------------------------------------------------- save_many


def test_save_many_with_more_objects_than_an_id_block(open_store: OpenStore) -> None:
    store = open_store()
    observer = open_store()
    existing = Job("existing", cores=1)
    existing_id = store.save(existing)
    existing.cores = 2
    jobs = [Job(f"m{i}") for i in range(250)]
    ids = store.save_many([*jobs, existing])
    assert ids[-1] == existing_id
    assert len(set(ids)) == 251
    assert [j.persistent_id for j in jobs] == ids[:-1]
    assert set(observer.list()) == set(ids)
    versions = stored_versions(store)
    assert versions[existing_id] == 2
    assert {versions[i] for i in ids[:-1]} == {1}
    fresh = open_store()
    assert [fresh.load(i).jobname for i in ids[:-1]] == [j.jobname for j in jobs]
    assert fresh.load(existing_id).cores == 2


def test_save_many_is_atomic_on_a_validation_error(open_store: OpenStore) -> None:
    store = open_store(row_model=SqlTestJobRow)
    kept = make_job("kept", cores=1)
    kept_id = store.save(kept)
    kept.requested_cores = 4
    good = [make_job(f"good{i}", cores=i + 1) for i in range(5)]
    bad = make_job("bad", cores="many")
    with pytest.raises(SaveError) as info:
        store.save_many([good[0], kept, *good[1:3], bad, *good[3:]])
    assert info.value.field == "cores"
    assert all(has_no_id(j) for j in [*good, bad])
    fresh = open_store(row_model=SqlTestJobRow)
    assert fresh.list() == [kept_id]
    assert fresh.load(kept_id).requested_cores == 1
    assert fresh.query().count() == 1
    assert store.save_many([kept, *good])[0] == kept_id
    assert [r.cores for r in open_store(row_model=SqlTestJobRow).query()] == [4, 1, 2, 3, 4, 5]


# ---------------------------------------------------------------- conflicts


def test_second_writer_gets_a_conflict(open_store: OpenStore) -> None:
    id_ = open_store().save(Job("shared", cores=1))
    first, second = open_store(), open_store()
    mine, theirs = first.load(id_), second.load(id_)
    mine.cores = 2
    first.save(mine)

    theirs.cores = 3
    with pytest.raises(ConflictError) as info:
        second.save(theirs)
    error = info.value
    assert isinstance(error, SaveError)
    assert error.ids == (id_,)
    assert error.id == id_
    assert (error.expected, error.found) == (1, 2)
    assert str(id_) in str(error)
    assert theirs.persistent_id == id_
    assert theirs.changed is True
    assert open_store().load(id_).cores == 2
    with pytest.raises(ConflictError):  # still stale: still refused
        second.save(theirs)

    second.invalidate_cache()
    reloaded = second.load(id_)
    assert reloaded is not theirs
    assert reloaded.cores == 2
    reloaded.cores = 3
    assert second.save(reloaded) == id_
    assert open_store().load(id_).cores == 3
    assert stored_versions(second)[id_] == 3

    mine.cores = 4  # now the first store is the stale one
    with pytest.raises(ConflictError) as info:
        first.save(mine)
    assert (info.value.expected, info.value.found) == (2, 3)
    assert open_store().load(id_).cores == 3


def test_saving_a_record_removed_by_another_store_conflicts(open_store: OpenStore) -> None:
    id_ = open_store().save(Job("doomed"))
    remover, writer = open_store(), open_store()
    job = writer.load(id_)
    remover.remove(id_)
    job.jobname = "resurrected?"
    with pytest.raises(ConflictError) as info:
        writer.save(job)
    assert info.value.ids == (id_,)
    assert (info.value.expected, info.value.found) == (1, None)
    assert open_store().list() == []


def test_conflicting_child_fails_the_whole_container_save(open_store: OpenStore) -> None:
    creator = open_store()
    box_id = creator.save(Job("box", child=Job("child", cores=1)))
    child_id = creator.load(box_id).child.persistent_id
    first, second = open_store(), open_store()
    child = first.load(child_id)
    box = second.load(box_id)
    child.cores = 2
    first.save(child)

    box.jobname = "renamed box"
    box.child.cores = 3
    with pytest.raises(ConflictError) as info:
        second.save(box)
    assert info.value.ids == (child_id,)
    fresh = open_store()
    assert fresh.load(box_id).jobname == "box"
    assert fresh.load(child_id).cores == 2
    assert stored_versions(creator) == {box_id: 1, child_id: 2}


def test_conflict_inside_a_transaction_rolls_back_its_other_writes(
    open_store: OpenStore,
) -> None:
    id_ = open_store().save(Job("shared"))
    first, second = open_store(), open_store()
    theirs = second.load(id_)
    mine = first.load(id_)
    mine.jobname = "first"
    first.save(mine)
    extra = Job("extra")
    theirs.jobname = "second"
    with pytest.raises(ConflictError), second.transaction():
        second.save(extra)
        second.save(theirs)
    assert has_no_id(extra)
    assert open_store().list() == [id_]
    assert open_store().load(id_).jobname == "first"


def test_objects_from_a_query_carry_their_version(open_store: OpenStore) -> None:
    id_ = open_store().save(Job("queried", cores=1))
    first, second = open_store(), open_store()
    (theirs,) = second.query().objects()
    mine = first.load(id_)
    mine.cores = 2
    first.save(mine)
    theirs.cores = 3
    with pytest.raises(ConflictError):
        second.save(theirs)
    assert open_store().load(id_).cores == 2


def test_replace_overwrites_without_a_version_check(open_store: OpenStore) -> None:
    id_ = open_store().save(Job("shared", cores=1))
    first, second = open_store(), open_store()
    mine, theirs = first.load(id_), second.load(id_)
    mine.cores = 2
    first.save(mine)
    theirs.cores = 3
    second.replace(id_, theirs)
    assert open_store().load(id_).cores == 3
    assert stored_versions(second)[id_] == 3


def test_unrelated_stores_do_not_conflict(open_store: OpenStore) -> None:
    first, second = open_store(), open_store()
    a_id = first.save(Job("a"))
    b_id = second.save(Job("b"))
    a, b = second.load(a_id), first.load(b_id)
    a.jobname, b.jobname = "a2", "b2"
    second.save(a)
    first.save(b)
    fresh: Store = open_store()
    assert (fresh.load(a_id).jobname, fresh.load(b_id).jobname) == ("a2", "b2")
