"""A SQL store object survives ``os.fork()``: the child uses it, the parent keeps using it.

The parent uses the store before forking (its driver connection, pooled
connections and a block of ids are live); the child saves, loads and queries
through the same store object; then the parent goes on with its own
connection. Ids issued on both sides must never collide.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import traceback
from collections.abc import Callable
from typing import Any

import pytest
from sql_jobs import SQL_BACKENDS, Job

OpenStore = Callable[..., Any]

pytestmark = pytest.mark.parametrize("backend", SQL_BACKENDS)


def use_store_in_child(store: Any, parent_id: Any) -> dict[str, Any]:
    """What a child does with the inherited store; returns what the parent checks."""
    ids = [store.save(Job(f"child{i}")) for i in range(3)]
    with store.transaction():
        ids.append(store.save(Job("child in transaction", child=Job("grandchild"))))
    store.invalidate_cache()
    return {
        "ids": [int(i) for i in ids],
        "grandchild": int(store.load(ids[-1]).child.persistent_id),
        "names": [store.load(i).jobname for i in ids],
        "parent": store.load(parent_id).jobname,
        "count": store.query().count(),
    }


def _child_target(store: Any, parent_id: Any, queue: Any) -> None:
    try:
        queue.put(("ok", use_store_in_child(store, parent_id)))
    except BaseException:
        queue.put(("error", traceback.format_exc()))
        raise


def use_store_in_parent(store: Any) -> Any:
    """Exercise every connection of the store before the fork; return a saved id."""
    parent_id = store.save(Job("parent"))
    assert store.load(parent_id).jobname == "parent"
    assert store.query().count() == 1
    assert [o.jobname for o in store.query().objects()] == ["parent"]
    store.idfactory.reserve(4)  # numbers the child must not issue again
    return parent_id


def check_after_fork(store: Any, open_store: OpenStore, parent_id: Any,
                     child: dict[str, Any]) -> None:
    assert child["names"] == ["child0", "child1", "child2", "child in transaction"]
    assert child["parent"] == "parent"
    assert child["count"] == 6
    child_ids = [*child["ids"], child["grandchild"]]
    # The parent's store still works, on its own connections, with its own ids.
    mine = [store.save(Job(f"parent{i}")) for i in range(5)]
    every = [parent_id, *child_ids, *mine]
    assert len(set(every)) == len(every), f"an id was issued twice: {sorted(every)}"
    assert store.list() == sorted(every)
    assert store.load(child["ids"][0]).jobname == "child0"
    store.invalidate_cache()
    assert store.load(parent_id).jobname == "parent"
    assert store.query().count() == len(every)
    assert open_store().list() == sorted(every)


def test_child_uses_the_store_without_preparation(open_store: OpenStore) -> None:
    store = open_store()
    parent_id = use_store_in_parent(store)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_target, args=(store, parent_id, queue))
    child.start()
    status, result = queue.get(timeout=120)
    child.join(timeout=60)
    assert status == "ok", result
    assert child.exitcode == 0
    check_after_fork(store, open_store, parent_id, result)


def test_explicit_pre_fork_and_post_fork(open_store: OpenStore) -> None:
    store = open_store()
    parent_id = use_store_in_parent(store)
    store.pre_fork()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            os.close(read_end)
            store.post_fork()
            report = {"status": "ok", "result": use_store_in_child(store, parent_id)}
            code = 0
        except BaseException:
            report = {"status": "error", "result": traceback.format_exc()}
        finally:
            try:
                with os.fdopen(write_end, "w") as stream:
                    json.dump(report, stream)
            finally:
                os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as stream:
        text = stream.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, text
    report = json.loads(text)
    assert report["status"] == "ok", report["result"]
    store.post_fork()
    check_after_fork(store, open_store, parent_id, report["result"])


def test_two_children_at_once(open_store: OpenStore) -> None:
    store = open_store()
    parent_id = use_store_in_parent(store)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    children = [ctx.Process(target=_child_target, args=(store, parent_id, queue))
                for _ in range(2)]
    for child in children:
        child.start()
    results = [queue.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    assert all(status == "ok" for status, _ in results), results
    child_ids = [i for _, r in results for i in (*r["ids"], r["grandchild"])]
    mine = store.save(Job("parent again"))
    every = [parent_id, *child_ids, mine]
    assert len(set(every)) == len(every) == 12
    assert open_store().list() == sorted(every)
