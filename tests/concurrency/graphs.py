"""Object graphs and the worker processes of the reference-tracking tests.

In a module of its own so that spawned processes can import the classes
their records name.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from typedstore import ConflictError, ReferencedError, make_store
from typedstore.serialization import Persistable


class Node(Persistable):
    """A Persistable holding a list of others."""

    def __init__(self, name: str, kids: list[Any] | None = None) -> None:
        self.name = name
        self.kids = list(kids or [])


def reachable(store: Any, root_id: Any) -> dict[str, Node]:
    """``str(id) -> node`` of every Persistable reachable from ``root_id``
    (loading each: a dangling reference raises)."""
    seen: dict[str, Node] = {}
    stack = [store.load(root_id)]
    while stack:
        node = stack.pop()
        key = str(node.persistent_id)
        if key in seen:
            continue
        seen[key] = node
        stack.extend(node.kids)
    return seen


def pack_loop(url: str, done: Any, queue: Any) -> None:
    """Pack again and again until ``done`` is set; report how many records went."""
    try:
        store = make_store(url)
        removed = packs = 0
        while not done.is_set() or packs < 3:
            removed += store.pack(batch_size=7).removed
            packs += 1
            time.sleep(random.uniform(0, 0.02))
        store.close()
        queue.put(("pack", removed))
    except Exception as exc:  # reported to the test, which fails on it
        queue.put(("error", f"pack: {type(exc).__name__}: {exc}"))


def writer_loop(url: str, root_id: Any, rounds: int, done: Any, queue: Any) -> None:
    """Each round, in one transaction: detach a child of the root (garbage for
    pack), attach a new subtree, and sometimes attach again a child detached
    earlier (racing the pack that may have collected it: ConflictError)."""
    try:
        store = make_store(url)
        limbo: list[Node] = []
        conflicts = 0
        for i in range(rounds):
            try:
                with store.transaction():
                    root = store.load(root_id)
                    if len(root.kids) > 2:
                        limbo.append(root.kids.pop(0))
                    if limbo and i % 2:
                        root.kids.append(limbo.pop(0))
                    root.kids.append(Node(f"new{os.getpid()}.{i}", [Node(f"leaf{i}")]))
                    store.save(root)
            except ConflictError as exc:
                conflicts += 1
                gone = {str(i) for i in exc.ids}
                limbo = [node for node in limbo if str(node.persistent_id) not in gone]
                store.invalidate_cache()
        store.close()
        queue.put(("writer", conflicts))
    except Exception as exc:  # reported to the test, which fails on it
        queue.put(("error", f"writer: {type(exc).__name__}: {exc}"))
    finally:
        done.set()


def remove_child(url: str, child_id: Any, barrier: Any, queue: Any) -> None:
    """Remove ``child_id`` (no force); report what happened."""
    try:
        store = make_store(url)
        barrier.wait(timeout=60)
        try:
            store.remove(child_id)
            queue.put(("remove", "removed"))
        except ReferencedError:
            queue.put(("remove", "refused"))
        except ConflictError:  # a deadlock the server broke (MariaDB): nothing removed
            queue.put(("remove", "conflict"))
        store.close()
    except Exception as exc:  # reported to the test, which fails on it
        queue.put(("remove", f"error {type(exc).__name__}: {exc}"))


def attach_child(url: str, box_id: Any, child_id: Any, barrier: Any, queue: Any) -> None:
    """Load the box and the child, make the box reference the child, save."""
    try:
        store = make_store(url)
        box, child = store.load(box_id), store.load(child_id)
        barrier.wait(timeout=60)
        box.kids.append(child)
        try:
            store.save(box)
            queue.put(("attach", "saved"))
        except ConflictError:
            queue.put(("attach", "conflict"))
        store.close()
    except Exception as exc:  # reported to the test, which fails on it
        queue.put(("attach", f"error {type(exc).__name__}: {exc}"))


def pack_memory(url: str, garbage: int, queue: Any) -> None:
    """Make ``garbage`` unreachable children, then pack them; report the
    Python heap's peak during the pack (tracemalloc), in bytes."""
    import tracemalloc

    try:
        store = make_store(url)
        top = Node("top")
        batch = 2000
        for start in range(0, garbage, batch):
            top.kids = [Node(f"c{n}") for n in range(start, min(garbage, start + batch))]
            store.save(top)  # the previous batch's children become garbage
        top.kids = []
        store.save(top)
        store.invalidate_cache()
        tracemalloc.start()
        report = store.pack(batch_size=500, progress=False)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        store.close()
        queue.put((report.removed, peak))
    except Exception as exc:  # reported to the test, which fails on it
        queue.put((-1, f"{type(exc).__name__}: {exc}"))
