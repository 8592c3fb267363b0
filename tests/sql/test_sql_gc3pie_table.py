"""Tables written by GC3Pie's SqlStore open as typedstore stores.

Each test builds, with SQLAlchemy Core, the table GC3Pie creates (``id INTEGER
PRIMARY KEY, data BLOB/BYTEA/LONGBLOB, state VARCHAR(128)`` plus an extra
column) and fills it with pickles written the way GC3Pie writes them: a
referenced Persistable is stored as its own row and pickled as a persistent id,
an instance of ``gc3libs.persistence.sql.IntId``. That class exists only while
the pickles are written (a throwaway class registered under GC3Pie's module
name), so loading relies on typedstore's own alias for it.
"""

from __future__ import annotations

import io
import pickle
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from sql_jobs import SQL_BACKENDS, Job, Savers, pg_backend_pid, pg_wait_for_blocked
from sqlalchemy.dialects import mysql

from typedstore import GetAttribute, IntId, LoadError, SchemaError, SqlStore, make_store

OpenStore = Callable[..., Any]

on_sql_backends = pytest.mark.parametrize("backend", SQL_BACKENDS)

GC3PIE_MODULES = ("gc3libs", "gc3libs.persistence", "gc3libs.persistence.sql")


@contextmanager
def gc3pie_intid() -> Iterator[type]:
    """GC3Pie's ``IntId`` class, importable as ``gc3libs.persistence.sql.IntId`` meanwhile."""
    assert not any(name in sys.modules for name in GC3PIE_MODULES), "real gc3libs imported?"

    class IntIdGC3(int):
        def __new__(cls, obj: Any, prefix: Any = None, seqno: Any = None) -> IntIdGC3:
            return int.__new__(cls, seqno)

        def __getnewargs__(self) -> tuple[Any, ...]:
            return (None, None, int(self))

    IntIdGC3.__module__ = "gc3libs.persistence.sql"
    IntIdGC3.__name__ = IntIdGC3.__qualname__ = "IntId"
    modules = {name: types.ModuleType(name) for name in GC3PIE_MODULES}
    modules["gc3libs"].persistence = modules["gc3libs.persistence"]  # type: ignore[attr-defined]
    modules["gc3libs.persistence"].sql = modules["gc3libs.persistence.sql"]  # type: ignore[attr-defined]
    modules["gc3libs.persistence.sql"].IntId = IntIdGC3  # type: ignore[attr-defined]
    sys.modules.update(modules)
    try:
        yield IntIdGC3
    finally:
        for name in GC3PIE_MODULES:
            sys.modules.pop(name, None)


class GC3PiePickler(pickle.Pickler):
    """GC3Pie's pickler: every object with a ``persistent_id`` but the root is a reference."""

    def __init__(self, stream: Any, root: Any, protocol: int) -> None:
        super().__init__(stream, protocol)
        self.root = root

    def persistent_id(self, obj: Any) -> Any:
        if obj is not self.root and hasattr(obj, "persistent_id") and not isinstance(obj, type):
            return obj.persistent_id
        return None


def gc3pie_pickle(obj: Any, protocol: int) -> bytes:
    stream = io.BytesIO()
    GC3PiePickler(stream, obj, protocol).dump(obj)
    return stream.getvalue()


def split_url(store_url: str) -> tuple[str, str]:
    base, _, fragment = store_url.partition("#")
    return base, fragment.split("=", 1)[1]


def gc3pie_table(name: str) -> sa.Table:
    return sa.Table(
        name, sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("data", sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")),
        sa.Column("state", sa.String(128)),
        sa.Column("extra", sa.String(256)),
    )


def create_gc3pie_store(store_url: str) -> None:
    """GC3Pie's table with records 3 (child), 4 and 10 (parents sharing it) and 9."""
    base, name = split_url(store_url)
    table = gc3pie_table(name)
    with gc3pie_intid() as GCIntId:
        child = Job("child", cores=2)
        parent = Job("parent", child=child)
        loner = Job("loner")
        other = Job("other parent", child=child)
        for obj, id_ in ((child, 3), (parent, 4), (loner, 9), (other, 10)):
            object.__setattr__(obj, "persistent_id", GCIntId(obj, None, id_))
        rows = [
            {"id": 3, "data": gc3pie_pickle(child, 2), "state": "TERMINATED", "extra": "x3"},
            {"id": 4, "data": gc3pie_pickle(parent, 2), "state": "RUNNING", "extra": "x4"},
            {"id": 9, "data": gc3pie_pickle(loner, 2), "state": "NEW", "extra": None},
            # Python 2's GC3Pie pickled with protocol 0: persistent ids become text.
            {"id": 10, "data": gc3pie_pickle(other, 0), "state": "RUNNING", "extra": "x10"},
        ]
        assert b"gc3libs.persistence.sql" in rows[1]["data"]
    engine = sa.create_engine(base)
    try:
        with engine.begin() as conn:
            table.create(conn)
            conn.execute(table.insert(), rows)
    finally:
        engine.dispose()
    assert not any(name in sys.modules for name in GC3PIE_MODULES)


def columns_and_extra(store_url: str) -> tuple[set[str], dict[int, str | None]]:
    base, name = split_url(store_url)
    engine = sa.create_engine(base)
    try:
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns(name)}
            t = sa.table(name, sa.column("id"), sa.column("extra"))
            extra = {int(i): e for i, e in conn.execute(sa.select(t.c.id, t.c.extra))}
    finally:
        engine.dispose()
    return columns, extra


def check_gc3pie_records(store: Any, *added: int) -> None:
    """GC3Pie's records load, sharing restored; ``added``: ids saved by typedstore since."""
    assert store.list() == [3, 4, 9, 10, *added]
    other = store.load(10)  # the protocol-0 record first: its reference is text
    parent = store.load(4)
    assert (parent.jobname, other.jobname) == ("parent", "other parent")
    assert parent.child is other.child is store.load(3)
    assert parent.child.jobname == "child"
    assert parent.child.cores == 2
    assert store.load(9).jobname == "loner"
    for id_ in (3, 4, 9, 10):
        obj = store.load(id_)
        assert obj.persistent_id == id_
        assert type(obj.persistent_id) is IntId


@on_sql_backends
def test_gc3pie_table_is_adopted(store_url: str, open_store: OpenStore) -> None:
    create_gc3pie_store(store_url)
    store = make_store(store_url)  # create=True (the default) adopts the table
    try:
        check_gc3pie_records(store)
        assert store.query(state="RUNNING").ids() == [4, 10]
        new_id = store.save(Job("typedstore job"))
        assert new_id > 10
    finally:
        store.close()
    columns, extra = columns_and_extra(store_url)
    assert {"id", "data", "state", "extra", "version", "updated_at"} <= columns
    assert extra == {3: "x3", 4: "x4", 9: None, 10: "x10", new_id: None}

    fresh = open_store()
    assert fresh.list() == [3, 4, 9, 10, new_id]
    assert fresh.load(new_id).jobname == "typedstore job"
    check_gc3pie_records(open_store(), new_id)


@on_sql_backends
def test_adopted_gc3pie_records_can_be_updated_and_replaced(
    store_url: str, open_store: OpenStore
) -> None:
    create_gc3pie_store(store_url)
    store = open_store()
    parent = store.load(4)
    parent.jobname = "parent v2"
    parent.child.cores = 4
    assert store.save(parent) == 4
    loner = store.load(9)
    store.replace(9, loner)
    store.replace(9, loner)  # an unchanged payload still matches its row
    fresh = open_store()
    assert fresh.load(4).jobname == "parent v2"
    assert fresh.load(10).child.cores == 4
    assert fresh.load(4).child is fresh.load(10).child
    assert fresh.list() == [3, 4, 9, 10]


@on_sql_backends
def test_gc3pie_extra_fields_fill_the_extra_column(store_url: str, open_store: OpenStore) -> None:
    create_gc3pie_store(store_url)
    store = open_store(extra_fields={sa.Column("extra", sa.String(256)): GetAttribute("jobname")})
    assert isinstance(store, SqlStore)
    new_id = store.save(Job("with extra"))
    loner = store.load(9)
    store.save(loner)
    check_gc3pie_records(store, new_id)
    _, extra = columns_and_extra(store_url)
    assert extra == {3: "x3", 4: "x4", 9: "loner", 10: "x10", new_id: "with extra"}
    assert store.query(extra="with extra").ids() == [new_id]


@on_sql_backends
def test_gc3pie_table_opened_without_create_is_left_as_it_is(
    store_url: str, open_store: OpenStore
) -> None:
    create_gc3pie_store(store_url)
    before, _ = columns_and_extra(store_url)
    store = open_store(create=False)
    check_gc3pie_records(store)
    assert store.query(state="NEW").ids() == [9]
    after, extra = columns_and_extra(store_url)
    assert after == before == {"id", "data", "state", "extra"}
    assert extra == {3: "x3", 4: "x4", 9: None, 10: "x10"}


@on_sql_backends
def test_gc3pie_record_whose_reference_is_missing_raises_load_error(
    store_url: str, open_store: OpenStore
) -> None:
    create_gc3pie_store(store_url)
    base, name = split_url(store_url)
    engine = sa.create_engine(base)
    try:
        with engine.begin() as conn:
            conn.execute(gc3pie_table(name).delete().where(sa.column("id") == 3))
    finally:
        engine.dispose()
    store = open_store()
    with pytest.raises(LoadError) as info:
        store.load(4)
    assert "3" in str(info.value)
    assert store.load(9).jobname == "loner"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_gc3pie_table_without_create_and_without_counter_refuses_to_save(
    store_url: str, open_store: OpenStore
) -> None:
    # SQLite only: the server databases of a test run may hold the counter table already.
    create_gc3pie_store(store_url)
    store = open_store(create=False)
    with pytest.raises(SchemaError) as info:
        store.save(Job("nowhere to count"))
    assert info.value.command and "upgrade" in info.value.command
    assert open_store(create=False).list() == [3, 4, 9, 10]


@pytest.mark.slow
@on_sql_backends
def test_processes_saving_into_a_gc3pie_table_opened_without_create(
    store_url: str, open_store: OpenStore, backend: str, request: pytest.FixtureRequest
) -> None:
    """The id counter has no row for a table nobody adopted: the first id block of each
    process creates it, concurrently. On PostgreSQL the race is forced: another session
    inserts the row and commits it only once both savers wait on its insert."""
    make_store(store_url + "_other").close()  # the database has the counter table
    create_gc3pie_store(store_url)
    base, name = split_url(store_url)
    engine = sa.create_engine(base)
    counter = sa.table("typedstore_ids", sa.column("table_name"), sa.column("next_id"))
    try:
        with Savers(store_url, 2, 10, create=False) as savers:
            if backend == "postgresql":
                with engine.connect() as other:
                    other.execute(counter.insert().values(table_name=name, next_id=11))
                    savers.go()
                    pg_wait_for_blocked(engine, pg_backend_pid(other), depth=1, at_least=2)
                    other.commit()
            else:
                savers.go()
            saved = savers.finish()
    finally:
        engine.dispose()
    ids = [i for i, _ in saved]
    assert len(set(ids)) == len(ids) == 20
    assert min(ids) > 10
    store = open_store(create=False)
    assert store.list() == sorted([3, 4, 9, 10, *ids])
    for id_, jobname in saved:
        assert store.load(id_).jobname == jobname
    assert store.load(4).child is store.load(3)
