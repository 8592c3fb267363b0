"""Opening a store checks the table: behind, ahead, missing columns, missing table."""

from __future__ import annotations

import logging
import shlex

import pytest

import typedstore
from tests.migrations.models import M1, M2, make_jobs
from tests.migrations.support import Db, run_alembic, run_typedstore
from typedstore import SchemaError, make_store
from typedstore.schema import code_head, version_table

#: typedstore's head revision, which tables reach on open.
HEAD = code_head()


def set_revision(db: Db, table: str, revision: str) -> None:
    db.execute(f"UPDATE {version_table(table)} SET version_num = :r", r=revision)


def test_a_table_behind_the_code_names_the_command_that_upgrades_it(db: Db, table: str) -> None:
    url = db.at(table)
    with make_store(url) as store:
        id_ = store.save({"before": "downgrade"})
    typedstore.downgrade(url, "ts0001", table)
    set_revision(db, table, "ts0001")

    with pytest.raises(SchemaError) as info:
        make_store(url)
    error = info.value
    assert error.table == table
    assert error.current == "ts0001"
    assert error.required == HEAD
    assert error.command is not None
    assert error.command.startswith("alembic ")
    assert "upgrade head" in error.command and f"-x table={table}" in error.command
    assert error.command in str(error)
    assert "ts0001" in str(error) and HEAD in str(error)

    # The command it names, run as written (from the repository root), fixes it.
    words = shlex.split(error.command)
    assert words[0] == "alembic"
    run_alembic(*words[1:])
    assert db.revisions(table) == [HEAD]
    with make_store(url, create=False) as store:
        assert store.load(id_) == {"before": "downgrade"}


def test_a_table_ahead_of_the_code_is_refused(db: Db, table: str) -> None:
    url = db.at(table)
    typedstore.upgrade(url)
    set_revision(db, table, "ts9999")

    for create in (True, False):
        with pytest.raises(SchemaError) as info:
            make_store(url, create=create)
        assert info.value.current == "ts9999"
        assert info.value.required == HEAD
        assert "newer" in str(info.value)
        assert info.value.command is None  # no command fixes it: upgrade typedstore
    assert db.revisions(table) == ["ts9999"]


def test_a_row_model_column_the_table_lacks_is_named(db: Db, table: str) -> None:
    url = db.at(table)
    with make_store(url, row_model=M1) as store:
        store.save_many(make_jobs(0, 3))

    for create in (True, False):
        with pytest.raises(SchemaError) as info:
            make_store(url, row_model=M2, create=create)
        assert info.value.missing_columns == ("cores",)
        assert "cores" in str(info.value)
    assert "cores" not in db.columns(table)


def test_create_false_on_a_missing_table(db: Db, table: str) -> None:
    with pytest.raises(SchemaError) as info:
        make_store(db.at(table), row_model=M2, create=False)
    assert info.value.table == table
    assert info.value.command is not None and info.value.command in str(info.value)
    assert not db.has_table(table)


def drop_by_hand(db: Db, url: str, table: str) -> list[int]:
    """A store with a row model (its indexes) and records, then its table dropped by
    hand: the version table stays behind, at the head revision. Returns the ids it had."""
    with make_store(url, row_model=M2) as store:
        ids = [int(i) for i in store.save_many(make_jobs(0, 3))]
    db.execute(f"DROP TABLE {table}")
    assert not db.has_table(table)
    assert db.revisions(table) == [HEAD]
    return ids


def test_opening_with_create_recreates_a_table_dropped_by_hand(
        db: Db, table: str, caplog: pytest.LogCaptureFixture) -> None:
    # Issue 9: the stale version table said ts0003, so nothing was created and the
    # open failed creating the row model's index on the missing table.
    url = db.at(table)
    old_ids = drop_by_hand(db, url, table)

    with caplog.at_level(logging.WARNING), make_store(url, row_model=M2) as store:
        assert store.list() == []
        new_id = int(store.save(make_jobs(5, 1)[0]))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(table in w and version_table(table) in w and "dropped" in w for w in warnings), \
        warnings
    assert db.has_table(table)
    assert db.revisions(table) == [HEAD]
    assert {"jobname", "cores", "version", "updated_at"} <= db.columns(table)
    assert new_id > max(old_ids)  # the id counter outlived the table: no id reissued
    with make_store(url, row_model=M2, create=False) as store:
        assert store.load(new_id).jobname == "job-5"


def test_create_false_on_a_table_dropped_by_hand_names_the_repair(db: Db, table: str) -> None:
    url = db.at(table)
    drop_by_hand(db, url, table)

    with pytest.raises(SchemaError) as info:
        make_store(url, row_model=M2, create=False)
    error = info.value
    assert error.table == table
    assert error.current == HEAD
    assert version_table(table) in str(error) and "dropped" in str(error)
    assert error.command is not None and error.command in str(error)
    assert not db.has_table(table)  # create=False changed nothing
    assert db.revisions(table) == [HEAD]

    # The command it names, run as written, creates the table again.
    words = shlex.split(error.command)
    assert words[0] == "typedstore"
    run_typedstore(*words[1:])
    assert db.has_table(table)
    with make_store(url, create=False) as store:
        assert store.list() == []


def test_upgrade_recreates_a_table_dropped_by_hand(db: Db, table: str) -> None:
    url = db.at(table)
    drop_by_hand(db, url, table)

    assert "cores" in typedstore.upgrade(url, row_model=M2)
    assert db.has_table(table)
    assert db.revisions(table) == [HEAD]
    with make_store(url, row_model=M2, create=False) as store:
        assert store.list() == []


def test_a_table_downgraded_to_base_is_created_again_quietly(
        db: Db, table: str, caplog: pytest.LogCaptureFixture) -> None:
    """Alembic leaves an empty version table after "downgrade base": not stale."""
    url = db.at(table)
    typedstore.upgrade(url)
    typedstore.downgrade(url, "base", table)
    assert not db.has_table(table)

    with caplog.at_level(logging.WARNING), make_store(url) as store:
        store.save({"again": True})
    assert not [r for r in caplog.records if "dropped" in r.getMessage()]
    assert db.revisions(table) == [HEAD]
