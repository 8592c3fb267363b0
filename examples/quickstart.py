"""Quickstart: save job objects, share them between store instances, load them back.

Run: python examples/quickstart.py [STORE_URL]   (default: a temporary directory)
"""

from __future__ import annotations

import sys
import tempfile

from typedstore import Persistable, make_store


class Execution:
    """Where a job is in its life (GC3Pie keeps it in ``job.execution``)."""

    def __init__(self, state: str) -> None:
        self.state = state


class Job(Persistable):
    """A job object; Persistable makes it a record of its own when referenced."""

    def __init__(self, name: str, cores: int, state: str) -> None:
        self.jobname = name
        self.requested_cores = cores
        self.execution = Execution(state)


class Campaign(Persistable):
    """A container of jobs: saving it saves every job as its own record."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs


def main(url: str) -> None:
    store = make_store(url)
    jobs = [Job(f"sweep-{i}", cores=2 ** (i % 5), state=("RUNNING" if i % 3 else "TERMINATED"))
            for i in range(10)]
    campaign_id = store.save(Campaign(jobs))
    print(f"saved campaign {campaign_id} with {len(jobs)} jobs into {url}")

    fresh = make_store(url)  # another process or host would do the same
    campaign = fresh.load(campaign_id)
    running = [job.jobname for job in campaign.jobs if job.execution.state == "RUNNING"]
    print(f"{len(fresh.list())} records; running jobs: {', '.join(running)}")
    assert fresh.load(jobs[0].persistent_id) is campaign.jobs[0], "one object per id"


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="typedstore-"))
