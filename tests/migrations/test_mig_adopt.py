"""Adopting a table GC3Pie wrote: rows and extra columns kept, bookkeeping added,
the payload column widened where GC3Pie's is narrow (MySQL/MariaDB ``BLOB``).

The GC3Pie table is made with the CREATE TABLE GC3Pie 2.6.8 emits on each backend
(:data:`tests.migrations.support.GC3PIE_DDL`); its rows are plain pickles of plain
values (not GC3Pie objects: the round trips with GC3Pie itself are in
``tests/gc3pie``). It is adopted with the ``alembic`` command on SQLite and MariaDB
and with ``typedstore.upgrade`` on PostgreSQL.
"""

from __future__ import annotations

import pickle

import pytest

import typedstore
from tests.migrations.support import Db, gc3pie_create_table, run_alembic, run_typedstore
from typedstore import SchemaError, make_store
from typedstore.schema import code_head, version_table

#: typedstore's head revision, which tables reach on open.
HEAD = code_head()

#: The payload column's type after adoption (typedstore's own).
PAYLOAD_TYPE = {"sqlite": "BLOB", "postgresql": "BYTEA", "mysql": "LONGBLOB"}
#: ... and in GC3Pie's table.
GC3PIE_PAYLOAD_TYPE = {"sqlite": "BLOB", "postgresql": "BYTEA", "mysql": "BLOB"}
#: A record larger than GC3Pie's BLOB on MySQL/MariaDB holds (65,535 bytes).
LARGE = 100_000

#: GC3Pie's rows: ids with gaps, states, the extra column's values.
OLD_ROWS = [
    (3, "NEW", "three"),
    (7, "RUNNING", None),
    (42, "TERMINATED", "forty-two"),
]


def old_payload(id_: int) -> dict[str, object]:
    return {"jobname": f"gc3-{id_}", "args": [id_, str(id_)], "nested": {"id": id_}}


def make_gc3pie_table(db: Db, table: str) -> None:
    db.execute(gc3pie_create_table(db.backend, table, "extra VARCHAR(50)"))
    assert db.column_type(table, "data") == GC3PIE_PAYLOAD_TYPE[db.backend]
    for id_, state, extra in OLD_ROWS:
        # GC3Pie pickled with the highest protocol of its Python; 2 is what Python 2 wrote.
        db.execute(f"INSERT INTO {table} (id, data, state, extra) VALUES (:i, :d, :s, :e)",
                   i=id_, d=pickle.dumps(old_payload(id_), protocol=2), s=state, e=extra)


def test_upgrade_adopts_a_gc3pie_table(db: Db, table: str) -> None:
    make_gc3pie_table(db, table)

    if db.backend == "postgresql":
        typedstore.upgrade(db.url, table)
    else:
        run_alembic("-x", f"url={db.url}", "-x", f"table={table}", "upgrade", "head")

    assert db.revisions(table) == [HEAD]
    assert db.columns(table) == {"id", "data", "state", "extra", "version", "updated_at",
                                 "_checksum", "_mac", "_root"}
    assert db.column_type(table, "data") == PAYLOAD_TYPE[db.backend]
    assert f"ix_{table}_state" in db.indexes(table)
    rows = db.rows(f"SELECT id, state, extra, version, updated_at FROM {table} ORDER BY id")
    assert [(r[0], r[1], r[2]) for r in rows] == OLD_ROWS
    assert all(r[3] == 1 and r[4] is None for r in rows)  # version defaulted for old rows
    assert db.payloads(table) == {id_: old_payload(id_) for id_, _, _ in OLD_ROWS}
    assert db.counter(table) == 43  # max(id) + 1

    with make_store(db.at(table)) as store:
        for id_, _, _ in OLD_ROWS:
            assert store.load(id_) == old_payload(id_)
        new_ids = [store.save({"new": i}) for i in range(3)]
        assert all(int(i) > 42 for i in new_ids)
        assert len(set(new_ids)) == 3
    with make_store(db.at(table), create=False) as store:
        assert sorted(int(i) for i in store.list()) == sorted(
            [3, 7, 42, *(int(i) for i in new_ids)])
        assert [store.load(i) for i in new_ids] == [{"new": i} for i in range(3)]
    # The extra column is still GC3Pie's: old values kept, NULL for new rows.
    extras = dict(db.rows(f"SELECT id, extra FROM {table}"))
    assert extras[3] == "three" and extras[42] == "forty-two"
    assert all(extras[int(i)] is None for i in new_ids)


def test_create_false_reads_a_gc3pie_table_as_it_is(db: Db, table: str) -> None:
    make_gc3pie_table(db, table)

    with make_store(db.at(table), create=False) as store:
        assert sorted(int(i) for i in store.list()) == [3, 7, 42]
        assert store.load(7) == old_payload(7)
        rows = {row.id: row.state for row in store.query()}
        assert rows == {3: "NEW", 7: "RUNNING", 42: "TERMINATED"}

    # Nothing was written to the schema: no version table, no bookkeeping columns.
    assert not db.has_table(version_table(table))
    assert db.columns(table) == {"id", "data", "state", "extra"}
    assert db.column_type(table, "data") == GC3PIE_PAYLOAD_TYPE[db.backend]


def test_opening_with_create_adopts_the_table(db: Db, table: str) -> None:
    make_gc3pie_table(db, table)

    with make_store(db.at(table)) as store:
        assert store.load(42) == old_payload(42)
        new = store.save({"after": "adoption"})
        assert int(new) == 43

    assert db.revisions(table) == [HEAD]
    assert {"extra", "version", "updated_at"} <= db.columns(table)
    assert db.column_type(table, "data") == PAYLOAD_TYPE[db.backend]


def test_an_adopted_table_takes_records_larger_than_gc3pies_blob(db: Db, table: str) -> None:
    # Issue 9: on MariaDB GC3Pie's BLOB stayed, and a 100 KB record failed with a
    # raw "DataError 1406 Data too long" (strict mode) or was cut (otherwise).
    make_gc3pie_table(db, table)
    big = {"blob": bytes(range(256)) * (LARGE // 256 + 1)}

    with make_store(db.at(table)) as store:
        big_id = store.save(big)
    with make_store(db.at(table), create=False) as store:
        assert store.load(big_id) == big
        assert store.load(7) == old_payload(7)
    assert db.column_type(table, "data") == PAYLOAD_TYPE[db.backend]
    assert len(db.payload_bytes(table)[int(big_id)]) > LARGE
    extras = dict(db.rows(f"SELECT id, extra FROM {table}"))
    assert extras[3] == "three" and extras[42] == "forty-two"


def narrow_adopted_table(db: Db, table: str) -> None:
    """A GC3Pie table adopted by a typedstore that kept GC3Pie's BLOB (MySQL only)."""
    make_gc3pie_table(db, table)
    typedstore.upgrade(db.url, table)
    db.execute(f"ALTER TABLE {table} MODIFY data BLOB NULL")
    assert db.column_type(table, "data") == "BLOB"
    assert db.revisions(table) == [HEAD]


def test_opening_with_create_widens_a_narrow_payload_column(mysql_db: Db, table: str) -> None:
    db = mysql_db
    narrow_adopted_table(db, table)
    big = {"blob": b"x" * LARGE}

    with make_store(db.at(table)) as store:
        big_id = store.save(big)
    assert db.column_type(table, "data") == "LONGBLOB"
    with make_store(db.at(table)) as store:
        assert store.load(big_id) == big
        assert store.load(42) == old_payload(42)


@pytest.mark.parametrize("how", ["upgrade", "command"])
def test_upgrading_widens_a_narrow_payload_column(mysql_db: Db, table: str, how: str) -> None:
    db = mysql_db
    narrow_adopted_table(db, table)

    if how == "upgrade":
        assert typedstore.upgrade(db.url, table) == []
    else:
        run_typedstore("upgrade", db.url, "--table", table)
    assert db.column_type(table, "data") == "LONGBLOB"
    assert db.revisions(table) == [HEAD]
    assert db.payloads(table) == {id_: old_payload(id_) for id_, _, _ in OLD_ROWS}


def test_create_false_on_a_missing_table_is_a_schema_error(db: Db, table: str) -> None:
    with pytest.raises(SchemaError) as info:
        make_store(db.at(table), create=False)
    assert info.value.table == table
    assert info.value.command is not None and "upgrade head" in info.value.command
    assert not db.has_table(table)
