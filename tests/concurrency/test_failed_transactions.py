"""A transaction in which something failed never commits part of itself (issue 10 trial).

Regressions found by a new user's attack: on PostgreSQL a failed read inside a
transaction made its COMMIT a silent ROLLBACK (reported as success); on MariaDB a
deadlock ended the transaction and later writes of the block committed on their
own; deadlocks were not retried; a rolled-back change stayed visible to load().
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from typedstore import (
    ConflictError,
    DeadlockError,
    Persistable,
    SaveError,
    Store,
    StoreError,
    TransactionError,
)


class Job(Persistable):
    def __init__(self, n: int = 0) -> None:
        self.n = n


class Unpicklable(Persistable):
    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError("cannot pickle this")


def test_no_write_after_a_failure_inside_a_transaction(open_store: Callable[..., Store]) -> None:
    store = open_store()
    kept = Job(1)
    store.save(kept)
    later = Job(2)
    with pytest.raises(TransactionError), store.transaction():
        store.save(Job(3))
        with pytest.raises(SaveError):
            store.save(Unpicklable())
        with pytest.raises(TransactionError, match="earlier operation"):
            store.save(later)
    assert [str(i) for i in open_store().list()] == [str(kept.persistent_id)]


def test_rolled_back_changes_are_not_what_load_gives(open_store: Callable[..., Store]) -> None:
    store = open_store()
    id_ = store.save(Job(0))
    job = store.load(id_)
    with pytest.raises(RuntimeError), store.transaction():
        job.n = 100
        store.save(job)
        raise RuntimeError("roll back")
    fresh = store.load(id_)
    assert fresh is not job and fresh.n == 0


def test_failed_read_makes_a_postgresql_transaction_fail(backend: str,
                                                          open_store: Callable[..., Store]
                                                          ) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL aborts a transaction on any error")
    store = open_store(statement_timeout=1)
    a, b = Job(1), Job(2)
    with pytest.raises(TransactionError), store.transaction():
        store.save(a)
        store.save(b)
        with pytest.raises(StoreError):
            store.query(sa.text("pg_sleep(2) IS NOT NULL")).count()
    assert open_store().list() == []


def test_deadlocks_are_conflicts_that_retry_resolves(backend: str,
                                                     open_store: Callable[..., Store]) -> None:
    if backend not in ("postgresql", "mysql"):
        pytest.skip("row-locking servers only")
    first = open_store()
    x, y = first.save(Job()), first.save(Job())
    stores = [open_store(), open_store()]
    barrier = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []
    attempts = [0, 0]

    def run(k: int, order: tuple[Any, Any]) -> None:
        store = stores[k]

        def work() -> None:
            attempts[k] += 1
            one = store.load(order[0])
            one.n += 1
            store.save(one)
            store.save(Job())  # a second statement: the first runs now, taking its lock
            if attempts[k] == 1:
                barrier.wait()
            two = store.load(order[1])
            two.n += 1
            store.save(two)

        try:
            store.retry(work, attempts=10)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(0, (x, y))),
               threading.Thread(target=run, args=(1, (y, x)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    check = open_store()
    assert (check.load(x).n, check.load(y).n) == (2, 2)
    assert sum(s.stats.conflicts for s in stores) >= 1  # the deadlock victim retried
    assert issubclass(DeadlockError, ConflictError)


def test_replace_under_another_id_moves_the_object(open_store: Callable[..., Store]) -> None:
    store = open_store()
    a, b = Job(1), Job(2)
    id_a, id_b = store.save(a), store.save(b)
    a.n = 99
    store.replace(id_b, a)
    assert a.persistent_id == id_b
    assert store.load(id_b) is a
    again = store.load(id_a)
    assert again is not a and again.n == 1
    assert open_store().load(id_b).n == 99


@pytest.mark.parametrize("name", ["connect_timeout", "lock_timeout", "statement_timeout",
                                  "read_timeout"])
@pytest.mark.parametrize("value", [float("inf"), 1e12, -1, float("nan"), "5", True])
def test_timeouts_out_of_range_are_refused(tmp_path: Any, name: str, value: Any) -> None:
    from typedstore import SqlStore

    with pytest.raises(ValueError, match=name):
        SqlStore(f"sqlite:///{tmp_path}/t.db", **{name: value})


def test_a_child_forked_during_another_threads_transaction_sees_none_of_it(
        open_store: Callable[..., Store]) -> None:
    import os

    store = open_store()
    kept = store.save(Job(1))
    inside, release = threading.Event(), threading.Event()
    box: dict[str, Any] = {}

    def writer() -> None:
        with pytest.raises(RuntimeError), store.transaction():
            job = Job(2)
            box["id"] = store.save(job)
            inside.set()
            release.wait(30)
            raise RuntimeError("roll back")

    thread = threading.Thread(target=writer)
    thread.start()
    assert inside.wait(30)
    pid = os.fork()
    if pid == 0:  # the child: the parent's open transaction is not its own
        code = 1
        try:
            try:
                store.load(box["id"])
            except LookupError:
                code = 0 if store.load(kept).n == 1 else 2
        finally:
            os._exit(code)
    release.set()
    thread.join(30)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
