"""The ``typedstore`` command: upgrade, check, backfill (run as a child process)."""

from __future__ import annotations

import shlex

import typedstore
from tests.migrations.models import M1, M2, cores_of, index_of, make_jobs
from tests.migrations.support import Db, run_typedstore
from typedstore import make_store
from typedstore.schema import code_head

#: typedstore's head revision, which tables reach on open.
HEAD = code_head()

M2_SPEC = "tests.migrations.models:M2"


def test_cli_upgrade_check_backfill(db: Db, table: str) -> None:
    url = db.at(table)

    result = run_typedstore("upgrade", url)
    assert "up to date; added: nothing" in result.stdout
    assert db.revisions(table) == [HEAD]

    result = run_typedstore("check", url)
    assert "no differences" in result.stdout

    assert typedstore.upgrade(url, row_model=M1) == ["jobname"]
    with make_store(url, row_model=M1) as store:
        ids = [int(i) for i in store.save_many(make_jobs(0, 20))]

    result = run_typedstore("check", url, "--row-model", M2_SPEC, expect=1)
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("ACTION column `cores` (") and table in lines[0]
    assert (f"typedstore upgrade {shlex.quote(url)} --table {table} --row-model {M2_SPEC}"
            in lines[0])
    assert lines[1].endswith(": action needed") and table in lines[1]
    assert "cores" not in db.columns(table)  # check changes nothing

    result = run_typedstore("upgrade", url, "--row-model", M2_SPEC)
    assert "added: cores" in result.stdout
    assert typedstore.drift(url, row_model=M2) == []

    result = run_typedstore("backfill", url, "--row-model", M2_SPEC, "--column", "cores")
    assert "20 rows filled; 0 left NULL" in result.stdout
    rows = db.rows(f"SELECT id, jobname, cores FROM {table}")
    assert sorted(r[0] for r in rows) == sorted(ids)
    assert all(cores == cores_of(index_of(name)) for _, name, cores in rows)
