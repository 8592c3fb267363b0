"""Drift: the migrations build exactly the table the row model describes."""

from __future__ import annotations

import pytest

import typedstore
from tests.migrations.models import M1, M2, MDefaults, MRequired, cores_of, make_jobs
from tests.migrations.support import Db, run_alembic
from typedstore import SchemaError, make_store
from typedstore.schema import code_head

#: typedstore's head revision, which tables reach on open.
HEAD = code_head()


def add_columns(diffs: list[object], table: str) -> set[str]:
    return {d[3].name for d in diffs
            if isinstance(d, tuple) and d[0] == "add_column" and d[2] == table}


def test_migrations_and_models_agree(db: Db, table: str) -> None:
    typedstore.upgrade(db.url, table)

    assert typedstore.drift(db.url, table) == []
    assert typedstore.drift(db.at(table)) == []


def test_alembic_check_finds_no_new_operations(sqlite_db: Db, table: str) -> None:
    db = sqlite_db
    run_alembic("-x", f"url={db.url}", "-x", f"table={table}", "upgrade", "head")

    result = run_alembic("-x", f"url={db.url}", "-x", f"table={table}", "check")
    assert "No new upgrade operations detected" in result.stdout + result.stderr

    result = run_alembic("-x", f"url={db.url}", "-x", f"table={table}",
                         "-x", "row_model=tests.migrations.models:M2", "check", expect=None)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "New upgrade operations detected" in output
    assert "'cores'" in output and "'jobname'" in output


def test_drift_lists_the_row_models_new_columns(db: Db, table: str) -> None:
    typedstore.upgrade(db.url, table)

    diffs = typedstore.drift(db.url, table, row_model=M2)
    assert add_columns(diffs, table) == {"jobname", "cores"}
    assert all(d[0] == "add_column" for d in diffs)

    assert typedstore.upgrade(db.url, table, row_model=M1) == ["jobname"]
    assert add_columns(typedstore.drift(db.url, table, row_model=M2), table) == {"cores"}
    assert typedstore.drift(db.url, table, row_model=M1) == []


def test_upgrade_from_code_adds_defaulted_and_indexed_columns(db: Db, table: str) -> None:
    url = db.at(table)
    with make_store(url) as store:
        ids = store.save_many(make_jobs(0, 3))

    added = typedstore.upgrade(url, row_model=MDefaults)

    assert added == ["jobname", "cores", "ratio", "label", f"ix_{table}_cores"]
    assert f"ix_{table}_cores" in db.indexes(table)
    assert typedstore.drift(url, row_model=MDefaults) == []
    # Existing rows take the defaults until back-filled.
    rows = db.rows(f"SELECT jobname, cores, ratio, label FROM {table}")
    assert rows == [(None, 1, None, "100% none")] * 3  # the % once
    with make_store(url, row_model=MDefaults) as store:
        assert typedstore.backfill(store, progress=False).rows == 3
        assert sorted((r.jobname, r.cores, r.label) for r in store.query()) == [
            (f"job-{n}", cores_of(n), "100% none") for n in range(3)]
        assert store.query(MDefaults.cores == cores_of(1)).ids() == [ids[1]]
    assert typedstore.upgrade(url, row_model=MDefaults) == []


def test_upgrade_from_code_refuses_a_not_null_column_without_default(
        db: Db, table: str) -> None:
    url = db.at(table)
    typedstore.upgrade(url)

    with pytest.raises(SchemaError) as info:
        typedstore.upgrade(url, row_model=MRequired)
    assert info.value.missing_columns == ("cores",)
    assert "cores" not in db.columns(table)
    assert db.revisions(table) == [HEAD]
