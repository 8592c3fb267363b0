"""A deterministic workload of job-like objects, about 2 KB each when pickled."""

from __future__ import annotations

import random

from typedstore import GET, Persistable, StoreRow, extracted

STATES = ("NEW", "SUBMITTED", "RUNNING", "TERMINATING", "TERMINATED")


class Execution:
    """Where a job is in its life, as GC3Pie keeps it in ``job.execution``."""

    def __init__(self, state: str, returncode: int | None) -> None:
        self.state = state
        self.returncode = returncode


class BenchJob(Persistable):
    """A job: name, execution state, arguments, environment, cores, numbers."""

    def __init__(self, rng: random.Random, index: int) -> None:
        state = STATES[rng.randrange(len(STATES))]
        self.jobname = f"bench-job-{index:07d}"
        self.execution = Execution(state, 0 if state == "TERMINATED" else None)
        self.arguments = [f"--param-{i}={rng.random():.6f}" for i in range(20)]
        self.environment = {f"VAR_{i}": f"value-{rng.randrange(10**6)}" for i in range(10)}
        self.requested_cores = rng.choice([1, 2, 4, 8, 16, 32])
        self.samples = [rng.random() for _ in range(100)]


class BenchRow(StoreRow, table=True):
    """Typed columns of the benchmark's store."""

    __tablename__ = "bench_jobs"

    jobname: str | None = extracted(GET.jobname, max_length=64)
    cores: int = extracted(GET.requested_cores, default=1, index=True)


def make_jobs(n: int, seed: int = 42) -> list[BenchJob]:
    rng = random.Random(seed)
    return [BenchJob(rng, i) for i in range(n)]
