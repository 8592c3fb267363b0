"""Row models, classes and subprocess workers of the schema-evolution tests.

Everything here is importable as ``tests.migrations.models`` from the repository
root (pytest's ``pythonpath = ["."]``; children get the root on ``PYTHONPATH``), so
``alembic -x row_model=tests.migrations.models:M2`` and the ``typedstore`` command
find the row models, and a child process can run :func:`backfill_worker`.

Row models are SQLModel table classes sharing one global ``MetaData``, so each has a
``__tablename__`` unique in the test suite (prefixed ``migrations_models_``); stores
copy their columns into their own table (``#table=`` in the URL).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from typedstore import GET, StoreRow, backfill, extracted, make_store
from typedstore.demo import DemoJob

# ---------------------------------------------------------------- row models


class M1(StoreRow, table=True):
    """The row model before the change: the job name only."""

    __tablename__ = "migrations_models_m1"

    jobname: str | None = extracted(GET.jobname, max_length=200)


class M2(StoreRow, table=True):
    """The row model after the change: adds ``cores``."""

    __tablename__ = "migrations_models_m2"

    jobname: str | None = extracted(GET.jobname, max_length=200)
    cores: int | None = extracted(GET.requested_cores)


class MRetyped(StoreRow, table=True):
    """M2 with ``jobname`` turned into a number: a type change, which only a
    migration makes."""

    __tablename__ = "migrations_models_mretyped"

    jobname: int | None = extracted(GET.jobname)
    cores: int | None = extracted(GET.requested_cores)


class MDefaults(StoreRow, table=True):
    """New columns of every kind the one-call upgrade adds: NOT NULL with a scalar
    default (one indexed), nullable ones."""

    __tablename__ = "migrations_models_mdefaults"

    jobname: str | None = extracted(GET.jobname, max_length=200)
    cores: int = extracted(GET.requested_cores, default=1, index=True)
    ratio: float | None = extracted(GET.ratio)
    label: str = extracted(GET.label, default="100% none", max_length=20)


class MRequired(StoreRow, table=True):
    """A new NOT NULL column without a default: needs a migration with a back-fill."""

    __tablename__ = "migrations_models_mrequired"

    cores: int = extracted(GET.requested_cores)


#: Seconds :func:`slow_cores` takes per object (makes a back-fill slow enough to kill).
SLOW_SECONDS = 0.003


def slow_cores(obj: Any) -> Any:
    """``obj.requested_cores``, slowly."""
    time.sleep(SLOW_SECONDS)
    return obj.requested_cores


class M2Slow(StoreRow, table=True):
    """The columns of :class:`M2`, with a slow extractor for ``cores``."""

    __tablename__ = "migrations_models_m2slow"

    jobname: str | None = extracted(GET.jobname, max_length=200)
    cores: int | None = extracted(slow_cores)


def make_jobs(start: int, count: int) -> list[DemoJob]:
    """Jobs ``job-<i>`` with ``requested_cores`` = :func:`cores_of` ``(i)``."""
    return [DemoJob(f"job-{i}", cores_of(i), [f"--seed={i}"]) for i in range(start, start + count)]


def cores_of(i: int) -> int:
    return i % 13 + 1


def index_of(jobname: str) -> int:
    return int(jobname.rpartition("-")[2])


# ---------------------------------------------------------------- payload classes


class NewThing:
    """The current name of a class once pickled as ``<old module>.Thing``."""

    def __init__(self, value: Any = None) -> None:
        self.value = value


class Upgradable:
    """A class whose loaded objects an upgrade hook brings to the current form."""

    def __init__(self, value: Any = None) -> None:
        self.value = value


# ---------------------------------------------------------------- subprocess workers

#: ``python -c`` program of the back-fill child: ``backfill_worker(url, batch_size)``.
BACKFILL_WORKER = (
    "import sys; from tests.migrations.models import backfill_worker; "
    "backfill_worker(sys.argv[1], int(sys.argv[2]))"
)


def backfill_worker(url: str, batch_size: int) -> None:
    """Child process: back-fill ``cores`` with the slow extractor (killed before it ends)."""
    with make_store(url, row_model=M2Slow) as store:
        print("started", flush=True)
        report = backfill(store, ["cores"], batch_size=batch_size, progress=False)
    print(f"finished {report.rows}", flush=True)
    sys.exit(0)
