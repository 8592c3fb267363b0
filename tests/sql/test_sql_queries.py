"""Typed queries give the same answers on every backend.

The expected answers are computed in Python from :data:`DATA`, the jobs saved; each
test asserts the same lists on the file store (sidecar index), SQLite, PostgreSQL
and MariaDB. Results are compared by job name (ids differ between backends) and by
the ids each backend issued for those names.
"""

from __future__ import annotations

import types
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sql_jobs import SqlTestJobRow, make_job

from typedstore import LoadError, SqlStore, Store, make_store

Row = SqlTestJobRow
OpenStore = Callable[..., Store]

#: (jobname, requested_cores or None, state or None); saved in this order.
DATA: list[tuple[str, int | None, str | None]] = [
    ("job00", 1, "NEW"),
    ("job01", 16, "RUNNING"),
    ("job02", 4, "RUNNING"),
    ("job03", 32, "TERMINATED"),
    ("job04", 8, "RUNNING"),
    ("job05", 12, "NEW"),
    ("job06", None, "RUNNING"),
    ("job07", 64, None),
    ("job08", 9, "RUNNING"),
    ("job09", 2, "TERMINATED"),
    ("job10", 24, "RUNNING"),
    ("job11", 8, "NEW"),
]


@dataclass(frozen=True)
class Expected:
    """What a row of DATA looks like once stored (defaults applied)."""

    jobname: str
    cores: int
    state: str


EXPECTED = [Expected(n, 1 if c is None else c, "UNKNOWN" if s is None else s) for n, c, s in DATA]


def names(rows: Any) -> list[str]:
    return [row.jobname for row in rows]


def by_cores_desc(rows: list[Expected]) -> list[Expected]:
    """Python's version of ``order_by(Row.cores.desc(), Row.jobname)``."""
    return sorted(rows, key=lambda r: (-r.cores, r.jobname))


@dataclass
class Populated:
    url: str
    ids: dict[str, Any]  # jobname -> id issued by this backend


@pytest.fixture(scope="module", params=["file", "sqlite", "postgresql", "mysql"])
def populated(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Populated:
    """One store per backend holding DATA, shared by the read-only tests of this module."""
    backend = request.param
    table = f"sqlq_{uuid.uuid4().hex[:12]}"
    if backend == "file":
        url = str(tmp_path_factory.mktemp("queries") / "jobs")
    elif backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('queries') / 'q.db'}#table={table}"
    elif backend == "postgresql":
        url = f"{request.getfixturevalue('pg_base_url')}#table={table}"
    else:
        url = f"{request.getfixturevalue('mysql_base_url')}#table={table}"
    store = make_store(url, row_model=Row)
    ids = {}
    for name, cores, state in DATA:
        ids[name] = store.save(make_job(name, cores=cores, state=state))
    store.close()
    return Populated(url, ids)


@pytest.fixture
def qstore(populated: Populated) -> Iterator[Any]:
    """A fresh store instance on the populated store (nothing loaded yet)."""
    store = make_store(populated.url, row_model=Row)
    yield store
    store.close()


# ---------------------------------------------------------------- conditions


def test_all_rows_in_id_order(qstore: Any) -> None:
    assert names(qstore.query()) == [e.jobname for e in EXPECTED]


def test_condition_on_state(qstore: Any) -> None:
    expected = [e.jobname for e in EXPECTED if e.state == "RUNNING"]
    assert names(qstore.query(Row.state == "RUNNING")) == expected


def test_condition_on_cores(qstore: Any) -> None:
    expected = [e.jobname for e in EXPECTED if e.cores > 8]
    assert names(qstore.query(Row.cores > 8)) == expected


def test_default_and_unknown_values_are_queryable(qstore: Any) -> None:
    assert names(qstore.query(Row.cores == 1)) == ["job00", "job06"]
    assert names(qstore.query(Row.state == "UNKNOWN")) == ["job07"]


def test_several_conditions_and_where_chaining(qstore: Any) -> None:
    expected = [e.jobname for e in EXPECTED if e.state == "RUNNING" and e.cores > 8]
    assert expected  # the data makes this a real filter
    assert names(qstore.query(Row.state == "RUNNING", Row.cores > 8)) == expected
    assert names(qstore.query(Row.state == "RUNNING").where(Row.cores > 8)) == expected
    assert names(qstore.query().where(Row.cores > 8).where(state="RUNNING")) == expected


def test_sql_operators(qstore: Any) -> None:
    wanted = {"NEW", "TERMINATED"}
    expected = [e.jobname for e in EXPECTED if e.state in wanted and 2 <= e.cores <= 12]
    assert names(qstore.query(Row.state.in_(sorted(wanted)), Row.cores.between(2, 12))) == expected
    assert names(qstore.query(Row.jobname.like("job1%"))) == ["job10", "job11"]


def test_keyword_equality(qstore: Any) -> None:
    expected = [e.jobname for e in EXPECTED if e.state == "RUNNING"]
    assert names(qstore.query(state="RUNNING")) == expected
    expected = [e.jobname for e in EXPECTED if e.state == "NEW" and e.cores == 8]
    assert names(qstore.query(state="NEW", cores=8)) == expected == ["job11"]


def test_keyword_of_unknown_column_raises(qstore: Any) -> None:
    with pytest.raises(ValueError, match="no_such_column"):
        qstore.query(no_such_column=1)


# ---------------------------------------------------------------- ordering and slicing


def test_order_by_descending(qstore: Any) -> None:
    rows = qstore.query().order_by(Row.cores.desc(), Row.jobname)
    assert names(rows) == [e.jobname for e in by_cores_desc(EXPECTED)]


def test_order_by_column_names(qstore: Any) -> None:
    rows = qstore.query(state="RUNNING").order_by("cores", "jobname")
    running = [e for e in EXPECTED if e.state == "RUNNING"]
    expected = sorted(running, key=lambda e: (e.cores, e.jobname))
    assert names(rows) == [e.jobname for e in expected]


@pytest.mark.parametrize(("limit", "offset"), [(3, None), (3, 2), (None, 9), (5, 10), (4, 20)])
def test_limit_and_offset(qstore: Any, limit: int | None, offset: int | None) -> None:
    ordered = [e.jobname for e in by_cores_desc(EXPECTED)]
    start = offset or 0
    expected = ordered[start:] if limit is None else ordered[start:start + limit]
    query = qstore.query().order_by(Row.cores.desc(), Row.jobname).limit(limit).offset(offset)
    assert names(query) == expected
    assert query.count() == len(expected)


def test_count(qstore: Any) -> None:
    assert qstore.query().count() == len(DATA)
    assert qstore.query(Row.cores > 8).count() == sum(e.cores > 8 for e in EXPECTED)
    assert qstore.query(state="RUNNING").count() == sum(e.state == "RUNNING" for e in EXPECTED)
    assert qstore.query(state="NO SUCH STATE").count() == 0


def test_first(qstore: Any) -> None:
    top = qstore.query(Row.state != "UNKNOWN").order_by(Row.cores.desc()).first()
    expected = by_cores_desc([e for e in EXPECTED if e.state != "UNKNOWN"])[0]
    assert isinstance(top, Row)
    assert (top.jobname, top.cores, top.state) == (expected.jobname, expected.cores, expected.state)
    assert qstore.query().first().jobname == EXPECTED[0].jobname
    assert qstore.query(state="NO SUCH STATE").first() is None


# ---------------------------------------------------------------- result forms


def test_ids(qstore: Any, populated: Populated) -> None:
    expected = [e.jobname for e in EXPECTED if e.state == "RUNNING"]
    ids = qstore.query(state="RUNNING").ids()
    assert ids == [populated.ids[name] for name in expected]
    listed = qstore.list()
    assert {type(i) for i in ids} == {type(i) for i in listed}
    assert qstore.query().ids() == listed


def test_rows_are_row_model_instances_without_payload(qstore: Any, populated: Populated) -> None:
    rows = qstore.query(Row.cores >= 24).rows()
    expected = [e for e in EXPECTED if e.cores >= 24]
    assert all(isinstance(r, Row) for r in rows)
    assert [(r.jobname, r.cores, r.state) for r in rows] == [
        (e.jobname, e.cores, e.state) for e in expected
    ]
    assert [str(r.id) for r in rows] == [str(populated.ids[e.jobname]) for e in expected]
    assert all(r.data is None for r in rows)


def test_tuples(qstore: Any) -> None:
    rows = list(qstore.query(Row.cores < 4).tuples())
    expected = [e for e in EXPECTED if e.cores < 4]
    assert [(r.jobname, r.cores, r.state) for r in rows] == [
        (e.jobname, e.cores, e.state) for e in expected
    ]
    assert "data" not in rows[0]._fields
    assert {"id", "state", "jobname", "cores"} <= set(rows[0]._fields)


def test_objects_are_the_loaded_objects(qstore: Any, populated: Populated) -> None:
    preloaded = qstore.load(populated.ids["job04"])
    objs = list(qstore.query(state="RUNNING").objects())
    expected = [e.jobname for e in EXPECTED if e.state == "RUNNING"]
    assert [o.jobname for o in objs] == expected
    assert [o.persistent_id for o in objs] == [populated.ids[n] for n in expected]
    assert any(o is preloaded for o in objs)
    for obj in objs:
        assert qstore.load(obj.persistent_id) is obj
    again = list(qstore.query(state="RUNNING").objects())
    assert all(a is b for a, b in zip(again, objs, strict=True))


def test_objects_with_limit_and_order(qstore: Any) -> None:
    objs = list(qstore.query().order_by(Row.cores.desc(), Row.jobname).limit(2).objects())
    assert [o.jobname for o in objs] == [e.jobname for e in by_cores_desc(EXPECTED)[:2]]
    assert objs[0] is qstore.load(objs[0].persistent_id)


def test_query_naming_a_column_the_store_lacks_raises(
    open_store: OpenStore, backend: str, request: pytest.FixtureRequest
) -> None:
    typed: Any = open_store(row_model=Row)
    typed.save(make_job("x", cores=3))
    plain: Any = open_store()  # no row model: the base columns only
    assert plain.load(typed.list()[0]).jobname == "x"
    with pytest.raises(ValueError, match="cores"):
        plain.query(Row.cores > 1)
    assert names(typed.query(Row.cores > 1)) == ["x"]


# ---------------------------------------------------------------- streaming

STREAMED = 3000


def test_streaming_a_large_query(open_store: OpenStore) -> None:
    store = open_store(row_model=Row, durable=False)  # durable: file store only
    jobs = [make_job(f"s{i:05d}", cores=i % 7 + 1, state="RUNNING" if i % 2 else "NEW")
            for i in range(STREAMED)]
    ids = store.save_many(jobs)
    assert len(set(ids)) == STREAMED

    reader: Any = open_store(row_model=Row)
    query = reader.query(Row.cores >= 1)
    rows = iter(query)
    assert isinstance(rows, types.GeneratorType)
    first = next(rows)
    assert first.jobname == "s00000"
    # Other work on the same store while the stream is open.
    assert reader.query(state="NEW").count() == STREAMED // 2
    assert reader.load(ids[1234]).jobname == "s01234"
    rest = [first.jobname, *(row.jobname for row in rows)]
    assert rest == [job.jobname for job in jobs]

    tuples = reader.query(Row.cores == 7).tuples()
    assert isinstance(tuples, types.GeneratorType)
    assert [t.jobname for t in tuples] == [j.jobname for j in jobs if j.requested_cores == 7]

    objs = reader.query(state="RUNNING").order_by(Row.jobname.desc()).objects()
    assert isinstance(objs, types.GeneratorType)
    seen = 0
    previous = None
    for obj in objs:
        assert obj.execution.state == "RUNNING"
        if previous is not None:
            assert obj.jobname < previous
        previous = obj.jobname
        seen += 1
    assert seen == STREAMED // 2
    assert reader.query().count() == STREAMED


def test_objects_before_an_unreadable_record_arrive_before_its_error(
    open_store: OpenStore,
) -> None:
    """A broken payload stops the stream at that record, not at its batch's start."""
    store: Any = open_store(row_model=Row)
    ids = store.save_many([make_job(f"b{i}", cores=1, state="RUNNING") for i in range(5)])
    broken = ids[3]
    if isinstance(store, SqlStore):
        with store.engine.begin() as conn:
            conn.execute(sa.update(store.table).where(store.table.c.id == int(broken))
                         .values(data=b"not a pickle"))
    else:  # the index keeps the writer's row (issue 12); the load finds the damage
        store.close()
        Path(store.directory, str(broken)).write_bytes(b"not a pickle")

    reader: Any = open_store(row_model=Row)
    got: list[str] = []
    with pytest.raises(LoadError) as caught:
        for obj in reader.query(state="RUNNING").objects():
            got.append(obj.jobname)
    assert got == ["b0", "b1", "b2"]
    assert str(broken) in str(caught.value)


def test_streams_stopped_early_leave_the_store_usable(open_store: OpenStore) -> None:
    """Closing a half-read query (server-side stream on PostgreSQL and MySQL) frees its
    connection cleanly: later queries on the same store, many times over, still work."""
    store: Any = open_store(row_model=Row, durable=False)
    store.save_many([make_job(f"e{i:04d}", cores=1, state="RUNNING") for i in range(1500)])
    for _ in range(8):  # more rounds than the pool keeps connections
        objects = store.query(state="RUNNING").objects()
        assert next(objects).jobname == "e0000"
        objects.close()
        rows = store.query(Row.cores == 1).tuples()
        assert next(rows).jobname == "e0000"
        rows.close()
    assert store.query(state="RUNNING").count() == 1500
    assert [r.jobname for r in store.query().order_by(Row.jobname.desc()).limit(2)] == [
        "e1499", "e1498"]
