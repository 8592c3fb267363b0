"""Back-filling a new column from the pickles: all rows, resuming after a kill, bad rows.

On SQLite and PostgreSQL. The interrupted run is a child process killed with
SIGKILL once the checkpoint table shows progress; its extractor is slow
(:class:`~tests.migrations.models.M2Slow`) so that it is still running then.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

import typedstore
from tests.migrations.models import BACKFILL_WORKER, M1, M2, cores_of, index_of, make_jobs
from tests.migrations.support import REPO, Db, child_env
from typedstore import BackfillError, SchemaError, make_store
from typedstore.demo import DemoJob
from typedstore.evolution import CHECKPOINT_TABLE

ROWS = 10_000
CHUNK = 1_000


def populate(url: str, rows: int) -> list[int]:
    with make_store(url, row_model=M1) as store:
        ids: list[int] = []
        for start in range(0, rows, CHUNK):
            ids += [int(i) for i in store.save_many(make_jobs(start, min(CHUNK, rows - start)))]
    return ids


def checkpoint(db: Db, table: str) -> int | None:
    try:
        rows = db.rows(f"SELECT last_id FROM {CHECKPOINT_TABLE} WHERE table_name = :t", t=table)
    except sa.exc.DBAPIError:  # the child has not created the table yet
        return None
    return int(rows[0][0]) if rows else None


def wrong_or_missing_cores(db: Db, table: str) -> list[tuple[int, str, int | None]]:
    rows = db.rows(f"SELECT id, jobname, cores FROM {table}")
    return [(i, name, cores) for i, name, cores in rows if cores != cores_of(index_of(name))]


def test_backfill_of_many_rows_resumes_after_a_kill(db_sqlite_pg: Db, table: str) -> None:
    db = db_sqlite_pg
    url = db.at(table)
    ids = populate(url, ROWS)
    assert len(ids) == ROWS
    assert typedstore.upgrade(url, row_model=M2) == ["cores"]

    child = subprocess.Popen([sys.executable, "-c", BACKFILL_WORKER, url, "200"], cwd=REPO,
                             env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.monotonic() + 60
        while checkpoint(db, table) is None:
            assert child.poll() is None, f"back-fill child ended early: {child.communicate()}"
            assert time.monotonic() < deadline, "no back-fill checkpoint within 60 s"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert "finished" not in out

    last = checkpoint(db, table)
    assert last is not None and last < max(ids)
    done = db.rows(f"SELECT id, cores FROM {table} WHERE id <= :last", last=last)
    assert done and all(cores is not None for _, cores in done)
    assert db.rows(f"SELECT id FROM {table} WHERE id > :last AND cores IS NOT NULL",
                   last=last) == []  # the killed batch left nothing behind

    with make_store(url, row_model=M2) as store:
        report = typedstore.backfill(store, ["cores"], progress=False)
    assert report.resumed_after == last
    assert report.rows == sum(1 for i in ids if i > last)
    assert report.left_null == []
    assert wrong_or_missing_cores(db, table) == []
    assert checkpoint(db, table) is None  # a finished back-fill forgets its checkpoint

    # A full run from scratch fills all the rows in one call.
    db.execute(f"UPDATE {table} SET cores = NULL")
    with make_store(url, row_model=M2) as store:
        report = typedstore.backfill(store, progress=False)
        assert store.query(M2.cores.is_(None)).count() == 0
        assert store.query(M2.cores == 13).count() == sum(
            1 for i in range(ROWS) if cores_of(i) == 13)
    assert report.rows == ROWS
    assert report.resumed_after is None
    assert wrong_or_missing_cores(db, table) == []


def test_rows_that_fail_validation_stop_the_backfill_or_stay_null(
        db_sqlite_pg: Db, table: str) -> None:
    db = db_sqlite_pg
    url = db.at(table)
    jobs = make_jobs(0, 20)
    jobs[11].requested_cores = "many"  # not an int: fails M2's validation
    with make_store(url, row_model=M1) as store:
        ids = [int(i) for i in store.save_many(jobs)]
    bad = ids[11]
    typedstore.upgrade(url, row_model=M2)

    with make_store(url, row_model=M2) as store:
        with pytest.raises(SchemaError) as unknown:
            typedstore.backfill(store, ["no_such_column"], progress=False)
        assert "no_such_column" in str(unknown.value)

        with pytest.raises(BackfillError) as info:
            typedstore.backfill(store, ["cores"], batch_size=8, progress=False)
        error = info.value
        assert [id_ for id_, _ in error.failures] == [bad]
        assert "cores" in error.failures[0][1]
        assert str(bad) in str(error)
        assert error.table == table
        filled = dict(db.rows(f"SELECT id, cores FROM {table}"))
        # The first batch was written; nothing of the failing batch was.
        assert all(filled[i] == cores_of(n) for n, i in enumerate(ids[:8]))
        assert all(filled[i] is None for i in ids[8:16])

        report = typedstore.backfill(store, ["cores"], batch_size=8, leave_null=True,
                                     progress=False)
        assert report.resumed_after == ids[7]
        assert [id_ for id_, _ in report.left_null] == [bad]
        assert report.rows == len(ids) - 8
        assert store.query(M2.cores.is_(None)).ids() == [bad]
        loaded = store.load(bad)
        assert isinstance(loaded, DemoJob) and loaded.requested_cores == "many"

    filled = dict(db.rows(f"SELECT id, cores FROM {table}"))
    assert filled[bad] is None
    assert all(filled[i] == cores_of(n) for n, i in enumerate(ids) if i != bad)
