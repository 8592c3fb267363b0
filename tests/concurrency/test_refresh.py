"""``store.refresh()``: a long-running process sees what other processes committed
(issue 14, item 2), and ``conflicts="last-writer-wins"`` (item 1's switch).

Another process (a real one, started with the store's URL) changes one record,
removes one and adds one; ``refresh()`` drops exactly the changed and removed
objects from the map, keeps the others as they are, and the next load gives the
committed state.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from typedstore import ConflictError, Store, TransactionError
from typedstore.demo import DemoJob

OTHER_PROCESS = """
import sys
from typedstore import make_store
from typedstore.demo import DemoJob

url, changed, removed = sys.argv[1:4]
with make_store(url) as store:
    job = store.load(changed)
    job.requested_cores = 99
    store.save(job)
    store.remove(removed)
    print(store.save(DemoJob("added", 1, [])))
"""


def other_process(store_url: str, changed: Any, removed: Any) -> str:
    done = subprocess.run([sys.executable, "-c", OTHER_PROCESS, store_url, str(changed),
                           str(removed)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_refresh_drops_what_others_changed_or_removed(
        open_store: Callable[..., Store], store_url: str) -> None:
    store = open_store()
    ids = store.save_many([DemoJob(f"job-{n}", 1, []) for n in range(3)])
    kept, changed, _ = (store.load(i) for i in ids)
    added = other_process(store_url, ids[1], ids[2])

    report = store.refresh()
    assert (report.changed, report.removed, report.unchanged) == ([ids[1]], [ids[2]], 1)
    assert store.load(ids[0]) is kept  # untouched
    fresh = store.load(ids[1])
    assert fresh is not changed and fresh.requested_cores == 99
    assert changed.requested_cores == 1  # the object held was not changed under us
    assert sorted(str(i) for i in store.list()) == sorted([str(ids[0]), str(ids[1]), added])
    # The dropped object is stale: saving it is a conflict, not a lost update.
    changed.requested_cores = 5
    with pytest.raises(ConflictError):
        store.save(changed)
    assert open_store().load(ids[1]).requested_cores == 99
    assert store.refresh().changed == []  # nothing moved since


def test_refresh_inside_a_transaction_is_an_error(open_store: Callable[..., Store]) -> None:
    store = open_store()
    id_ = store.save(DemoJob("a", 1, []))
    with store.transaction():
        store.load(id_)
        with pytest.raises(TransactionError, match="refresh"):
            store.refresh()


def test_last_writer_wins_overwrites_without_conflict(
        open_store: Callable[..., Store], store_url: str) -> None:
    store = open_store(conflicts="last-writer-wins")
    ids = store.save_many([DemoJob(f"job-{n}", 1, []) for n in range(3)])
    stale = store.load(ids[1])
    other_process(store_url, ids[1], ids[2])
    stale.requested_cores = 7
    store.save(stale)  # GC3Pie's behaviour: the other process's change is lost
    assert open_store().load(ids[1]).requested_cores == 7
    with pytest.raises(ValueError, match="conflicts must be"):
        open_store(conflicts="ignore")
