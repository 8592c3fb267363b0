"""Adopting a table GC3Pie wrote: rows and extra columns kept, bookkeeping added.

The GC3Pie table is made by hand with each backend's payload type. It is adopted
with the ``alembic`` command on SQLite and MariaDB and with ``typedstore.upgrade``
on PostgreSQL.
"""

from __future__ import annotations

import pickle

import pytest

import typedstore
from tests.migrations.support import Db, run_alembic
from typedstore import SchemaError, make_store
from typedstore.schema import version_table

PAYLOAD_TYPE = {"sqlite": "BLOB", "postgresql": "BYTEA", "mysql": "LONGBLOB"}

#: GC3Pie's rows: ids with gaps, states, the extra column's values.
OLD_ROWS = [
    (3, "NEW", "three"),
    (7, "RUNNING", None),
    (42, "TERMINATED", "forty-two"),
]


def old_payload(id_: int) -> dict[str, object]:
    return {"jobname": f"gc3-{id_}", "args": [id_, str(id_)], "nested": {"id": id_}}


def make_gc3pie_table(db: Db, table: str) -> None:
    db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, data {PAYLOAD_TYPE[db.backend]}, "
               "state VARCHAR(128), extra VARCHAR(50))")
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

    assert db.revisions(table) == ["ts0002"]
    assert db.columns(table) == {"id", "data", "state", "extra", "version", "updated_at"}
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


def test_opening_with_create_adopts_the_table(db: Db, table: str) -> None:
    make_gc3pie_table(db, table)

    with make_store(db.at(table)) as store:
        assert store.load(42) == old_payload(42)
        new = store.save({"after": "adoption"})
        assert int(new) == 43

    assert db.revisions(table) == ["ts0002"]
    assert {"extra", "version", "updated_at"} <= db.columns(table)


def test_create_false_on_a_missing_table_is_a_schema_error(db: Db, table: str) -> None:
    with pytest.raises(SchemaError) as info:
        make_store(db.at(table), create=False)
    assert info.value.table == table
    assert info.value.command is not None and "upgrade head" in info.value.command
    assert not db.has_table(table)
