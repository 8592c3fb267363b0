"""Processes opening one store at the same moment (issue 10: racing writers, no dead store).

Regression: on MariaDB, where each DDL statement commits on its own, processes
opening a new table, or adopting a GC3Pie table, at the same time saw the table
half made and failed ("needs ts0002", error 1684 "concurrent DDL").
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

import pytest
import sqlalchemy as sa

from tests.migrations.support import gc3pie_create_table
from tests.stress import size

OPENERS = 4
ROUNDS = size(1, 3, "TYPEDSTORE_OPEN_RACE_ROUNDS")


def _open_and_save(url: str, barrier: Any, queue: Any) -> None:
    from typedstore import make_store

    try:
        barrier.wait(timeout=60)
        store = make_store(url)
        store.save({"pid": os.getpid()})
        store.close()
        queue.put("ok")
    except Exception as exc:  # reported to the test, which fails on it
        queue.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow
@pytest.mark.parametrize("gc3pie_table", [False, True], ids=["new", "gc3pie"])
def test_processes_open_one_table_at_once(backend: str, store_url: str, gc3pie_table: bool,
                                          tmp_path: Any) -> None:
    if backend == "file":
        pytest.skip("SQL tables only")
    context = multiprocessing.get_context("spawn")
    outcomes: list[str] = []
    for round_ in range(ROUNDS):
        url = f"{store_url}_{round_}"
        if gc3pie_table:
            engine = sa.create_engine(url.partition("#")[0])
            with engine.begin() as conn:
                conn.exec_driver_sql(gc3pie_create_table(backend, url.rpartition("=")[2]))
            engine.dispose()
        barrier, queue = context.Barrier(OPENERS), context.Queue()
        workers = [context.Process(target=_open_and_save, args=(url, barrier, queue))
                   for _ in range(OPENERS)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=180)
        outcomes += [queue.get(timeout=10) for _ in workers]
    failures = [o for o in outcomes if o != "ok"]
    assert not failures, failures
