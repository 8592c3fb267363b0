"""Scale runs on SQLite: cost per operation as the store grows, big queries, streaming memory."""

from __future__ import annotations

import gc
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench.contestants import SqliteFloor, TypedstoreSqlite
from bench.workload import BenchRow, make_jobs

PROBE = 500  # operations timed at each size


def _per_op_us(c: Any, store_cls: type, where: Path) -> tuple[float, float]:
    """Microseconds per save and per load (fresh instance) at the current store size."""
    jobs = make_jobs(PROBE, seed=99)
    start = time.perf_counter()
    ids = [c.save(job) for job in jobs]
    save_us = (time.perf_counter() - start) / PROBE * 1e6
    c.close()
    fresh = store_cls(where)
    fresh.open()
    start = time.perf_counter()
    for id_ in ids:
        fresh.load(id_)
    load_us = (time.perf_counter() - start) / PROBE * 1e6
    for id_ in ids:
        fresh.remove(id_)
    fresh.close()
    c.open()
    return save_us, load_us


def run_scale(tmp: Path, quick: bool = False) -> dict[str, Any]:
    sizes = [1000, 5000] if quick else [1000, 10_000, 100_000]
    out: dict[str, Any] = {}
    for cls in (TypedstoreSqlite, SqliteFloor):
        where = tmp / f"scale_{cls.__name__}"
        where.mkdir()
        c = cls(where)
        c.open()
        stored = 0
        costs = {}
        for size in sizes:
            while stored < size:
                chunk = min(10_000, size - stored)
                c.batch_save(make_jobs(chunk, seed=stored))
                stored += chunk
            costs[size] = _per_op_us(c, cls, where)
        c.close()
        first, last = costs[sizes[0]], costs[sizes[-1]]
        out[f"{cls.name} save µs/op by size"] = {s: round(v[0], 1) for s, v in costs.items()}
        out[f"{cls.name} load µs/op by size"] = {s: round(v[1], 1) for s, v in costs.items()}
        out[f"{cls.name} growth {sizes[0]}->{sizes[-1]} (save, load)"] = (
            round(last[0] / first[0], 2), round(last[1] / first[1], 2))
        out[f"_{cls.name}_where"] = str(where)

    # Typed query returning rows on the big store, against the bare SELECT.
    ts = TypedstoreSqlite(Path(out.pop("_typedstore-sqlite_where")))
    ts.open()
    floor = SqliteFloor(Path(out.pop("_floor-sqlite_where")))
    floor.open()
    timings: dict[str, list[float]] = {"typedstore": [], "floor": []}
    for _ in range(3):
        gc.collect()
        start = time.perf_counter()
        n_ts = len(list(ts.store.query(BenchRow.state == "RUNNING").tuples()))
        timings["typedstore"].append(time.perf_counter() - start)
        start = time.perf_counter()
        n_floor = len(floor.query_rows("RUNNING"))
        timings["floor"].append(time.perf_counter() - start)
    out[f"query rows on {sizes[-1]} jobs: typedstore/floor time"] = round(
        min(timings["typedstore"]) / min(timings["floor"]), 2)
    out["query rows matched (typedstore, floor)"] = (n_ts, n_floor)

    # Streaming every object: peak traced memory.
    ts.close()
    ts.open()
    gc.collect()
    tracemalloc.start()
    count = sum(1 for _ in ts.store.query().objects())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    out[f"peak MB streaming {count} objects"] = round(peak / 2**20, 1)
    ts.close()
    floor.close()
    return out
