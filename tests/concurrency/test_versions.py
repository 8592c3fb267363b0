"""No lost update on any path an object takes in or out of the identity map (issue 10).

Each test reads a record through one store object, lets a second writer (another
store object: another connection) change it, then saves through the first: the
save must raise ConflictError and write nothing. And after a conflict, "load it
again and reapply" must converge.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

import pytest

from typedstore import ConflictError, Persistable, Store


class Job(Persistable):
    def __init__(self, count: int = 0) -> None:
        self.count = count


class Box(Persistable):
    def __init__(self, child: Job) -> None:
        self.child = child


def bump_elsewhere(open_store: Callable[..., Store], id_: Any, to: int) -> None:
    other = open_store()
    job = other.load(id_)
    job.count = to
    other.save(job)


def assert_conflict_writes_nothing(store: Store, obj: Any, open_store: Callable[..., Store],
                                   id_: Any, stored: int) -> None:
    obj.count = -1
    with pytest.raises(ConflictError) as info:
        store.save(obj)
    assert str(info.value.ids[0]) == str(id_)
    assert open_store().load(id_).count == stored


def test_load_then_save(open_store: Callable[..., Store]) -> None:
    store = open_store()
    id_ = store.save(Job())
    job = open_store().load(id_)
    first = open_store()
    mine = first.load(id_)
    bump_elsewhere(open_store, id_, 5)
    assert_conflict_writes_nothing(first, mine, open_store, id_, 5)
    assert job is not mine


def test_new_object_saved_then_changed_elsewhere(open_store: Callable[..., Store]) -> None:
    store = open_store()
    job = Job()
    id_ = store.save(job)
    bump_elsewhere(open_store, id_, 3)
    assert_conflict_writes_nothing(store, job, open_store, id_, 3)


def test_replace_then_save(open_store: Callable[..., Store]) -> None:
    store = open_store()
    id_ = store.save(Job())
    replacement = Job(1)
    store.replace(id_, replacement)
    bump_elsewhere(open_store, id_, 7)
    assert_conflict_writes_nothing(store, replacement, open_store, id_, 7)


def test_copy_saved_then_saved_again(open_store: Callable[..., Store]) -> None:
    id_ = open_store().save(Job())
    store = open_store()
    copy = Job(2)
    copy.persistent_id = id_  # an object this store never read: overwrites (the rule)
    store.save(copy)
    assert open_store().load(id_).count == 2
    bump_elsewhere(open_store, id_, 9)
    assert_conflict_writes_nothing(store, copy, open_store, id_, 9)


def test_invalidate_cache_then_save(open_store: Callable[..., Store]) -> None:
    id_ = open_store().save(Job())
    store = open_store()
    job = store.load(id_)
    store.invalidate_cache()
    bump_elsewhere(open_store, id_, 4)
    assert_conflict_writes_nothing(store, job, open_store, id_, 4)


def test_query_objects_then_save(open_store: Callable[..., Store]) -> None:
    id_ = open_store().save(Job())
    store = open_store()
    (job,) = store.query().objects()
    bump_elsewhere(open_store, id_, 6)
    assert_conflict_writes_nothing(store, job, open_store, id_, 6)


def test_child_loaded_through_a_reference(open_store: Callable[..., Store]) -> None:
    box_id = open_store().save(Box(Job()))
    store = open_store()
    child = store.load(box_id).child
    bump_elsewhere(open_store, child.persistent_id, 8)
    assert_conflict_writes_nothing(store, child, open_store, child.persistent_id, 8)


def test_rolled_back_save_keeps_the_version_read(open_store: Callable[..., Store]) -> None:
    id_ = open_store().save(Job())
    store = open_store()
    job = store.load(id_)
    with pytest.raises(RuntimeError), store.transaction():
        job.count = 1
        store.save(job)
        raise RuntimeError("roll back")
    bump_elsewhere(open_store, id_, 2)
    assert_conflict_writes_nothing(store, job, open_store, id_, 2)


def test_after_a_conflict_load_gives_the_stored_state(open_store: Callable[..., Store]) -> None:
    id_ = open_store().save(Job())
    store = open_store()
    stale = store.load(id_)
    bump_elsewhere(open_store, id_, 10)
    assert_conflict_writes_nothing(store, stale, open_store, id_, 10)
    assert_conflict_writes_nothing(store, stale, open_store, id_, 10)  # still stale
    fresh = store.load(id_)
    assert fresh is not stale and fresh.count == 10
    fresh.count += 1
    store.save(fresh)
    assert open_store().load(id_).count == 11
    assert store.stats.conflicts == 2


def test_retry_converges(open_store: Callable[..., Store]) -> None:
    id_ = open_store().save(Job())
    store = open_store()
    store.load(id_)
    calls = []

    def increment() -> int:
        job = store.load(id_)
        if not calls:
            bump_elsewhere(open_store, id_, 100)  # someone else wins the first attempt
        calls.append(job.count)
        job.count += 1
        store.save(job)
        return int(job.count)

    assert store.retry(increment, attempts=3) == 101
    assert calls == [0, 100]
    assert (store.stats.conflicts, store.stats.retries) == (1, 1)


def _incrementer(url: str, id_: Any, times: int, queue: Any) -> None:
    from typedstore import make_store

    store = make_store(url)
    for _ in range(times):
        def increment() -> None:
            job = store.load(id_)
            job.count += 1
            store.save(job)

        store.retry(increment, attempts=200, max_backoff=0.05)
    queue.put((store.stats.conflicts, store.stats.retries))
    store.close()


@pytest.mark.slow
def test_processes_count_exactly_with_retry(store_url: str, open_store: Callable[..., Store]
                                            ) -> None:
    id_ = open_store().save(Job())
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_incrementer, args=(store_url, id_, 50, queue))
               for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert all(w.exitcode == 0 for w in workers), [w.exitcode for w in workers]
    stats = [queue.get(timeout=10) for _ in workers]
    assert open_store().load(id_).count == 200
    print(f"4 processes x 50 increments: 200; conflicts/retries per process: {stats}")


class Slotted:
    """A record that cannot be weakly referenced: the identity map holds it strongly."""

    __slots__ = ("count", "persistent_id")

    def __init__(self, count: int = 0) -> None:
        self.count = count


def bump_slotted(open_store: Callable[..., Store], id_: Any, to: int) -> None:
    other = open_store()
    obj = other.load(id_)
    obj.count = to
    other.save(obj)


@pytest.mark.parametrize("leave", ["conflict", "invalidate_cache"])
def test_object_without_weak_references_keeps_its_version(
        open_store: Callable[..., Store], leave: str) -> None:
    """An object the map must hold strongly keeps the version it was read at
    after it leaves the map, as any other: saving it stale is a conflict."""
    id_ = open_store().save(Slotted())
    store = open_store()
    obj = store.load(id_)
    bump_slotted(open_store, id_, 3)
    if leave == "conflict":
        obj.count = -1
        with pytest.raises(ConflictError):
            store.save(obj)  # evicts it
    else:
        store.invalidate_cache()
    obj.count = -2
    with pytest.raises(ConflictError):
        store.save(obj)
    assert open_store().load(id_).count == 3
    fresh = store.load(id_)
    assert fresh is not obj and fresh.count == 3
    fresh.count = 4
    store.save(fresh)
    assert open_store().load(id_).count == 4


def test_snapshot_rows_do_not_bring_back_what_the_store_changed(
        open_store: Callable[..., Store]) -> None:
    """A query's rows are a snapshot: records this store removes or replaces
    while the query is being read come from the store's current state, never
    from the older rows (which would map a removed record, or an old version,
    over what the store wrote)."""
    import gc

    from typedstore.defaults import STREAM_BATCH_SIZE

    store = open_store()
    count = STREAM_BATCH_SIZE + 20
    with store.transaction():
        ids = [store.save(Job(n)) for n in range(count)]
    store.invalidate_cache()
    removed, replaced = ids[-5], ids[-4]
    objects = iter(store.query().objects())
    first = next(objects)  # the snapshot is taken; the first batch is loaded
    store.remove(removed)
    store.replace(replaced, Job(1000))
    gc.collect()  # the replacing object leaves the map with its last reference
    rest = [first, *objects]
    by_id = {str(obj.persistent_id): obj for obj in rest}
    assert str(removed) not in by_id
    assert by_id[str(replaced)].count == 1000
    assert len(rest) == count - 1
    with pytest.raises(KeyError):
        store.load(removed)
    again = store.load(replaced)
    assert again.count == 1000
    again.count = 1001
    store.save(again)  # the version the store wrote: no conflict
    assert open_store().load(replaced).count == 1001


@pytest.mark.parametrize("copy_it", ["deepcopy", "copy", "pickle", "same object"])
def test_copies_and_other_store_objects_keep_the_version(
        open_store: Callable[..., Store], copy_it: str) -> None:
    """A copy of a loaded object (copy, deepcopy, a pickle round trip), or the
    object itself saved through another store object on the same location,
    is checked against the version it was read at: never a blind write."""
    import copy
    import pickle

    id_ = open_store().save(Job())
    first = open_store()
    mine = first.load(id_)
    bump_elsewhere(open_store, id_, 111)
    twin = {"deepcopy": copy.deepcopy, "copy": copy.copy,
            "pickle": lambda o: pickle.loads(pickle.dumps(o)),
            "same object": lambda o: o}[copy_it](mine)
    through = open_store()  # a store object that never saw it
    assert_conflict_writes_nothing(through, twin, open_store, id_, 111)
    assert_conflict_writes_nothing(first, twin, open_store, id_, 111)


def test_the_stamp_stays_out_of_records(open_store: Callable[..., Store]) -> None:
    import pickletools

    store = open_store()
    id_ = store.save(Job(5))
    job = store.load(id_)
    job.count = 6
    store.save(job)
    from typedstore.serialization import VERSION_STAMP, dumps

    payload = dumps(job, lambda child: None)
    assert VERSION_STAMP.encode() not in payload
    assert VERSION_STAMP in vars(job)  # on the object, for its copies
    import io

    pickletools.dis(payload, out=io.StringIO())  # a valid pickle
