"""Ids of the SQL store: unique across processes, reservable, never reused.

The multi-process tests run real child processes (``python -c``) that import
:mod:`sql_jobs` and save into the test's store at the same moment: each child
reports ``ready`` once imported and starts saving when the parent writes ``go``
to every child.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sql_jobs import SQL_BACKENDS, Job, Savers, check_saved, pg_backend_pid, pg_wait_for_blocked

from typedstore import IdFactory, IntId, make_store

OpenStore = Callable[..., Any]

PROCESSES = 3
SAVES = 100


@pytest.mark.slow
@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_concurrent_processes_get_distinct_ids(open_store: OpenStore, store_url: str) -> None:
    open_store()  # the table exists before the savers start
    with Savers(store_url, PROCESSES, SAVES) as savers:
        savers.go()
        saved = savers.finish()
    check_saved(open_store(), saved, PROCESSES, SAVES)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"])
def test_concurrent_processes_creating_a_sqlite_store(
    open_store: OpenStore, store_url: str
) -> None:
    with Savers(store_url, PROCESSES, 20) as savers:
        savers.go()  # every child finds no table and creates it
        saved = savers.finish()
    check_saved(open_store(), saved, PROCESSES, 20)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgresql"])
def test_two_processes_creating_a_postgresql_store(
    open_store: OpenStore, store_url: str, pg_base_url: str
) -> None:
    """Force the race: the first creator is held (by a lock on the id counter table,
    which its migration reads last) until the second has started creating too."""
    make_store(store_url + "_other").close()  # the per-run schema has the counter table
    engine = sa.create_engine(pg_base_url)
    try:
        with Savers(store_url, 2, 5) as savers, engine.connect() as holder:
            holder.exec_driver_sql("LOCK TABLE typedstore_ids IN ACCESS EXCLUSIVE MODE")
            savers.go()
            # First creator: blocked by us; second: blocked by the first's new tables.
            pg_wait_for_blocked(engine, pg_backend_pid(holder), depth=2)
            holder.rollback()
            saved = savers.finish()
    finally:
        engine.dispose()
    check_saved(open_store(), saved, 2, 5)


# ---------------------------------------------------------------- reserve


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_reserved_ids_are_used_by_the_next_saves(open_store: OpenStore) -> None:
    store, other = open_store(), open_store()
    store.idfactory.reserve(5)
    other_ids = [other.save(Job(f"other{i}")) for i in range(3)]
    ids = [store.save(Job(f"reserved{i}")) for i in range(5)]
    assert ids == list(range(ids[0], ids[0] + 5))  # the reservation: consecutive
    assert not set(ids) & set(other_ids)
    after = store.save(Job("after"))
    every = [*ids, *other_ids, after]
    assert len(set(every)) == len(every)
    assert open_store().list() == sorted(every)


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_reserving_more_than_a_block(open_store: OpenStore) -> None:
    store, other = open_store(), open_store()
    store.idfactory.reserve(250)
    ids = [store.save(Job(f"r{i}")) for i in range(250)]
    interleaved = other.save(Job("other"))
    ids.append(store.save(Job("one more")))
    assert len(set(ids)) == 251
    assert interleaved not in ids
    assert all(isinstance(i, IntId) for i in ids)
    assert len(open_store().list()) == 252


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_explicit_intid_factory_uses_the_database_counter(open_store: OpenStore) -> None:
    factory = IdFactory(id_class=IntId)
    first, second = open_store(idfactory=factory), open_store(idfactory=factory)
    ids = [first.save(Job("a")), second.save(Job("b")), first.save(Job("c"))]
    assert len(set(ids)) == 3
    assert open_store().list() == sorted(ids)


# ---------------------------------------------------------------- never reused


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_removed_ids_are_not_reissued_after_reopening(
    open_store: OpenStore, store_url: str
) -> None:
    store = make_store(store_url)
    issued = [store.save(Job(f"j{i}")) for i in range(3)]
    store.remove(issued[-1])  # the largest: a max(id)+1 scheme would reissue it
    store.close()

    reopened = make_store(store_url)
    new = reopened.save(Job("new"))
    assert new > max(issued)
    issued.append(new)
    for id_ in reopened.list():
        reopened.remove(id_)
    assert reopened.list() == []
    reopened.close()

    last = open_store()
    newest = last.save(Job("newest"))
    assert newest > max(issued)
    assert last.list() == [newest]


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_ids_rolled_back_in_a_transaction_are_never_stored(open_store: OpenStore) -> None:
    store = open_store()
    job = Job("retry")
    with pytest.raises(RuntimeError), store.transaction():
        store.save(Job("rolled back"))
        store.save(job)
        raise RuntimeError
    kept = store.save(job)
    other = open_store().save(Job("other"))
    assert kept != other
    assert open_store().list() == sorted([kept, other])
