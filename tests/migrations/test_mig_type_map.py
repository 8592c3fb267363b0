"""ts0003: a table made before the type map (at ts0002, its row-model columns in the
types SQLModel chose then) is converted to the map's types, keeping its rows."""

from __future__ import annotations

import shlex
import time

import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlmodel.main import get_sqlalchemy_type

import typedstore
from tests.migrations.support import Db, run_alembic
from tests.types.typed_models import FloatRow, Thing
from typedstore import SchemaError, make_store
from typedstore.schema import code_head

#: typedstore's head revision, which tables reach on open.
HEAD = code_head()


def old_table(db: Db, table: str) -> None:
    """A store table as a typedstore before the type map left it: made by the code's
    own migrations up to ts0002, then the row model's columns added with the types
    SQLModel gives its fields (what typedstore.upgrade(row_model=...) added then)."""
    typedstore.upgrade(db.url, table, revision="ts0002")
    with db.engine.begin() as conn:
        ops = Operations(MigrationContext.configure(conn))
        with ops.batch_alter_table(table) as batch:
            for name, field in FloatRow.model_fields.items():
                if name in ("submitted", "jobname"):
                    batch.add_column(sa.Column(name, get_sqlalchemy_type(field), nullable=True))
        if db.backend == "mysql":  # a database whose default collation ignores case
            conn.execute(sa.text(f"ALTER TABLE {table} MODIFY state VARCHAR(128) "
                                 "CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL "
                                 "DEFAULT 'UNKNOWN'"))
        conn.execute(sa.text(f"INSERT INTO {table} (id, data, state, version, submitted, "
                             "jobname) VALUES (1, NULL, 'RUNNING', 1, 2.5, 'Old')"))
        conn.execute(sa.text("UPDATE typedstore_ids SET next_id = 2 WHERE table_name = :t"),
                     {"t": table})


def test_a_table_made_before_the_type_map_is_converted_by_ts0003(db: Db, table: str) -> None:
    old_table(db, table)
    assert db.revisions(table) == ["ts0002"]
    old_float = db.column_type(table, "submitted")
    url = db.at(table)

    with pytest.raises(SchemaError) as info:
        make_store(url, row_model=FloatRow)
    error = info.value
    assert (error.current, error.required) == ("ts0002", HEAD)
    assert error.command is not None
    assert "-x row_model=tests.types.typed_models:FloatRow" in error.command
    run_alembic(*shlex.split(error.command)[1:])

    assert db.revisions(table) == [HEAD]
    assert db.rows(f"SELECT id, state, submitted, jobname FROM {table}") == [
        (1, "RUNNING", 2.5, "Old")]
    if db.backend == "mysql":
        assert old_float == "FLOAT"
        assert db.column_type(table, "submitted") == "DOUBLE"
        assert db.rows(
            "SELECT column_name, collation_name FROM information_schema.columns WHERE "
            f"table_schema = DATABASE() AND table_name = '{table}' AND column_name IN "
            "('state', 'jobname') ORDER BY column_name") == [
            ("jobname", "utf8mb4_nopad_bin"), ("state", "utf8mb4_nopad_bin")]
    if db.backend == "postgresql":
        assert db.column_type(table, "jobname") == 'TEXT COLLATE "C"'
    assert typedstore.drift(url, row_model=FloatRow) == []

    now = time.time()  # a Unix timestamp: single precision was 73 minutes off
    with make_store(url, row_model=FloatRow) as store:
        id_ = store.save(Thing(submitted=now, jobname="new"))
        assert store.query(FloatRow.submitted == now).ids() == [id_]  # type: ignore[attr-defined]
        assert store.query(FloatRow.jobname == "old").ids() == []  # type: ignore[attr-defined]
        assert store.query(FloatRow.jobname == "Old").ids() == [1]  # type: ignore[attr-defined]
        assert store.query(FloatRow.state == "running").count() == 0  # type: ignore[attr-defined]


def test_ts0003_without_the_row_model_then_upgrade_with_it(db: Db, table: str) -> None:
    old_table(db, table)
    url = db.at(table)
    run_alembic("-x", f"url={db.url}", "-x", f"table={table}", "upgrade", "head")
    assert db.revisions(table) == [HEAD]
    assert typedstore.drift(url, row_model=FloatRow) != []  # the fields' columns are as they were

    assert typedstore.upgrade(url, row_model=FloatRow) == []  # nothing added, types converted
    assert typedstore.drift(url, row_model=FloatRow) == []
    assert db.rows(f"SELECT submitted, jobname FROM {table}") == [(2.5, "Old")]
    with make_store(url, row_model=FloatRow, create=False) as store:
        assert store.query(FloatRow.submitted == 2.5).ids() == [1]  # type: ignore[attr-defined]
