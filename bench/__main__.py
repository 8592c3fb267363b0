"""Run the benchmark: ``python -m bench [--quick] [--json results.json]``.

All contestants run in one process, interleaved within each round, for several
rounds; each figure is the median over rounds. Ratios compare a contestant with
its floor measured in the same run (1.0 = as fast as the floor).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.contestants import ALL, Contestant
from bench.workload import make_jobs

OPERATIONS = ["save", "load", "replace", "list", "query_objects", "query_rows",
              "batch_save", "remove"]
PG_URL = os.environ.get("TYPEDSTORE_BENCH_PG_URL",
                        os.environ.get("TYPEDSTORE_TEST_PG_URL",
                                       "postgresql+psycopg://postgres@127.0.0.1:5432/test"))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def one_round(cls: type[Contestant], where: Path, n: int, pg_url: str | None) -> dict[str, Any]:
    """Run every operation once; return ops/s per operation and bytes per object."""
    rates: dict[str, float] = {}
    jobs = make_jobs(n)
    c = cls(where, pg_url)
    c.open()
    t, ids = timed(lambda: [c.save(job) for job in jobs])
    rates["save"] = n / t
    disk = c.disk_bytes() / n
    c.close()

    c = cls(where, pg_url)
    c.open()
    t, loaded = timed(lambda: [c.load(id_) for id_ in ids])
    rates["load"] = n / t
    for obj in loaded:
        obj.execution.state = "RUNNING" if obj.execution.state == "NEW" else obj.execution.state
    t, _ = timed(lambda: [c.replace(id_, obj) for id_, obj in zip(ids, loaded, strict=True)])
    rates["replace"] = n / t
    t, listed = timed(c.list)
    rates["list"] = len(listed) / t
    c.close()
    loaded = []

    c = cls(where, pg_url)
    c.open()
    t, found = timed(lambda: c.query_objects("RUNNING"))
    rates["query_objects"] = len(found) / t
    del found
    t, rows = timed(lambda: c.query_rows("RUNNING"))
    rates["query_rows"] = len(rows) / t
    t, _ = timed(lambda: [c.remove(id_) for id_ in ids])
    rates["remove"] = n / t
    batch = make_jobs(n, seed=7)
    t, _ = timed(lambda: c.batch_save(batch))
    rates["batch_save"] = n / t
    c.close()
    return {"rates": rates, "disk_bytes_per_object": disk}


def peak_stream_memory(cls: type[Contestant], where: Path, n: int,
                       pg_url: str | None) -> float:
    """Peak traced memory (MB) while streaming every stored object once."""
    c = cls(where, pg_url)
    c.open()
    c.batch_save(make_jobs(n, seed=11))
    c.close()
    c = cls(where, pg_url)
    c.open()
    gc.collect()
    tracemalloc.start()
    count = sum(1 for _ in c.stream_objects())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    c.close()
    assert count >= n
    return peak / 2**20


@contextmanager
def pg_schema(url: str) -> Iterator[str | None]:
    """A URL into a schema of this run's own (dropped at the end), or None if unreachable."""
    import sqlalchemy as sa

    schema = f"bench_{os.getpid()}"
    try:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # any failure means "skip PostgreSQL"
        print(f"PostgreSQL unreachable ({type(exc).__name__}); skipping it", file=sys.stderr)
        yield None
        return
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def run(n: int, rounds: int, only: list[str] | None, scale: bool) -> dict[str, Any]:
    with pg_schema(PG_URL) as pg_url:
        return run_with(n, rounds, only, scale, pg_url)


def run_with(n: int, rounds: int, only: list[str] | None, scale: bool,
             pg_url: str | None) -> dict[str, Any]:
    use_pg = pg_url is not None
    contestants = [c for c in ALL if (use_pg or "postgres" not in c.name)
                   and (not only or c.name in only)]
    samples: dict[str, dict[str, list[float]]] = {c.name: {} for c in contestants}
    disk: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="typedstore-bench-") as tmp:
        order = list(contestants)
        for r in range(rounds):
            # Interleaved, in a different order each round, so no contestant
            # always runs first (warm caches, CPU frequency, GC state).
            random.Random(r).shuffle(order)
            for cls in order:
                where = Path(tmp) / f"r{r}_{cls.name.replace('-', '_')}"
                where.mkdir()
                result = one_round(cls, where, n, pg_url)
                for op, rate in result["rates"].items():
                    samples[cls.name].setdefault(op, []).append(rate)
                disk[cls.name] = result["disk_bytes_per_object"]
                print(f"round {r + 1}/{rounds} {cls.name}: done", file=sys.stderr)
        memory = {}
        for cls in contestants:
            where = Path(tmp) / f"mem_{cls.name.replace('-', '_')}"
            where.mkdir()
            memory[cls.name] = peak_stream_memory(cls, where, n, pg_url)
        results: dict[str, Any] = {
            "n": n, "rounds": rounds, "python": platform.python_version(),
            "machine": platform.machine(), "cpus": os.cpu_count(),
            "contestants": {},
        }
        for cls in contestants:
            medians = {op: statistics.median(v) for op, v in samples[cls.name].items()}
            results["contestants"][cls.name] = {
                "kind": cls.kind, "floor": cls.floor, "ops_per_s": medians,
                "disk_bytes_per_object": disk[cls.name],
                "peak_stream_mb": memory[cls.name],
            }
        for entry in results["contestants"].values():
            floor = results["contestants"].get(entry["floor"])
            entry["ratio"] = {
                op: (rate / floor["ops_per_s"][op]) if floor else None
                for op, rate in entry["ops_per_s"].items()
            }
        if scale:
            from bench.scale import run_scale

            results["scale"] = run_scale(Path(tmp), quick=n < 2000)
    return results


def markdown(results: dict[str, Any]) -> str:
    names = list(results["contestants"])
    lines = [f"N = {results['n']} objects, median of {results['rounds']} rounds "
             f"(Python {results['python']}, {results['cpus']} CPUs)", "",
             "ops/s | " + " | ".join(names), "---|" + "---|" * len(names)]
    for op in OPERATIONS:
        cells = [f"{results['contestants'][n]['ops_per_s'].get(op, 0):,.0f}" for n in names]
        lines.append(f"{op} | " + " | ".join(cells))
    lines += ["", "ratio to floor | " + " | ".join(names), "---|" + "---|" * len(names)]
    for op in OPERATIONS:
        cells = []
        for n in names:
            ratio = results["contestants"][n]["ratio"].get(op)
            cells.append("—" if ratio is None else f"{ratio:.2f}")
        lines.append(f"{op} | " + " | ".join(cells))
    lines += ["", "bytes/object | " + " | ".join(
        f"{results['contestants'][n]['disk_bytes_per_object']:,.0f}" for n in names)]
    lines += ["peak MB streaming all | " + " | ".join(
        f"{results['contestants'][n]['peak_stream_mb']:.1f}" for n in names)]
    if "scale" in results:
        lines += ["", "### Scale", ""]
        for key, value in results["scale"].items():
            lines.append(f"- {key}: {value}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small N, 3 rounds, < 1 minute")
    parser.add_argument("-n", type=int, default=None, help="objects per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="contestant names to run")
    parser.add_argument("--no-scale", action="store_true", help="skip the 100,000-object runs")
    parser.add_argument("--json", type=Path, default=Path("bench/results.json"))
    args = parser.parse_args(argv)
    n = args.n or (300 if args.quick else 5000)
    results = run(n, args.rounds, args.only, scale=not args.no_scale)
    text = markdown(results)
    print(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
