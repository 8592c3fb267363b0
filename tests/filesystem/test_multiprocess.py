"""Several real processes saving into one store directory at the same time."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from typedstore import FilesystemStore, Persistable, make_store

pytestmark = pytest.mark.slow

WORKERS = 4
SAVES = 50


class Item(Persistable):
    def __init__(self, worker: int, n: int) -> None:
        self.worker = worker
        self.n = n


def _save_items(directory: str, worker: int, start: Any) -> list[str]:
    store = make_store(directory)
    start.wait(timeout=60)  # every worker begins at once
    ids = []
    for n in range(SAVES):
        if n % 10 == 9:
            # now and then a transaction with a shared child, to mix in journal commits
            child = Item(worker, -n)
            with store.transaction():
                ids.append(str(store.save(Item(worker, n))))
                holder = Item(worker, 1000 + n)
                holder.child = child
                ids.append(str(store.save(holder)))
                ids.append(str(child.persistent_id))
        else:
            ids.append(str(store.save(Item(worker, n))))
    return ids


def test_concurrent_savers_get_distinct_ids_and_lose_nothing(tmp_path: Path) -> None:
    directory = str(tmp_path / "jobs")
    FilesystemStore(directory)  # create it up front so no worker races to make it
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        start = manager.Barrier(WORKERS)
        with ctx.Pool(WORKERS) as pool:
            results = pool.starmap(
                _save_items, [(directory, worker, start) for worker in range(WORKERS)]
            )

    everything = [id_ for ids in results for id_ in ids]
    per_worker = SAVES + 2 * (SAVES // 10)
    assert [len(ids) for ids in results] == [per_worker] * WORKERS
    assert len(set(everything)) == len(everything), "two saves got the same id"

    store = FilesystemStore(directory)
    assert sorted(map(str, store.list())) == sorted(everything)
    seen = set()
    for worker, ids in enumerate(results):
        for id_ in ids:
            item = store.load(id_)
            assert item.worker == worker
            assert item.persistent_id == id_
            seen.add((item.worker, item.n))
        holders = [store.load(id_) for id_ in ids if store.load(id_).n >= 1000]
        for holder in holders:
            assert holder.child.n == -(holder.n - 1000)
            assert holder.child is store.load(holder.child.persistent_id)
    assert len(seen) == len(everything)
