"""The demo: save a parameter sweep's jobs into a SQLite file and query them by state.

Run ``python -m typedstore.demo [sqlite:demo.db]``. It saves a campaign of
jobs (one transaction: the campaign and every job, each job its own record),
moves some through their states, then asks the typed questions a scheduler
asks -- which jobs are RUNNING, which failed jobs used more than 8 cores --
without unpickling anything, and finally loads the matching jobs themselves.

The job classes live in this package's ``__init__`` and ``python -m`` runs its
``__main__`` module, so what the demo stores names ``typedstore.demo.DemoJob``
(never ``__main__.DemoJob``) and any process can load it.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

from ..accessors import GET
from ..rows import StoreRow, extracted
from ..serialization import Persistable
from ..sql import SqlStore
from ..store import make_store


class Execution:
    """Where a job is in its life; GC3Pie keeps this in ``job.execution``."""

    def __init__(self) -> None:
        self.state = "NEW"
        self.returncode: int | None = None


class DemoJob(Persistable):
    """A job of the sweep."""

    def __init__(self, name: str, cores: int, arguments: list[str]) -> None:
        self.jobname = name
        self.requested_cores = cores
        self.arguments = arguments
        self.execution = Execution()


class Sweep(Persistable):
    """A campaign of jobs; saving it saves each job as a record of its own."""

    def __init__(self, jobs: list[DemoJob]) -> None:
        self.jobs = jobs


class DemoJobRow(StoreRow, table=True):
    """The typed columns the demo queries by."""

    __tablename__ = "demo_jobs"

    jobname: str | None = extracted(GET.jobname, max_length=200)
    cores: int = extracted(GET.requested_cores, default=1, index=True)
    returncode: int | None = extracted(GET.execution.returncode)


def run(url: str, jobs: int = 40, seed: int = 7) -> dict[str, int]:
    """Run the demo against ``url``; return how many jobs each question found."""
    rng = random.Random(seed)
    store = make_store(url, row_model=DemoJobRow)
    sweep = Sweep([
        DemoJob(f"sweep-{i:03d}", cores=rng.choice([1, 2, 4, 8, 16, 32]),
                arguments=[f"--alpha={rng.random():.3f}", f"--seed={i}"])
        for i in range(jobs)
    ])
    sweep_id = store.save(sweep)
    print(f"saved sweep {sweep_id} with {jobs} jobs into {url}")

    with store.transaction():
        for job in sweep.jobs:
            job.execution.state = rng.choice(["RUNNING", "RUNNING", "TERMINATED", "SUBMITTED"])
            if job.execution.state == "TERMINATED":
                job.execution.returncode = rng.choice([0, 0, 1])
            job.changed = True
        store.save(sweep)

    running = store.query(DemoJobRow.state == "RUNNING").order_by(DemoJobRow.jobname).rows()
    print(f"{len(running)} RUNNING:", ", ".join(row.jobname for row in running[:8]),
          "..." if len(running) > 8 else "")
    big_failures = store.query(
        DemoJobRow.state == "TERMINATED", DemoJobRow.returncode != 0, DemoJobRow.cores > 8
    )
    failed = list(big_failures.objects())
    for job in failed:
        print(f"failed with {job.requested_cores} cores: {job.jobname} "
              f"(returncode {job.execution.returncode})")
    counts = {
        "running": len(running),
        "failed_big": len(failed),
        "total": store.query().count(),
    }
    print(f"{counts['total']} records in the store")
    store.close()
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", help="store URL (default: a new SQLite file)")
    parser.add_argument("--jobs", type=int, default=40)
    args = parser.parse_args(argv)
    url = args.url or f"sqlite:///{Path(tempfile.mkdtemp(prefix='typedstore-demo-')) / 'jobs.db'}"
    run(url, args.jobs)
    return 0


__all__ = ["DemoJob", "DemoJobRow", "SqlStore", "Sweep", "main", "run"]
