"""Tables in the layout GC3Pie's SqlStore creates, used by typedstore's SqlStore.

Each test creates the table with the CREATE TABLE that GC3Pie 2.6.8 emits on
its backend (:data:`tests.migrations.support.GC3PIE_DDL`: ``id``, ``data`` --
a 64 KB ``BLOB`` on MySQL/MariaDB --, ``state`` and one ``extra_fields`` column,
``jobname VARCHAR(256)``). The rows already in it are plain pickles of plain
values put there with SQL, or records typedstore saved. Nothing here imitates
GC3Pie's own pickles: records GC3Pie writes and reads are round-tripped with
the real GC3Pie (``tests/gc3pie``, and ``test_sql_gc3pie_writer.py``).
"""

from __future__ import annotations

import pickle
import pickletools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sql_jobs import SQL_BACKENDS, Job, Savers, pg_backend_pid, pg_wait_for_blocked

from tests.migrations.support import gc3pie_create_table
from typedstore import GetAttribute, SaveError, SchemaError, SqlStore, StoreRow, make_store

OpenStore = Callable[..., Any]

on_sql_backends = pytest.mark.parametrize("backend", SQL_BACKENDS)

#: Rows in the table before typedstore opens it: id, state, jobname.
OLD_ROWS = [(3, "TERMINATED", "x3"), (4, "RUNNING", "x4"), (9, "NEW", None),
            (10, "RUNNING", "x10")]
OLD_IDS = [3, 4, 9, 10]
#: More than GC3Pie's BLOB holds on MySQL/MariaDB (65,535 bytes).
LARGE = 100_000
#: The payload column's type: GC3Pie's, and after adoption typedstore's.
GC3PIE_PAYLOAD = {"sqlite": "BLOB", "postgresql": "BYTEA", "mysql": "BLOB"}
ADOPTED_PAYLOAD = {"sqlite": "BLOB", "postgresql": "BYTEA", "mysql": "LONGBLOB"}


def old_value(id_: int) -> dict[str, Any]:
    return {"n": id_, "args": [id_, str(id_)]}


def jobname_field() -> dict[sa.Column[Any], Callable[[Any], Any]]:
    """The ``extra_fields`` of the GC3Pie table: ``jobname`` from the attribute."""
    return {sa.Column("jobname", sa.String(256)): GetAttribute("jobname")}


def split_url(store_url: str) -> tuple[str, str]:
    base, _, fragment = store_url.partition("#")
    return base, fragment.split("=", 1)[1]


def sql(store_url: str, statement: str, **params: Any) -> list[Any]:
    """Run one statement on the store's database; the rows it returned, if any."""
    base, _ = split_url(store_url)
    engine = sa.create_engine(base, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(statement), params)
            return list(result.all()) if result.returns_rows else []
    finally:
        engine.dispose()


def create_gc3pie_table(store_url: str, backend: str, rows: bool = True) -> None:
    """GC3Pie's table (with a ``jobname`` extra column) holding :data:`OLD_ROWS`."""
    _, name = split_url(store_url)
    sql(store_url, gc3pie_create_table(backend, name, "jobname VARCHAR(256)"))
    for id_, state, jobname in OLD_ROWS if rows else ():
        sql(store_url, f"INSERT INTO {name} (id, data, state, jobname) VALUES (:i, :d, :s, :j)",
            i=id_, d=pickle.dumps(old_value(id_), protocol=2), s=state, j=jobname)


def ensure_counter(store_url: str) -> None:
    """Give the database typedstore's id counter table (another store's), so that a
    store opened with create=False on the GC3Pie table can issue ids."""
    make_store(store_url + "_counter").close()


def columns(store_url: str) -> dict[str, str]:
    """Column name -> SQL type of the store's table."""
    base, name = split_url(store_url)
    engine = sa.create_engine(base, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return {c["name"]: str(c["type"].compile(dialect=conn.dialect))
                    for c in sa.inspect(conn).get_columns(name)}
    finally:
        engine.dispose()


def jobnames(store_url: str) -> dict[int, str | None]:
    _, name = split_url(store_url)
    return {int(i): j for i, j in sql(store_url, f"SELECT id, jobname FROM {name}")}


def check_old_rows(store: Any) -> None:
    for id_ in OLD_IDS:
        assert store.load(id_) == old_value(id_)


# ---------------------------------------------------------------- adoption


@on_sql_backends
def test_gc3pie_table_is_adopted(store_url: str, open_store: OpenStore, backend: str) -> None:
    create_gc3pie_table(store_url, backend)
    store = open_store()  # create=True (the default) adopts the table
    check_old_rows(store)
    assert store.query(state="RUNNING").ids() == [4, 10]
    new_id = store.save(Job("typedstore job"))
    assert new_id > 10

    found = columns(store_url)
    assert {"id", "data", "state", "jobname", "version", "updated_at"} <= set(found)
    assert found["data"] == ADOPTED_PAYLOAD[backend]
    # The extra column keeps GC3Pie's values; this store has no extra_fields: NULL.
    assert jobnames(store_url) == {3: "x3", 4: "x4", 9: None, 10: "x10", new_id: None}
    fresh = open_store()
    assert fresh.list() == [*OLD_IDS, new_id]
    assert fresh.load(new_id).jobname == "typedstore job"
    check_old_rows(fresh)


@on_sql_backends
def test_adopted_gc3pie_records_can_be_replaced(
    store_url: str, open_store: OpenStore, backend: str
) -> None:
    create_gc3pie_table(store_url, backend)
    store = open_store()
    store.replace(4, {"n": 4, "version": 2})
    loner = Job("loner")
    store.replace(9, loner)
    loner.jobname = "loner v2"
    assert store.save(loner) == 9
    fresh = open_store()
    assert fresh.load(4) == {"n": 4, "version": 2}
    assert fresh.load(9).jobname == "loner v2"
    assert fresh.list() == OLD_IDS


@on_sql_backends
def test_gc3pie_table_opened_without_create_is_left_as_it_is(
    store_url: str, open_store: OpenStore, backend: str
) -> None:
    create_gc3pie_table(store_url, backend)
    before = columns(store_url)
    store = open_store(create=False)
    check_old_rows(store)
    assert store.query(state="NEW").ids() == [9]
    assert columns(store_url) == before
    assert set(before) == {"id", "data", "state", "jobname"}
    assert before["data"] == GC3PIE_PAYLOAD[backend]
    assert jobnames(store_url) == {3: "x3", 4: "x4", 9: None, 10: "x10"}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_gc3pie_table_without_create_counter_or_gc3pie_ids_refuses_to_save(
    store_url: str, open_store: OpenStore, backend: str
) -> None:
    # SQLite only: the server databases of a test run may hold the counter table already.
    create_gc3pie_table(store_url, backend)
    store = open_store(create=False, gc3pie_compatible=False)
    with pytest.raises(SchemaError) as info:
        store.save(Job("nowhere to count"))
    assert info.value.command and "upgrade" in info.value.command
    assert open_store(create=False).list() == OLD_IDS


def gc3pie_counter(path: Path) -> int:
    """The last number GC3Pie's counter file says was issued (8 hexadecimal digits)."""
    return int(path.read_text()[:8], 16)


@pytest.mark.parametrize("create", [True, False], ids=["adopted", "as_it_is"])
@on_sql_backends
def test_gc3pie_table_takes_ids_from_gc3pies_counter_file(
    store_url: str, open_store: OpenStore, backend: str, create: bool, gc3pie_id_file: Path
) -> None:
    """GC3Pie numbers its objects from its counter file and overwrites the row of an
    id it issues again, so a store on its table takes ids from that file too: above
    the file's number, the largest id in the table and the database's counter."""
    create_gc3pie_table(store_url, backend)
    store = open_store(create=create)  # no counter table needed when create=False
    first = store.save(Job("first"))
    assert first == 11  # above the table's largest id, 10
    assert gc3pie_counter(gc3pie_id_file) >= first

    # GC3Pie issued numbers meanwhile (the file's format is GC3Pie's: 8 hex digits).
    gc3pie_id_file.write_text(f"{500:08x} -- DO NOT REMOVE OR ALTER THIS FILE\n")
    again = open_store(create=create)
    ids = [again.save(Job("after GC3Pie")), *again.save_many([Job("a"), Job("b")])]
    assert ids == [501, 502, 503]
    assert gc3pie_counter(gc3pie_id_file) >= 503

    # A store told not to share ids with GC3Pie still never reissues these.
    if not create:
        ensure_counter(store_url)
    other = open_store(create=create, gc3pie_compatible=False)
    assert other.save(Job("database counter")) > 503
    assert len(set(open_store().list())) == len(OLD_IDS) + 5


# ---------------------------------------------------------------- extra_fields in rows


@pytest.mark.parametrize("create", [True, False], ids=["adopted", "as_it_is"])
@on_sql_backends
def test_gc3pie_extra_fields_fill_the_column_and_rows_carry_it(
    store_url: str, open_store: OpenStore, backend: str, create: bool
) -> None:
    # Issue 9: rows() lacked the extra_fields columns (tuples() had them).
    create_gc3pie_table(store_url, backend)
    if not create:
        ensure_counter(store_url)
    store = open_store(create=create, extra_fields=jobname_field())
    assert isinstance(store, SqlStore)
    new_id = store.save(Job("with extra"))
    store.replace(9, Job("loner"))
    expected = {3: "x3", 4: "x4", 9: "loner", 10: "x10", new_id: "with extra"}
    assert jobnames(store_url) == expected

    rows = store.query().rows()
    assert [type(r) for r in rows] == [StoreRow] * 5
    assert {r.id: r.jobname for r in rows} == expected
    assert {r.id: r.model_extra for r in rows} == {i: {"jobname": j} for i, j in expected.items()}
    assert {r.id: r.jobname for r in store.query().tuples()} == expected
    [row] = store.query(jobname="with extra").rows()
    assert (row.id, row.jobname, row.state) == (new_id, "with extra", "UNKNOWN")
    first = store.query(state="RUNNING").order_by("id").first()
    assert (first.id, first.jobname) == (4, "x4")
    assert "jobname='x4'" in repr(first)


# ---------------------------------------------------------------- payloads larger than BLOB


@on_sql_backends
def test_adopted_gc3pie_table_takes_a_large_record(
    store_url: str, open_store: OpenStore, backend: str
) -> None:
    # Issue 9: on MariaDB GC3Pie's 64 KB BLOB stayed after adoption, and this save
    # failed with a raw "DataError 1406 Data too long for column 'data'".
    create_gc3pie_table(store_url, backend)
    blob = bytes(range(256)) * (LARGE // 256 + 1)
    id_ = open_store().save(Job("big", blob=blob))
    assert open_store(create=False).load(id_).blob == blob
    assert columns(store_url)["data"] == ADOPTED_PAYLOAD[backend]


def too_large(info: pytest.ExceptionInfo[SaveError]) -> tuple[int, int]:
    """The size and the limit a SaveError for a too large record names."""
    found = re.search(r"is (\d+) bytes pickled, more than the (\d+) bytes", str(info.value))
    assert found, str(info.value)
    return int(found[1]), int(found[2])


@on_sql_backends
def test_gc3pie_table_without_create_refuses_a_record_its_column_cannot_hold(
    store_url: str, open_store: OpenStore, backend: str
) -> None:
    """Read as it is (create=False), GC3Pie's BLOB on MariaDB holds 65,535 bytes: a
    larger record is refused before anything is sent, naming the record, its size
    and the limit (it was a raw "DataError 1406"). PostgreSQL's BYTEA and SQLite's
    BLOB take it."""
    create_gc3pie_table(store_url, backend)
    ensure_counter(store_url)
    if backend == "mysql":
        check_large_record_refused(store_url, open_store(create=False))
    else:
        store = open_store(create=False)
        big_id = store.save(Job("big", blob=b"x" * LARGE))
        assert open_store(create=False).load(big_id).blob == b"x" * LARGE


@pytest.mark.parametrize("backend", ["mysql"])
def test_gc3pie_table_without_create_nor_strict_mode_refuses_a_large_record(
    store_url: str, open_store: OpenStore, backend: str
) -> None:
    """Without strict mode MariaDB would have cut the payload to 65,535 bytes silently."""
    create_gc3pie_table(store_url, backend)
    ensure_counter(store_url)
    not_strict = {"connect_args": {"init_command": "SET SESSION sql_mode=''"}}
    store = open_store(create=False, engine_options=not_strict)
    assert isinstance(store, SqlStore)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT @@SESSION.sql_mode").scalar() == ""
    check_large_record_refused(store_url, store)


def check_large_record_refused(store_url: str, store: Any) -> None:
    small = store.save(Job("small"))
    big = Job("big", blob=b"x" * LARGE)
    with pytest.raises(SaveError) as info:
        store.save(big)
    error = info.value
    assert error.field == "data"
    assert isinstance(error.id, int) and error.id > small
    assert f"record {error.id} " in str(error)
    size, limit = too_large(info)
    assert size > LARGE and limit == 65535
    assert "BLOB" in str(error) and "create=True" in str(error)
    assert not hasattr(big, "persistent_id")  # the save was rolled back

    # Nothing of it was written; the store goes on working, also for a batch.
    with pytest.raises(SaveError):
        store.save_many([Job("before"), Job("big again", blob=b"y" * LARGE), Job("after")])
    assert store.list() == [*OLD_IDS, small]
    another = store.save(Job("small again"))
    fresh = make_store(store_url, create=False)
    try:
        assert fresh.list() == [*OLD_IDS, small, another]
        assert fresh.load(another).jobname == "small again"
    finally:
        fresh.close()
    assert columns(store_url)["data"] == "BLOB"


# ---------------------------------------------------------------- ids GC3Pie's save can use


def payload_ids(data: bytes) -> list[tuple[str, Any]]:
    """``(class, seqno)`` of every id class a payload names, read off its opcodes
    (``module name`` of the class, then its ``(prefix, seqno)`` arguments)."""
    memo = {"MARK", "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"}
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(data) if op.name not in memo]
    return [(str(arg), ops[i + 2][1]) for i, (name, arg) in enumerate(ops)
            if name == "GLOBAL" and str(arg).endswith("Id")]


@pytest.mark.parametrize("create", [True, False], ids=["adopted", "as_it_is"])
@on_sql_backends
def test_records_in_a_gc3pie_table_carry_gc3pies_id_of_their_row(
    store_url: str, open_store: OpenStore, backend: str, create: bool
) -> None:
    """GC3Pie's ``SqlStore.save(obj)`` updates the row ``id == obj.persistent_id``
    (and inserts one if there is none): so a record typedstore writes into GC3Pie's
    table must name GC3Pie's own ``IntId`` class with its row's id, and no class of
    typedstore's (GC3Pie could not load it). The real GC3Pie does the load and the
    save in ``test_sql_gc3pie_writer.py``."""
    create_gc3pie_table(store_url, backend)
    if not create:
        ensure_counter(store_url)
    _, name = split_url(store_url)
    store = open_store(create=create, extra_fields=jobname_field())
    assert store.gc3pie_compatible
    id_ = store.save(Job("saved here"))

    [(data,)] = sql(store_url, f"SELECT data FROM {name} WHERE id = :i", i=int(id_))
    data = bytes(data)
    assert payload_ids(data) == [("gc3libs.persistence.sql IntId", int(id_))]
    assert b"typedstore" not in data
    assert open_store(create=False).load(id_).persistent_id == id_


@pytest.mark.parametrize("create", [True, False], ids=["adopted", "as_it_is"])
@on_sql_backends
def test_typedstore_updates_rows_another_writer_inserted_in_place(
    store_url: str, open_store: OpenStore, backend: str, create: bool
) -> None:
    """A row inserted under an id of the writer's own (as GC3Pie's save inserts), loaded
    and saved by typedstore: updated in place, also without version columns."""
    create_gc3pie_table(store_url, backend)
    _, name = split_url(store_url)
    sql(store_url, f"INSERT INTO {name} (id, data, state, jobname) VALUES (77, :d, 'NEW', 'j')",
        d=pickle.dumps(Job("inserted", persistent_id=77)))
    store = open_store(create=create, extra_fields=jobname_field())
    theirs = store.load(77)
    theirs.jobname = "updated by typedstore"
    assert store.save(theirs) == 77
    store.replace(4, Job("replaced by typedstore"))
    assert open_store(create=False).list() == [*OLD_IDS, 77]
    assert jobnames(store_url) == {3: "x3", 4: "replaced by typedstore", 9: None, 10: "x10",
                                   77: "updated by typedstore"}


@on_sql_backends
def test_only_tables_gc3pie_created_get_gc3pie_payloads(
    store_url: str, open_store: OpenStore, backend: str
) -> None:
    ts_url = store_url + "_typedstore"  # a table typedstore created
    with make_store(ts_url) as own:
        assert not own.gc3pie_compatible
        own.save(Job("own"))
    [(data,)] = sql(ts_url, f"SELECT data FROM {split_url(ts_url)[1]}")
    assert b"gc3libs" not in bytes(data)
    create_gc3pie_table(store_url, backend)
    assert open_store().gc3pie_compatible  # adopted
    assert open_store(create=False).gc3pie_compatible
    assert not open_store(gc3pie_compatible=False).gc3pie_compatible
    with make_store(ts_url, gc3pie_compatible=True) as forced:
        assert forced.gc3pie_compatible


# ---------------------------------------------------------------- concurrent savers


@pytest.mark.slow
@pytest.mark.parametrize("gc3pie_ids", [False, True], ids=["database_counter", "gc3pie_file"])
@on_sql_backends
def test_processes_saving_into_a_gc3pie_table_opened_without_create(
    store_url: str, open_store: OpenStore, backend: str, gc3pie_ids: bool
) -> None:
    """With the database's counter: it has no row for a table nobody adopted, so the
    first id block of each process creates it, concurrently; on PostgreSQL the race is
    forced: another session inserts the row and commits it only once both savers wait
    on its insert. With GC3Pie's counter file: both take their blocks from it."""
    ensure_counter(store_url)
    create_gc3pie_table(store_url, backend)
    base, name = split_url(store_url)
    engine = sa.create_engine(base)
    counter = sa.table("typedstore_ids", sa.column("table_name"), sa.column("next_id"))
    try:
        with Savers(store_url, 2, 10, create=False, gc3pie_compatible=gc3pie_ids) as savers:
            if backend == "postgresql" and not gc3pie_ids:
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
    assert store.list() == sorted([*OLD_IDS, *ids])
    for id_, jobname in saved:
        assert store.load(id_).jobname == jobname
    check_old_rows(store)
