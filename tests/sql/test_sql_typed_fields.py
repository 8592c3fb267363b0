"""Typed row fields: extracted values, defaults, validation errors, GC3Pie extra_fields.

Runs on every backend (the file store keeps the same rows in its sidecar index),
except the ``extra_fields`` tests, which are about SQL columns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sql_jobs import SQL_BACKENDS, Job, SqlTestJobRow, make_job

from typedstore import (
    GET,
    GetAttribute,
    NotFoundError,
    SaveError,
    SqlStore,
    Store,
    StoreRow,
    extracted,
)

OpenStore = Callable[..., Store]
Row = SqlTestJobRow


class ConstrainedRow(StoreRow, table=True):
    """Fields with Pydantic constraints, which a save must enforce."""

    __tablename__ = "sqltests_constrained"

    jobname: str | None = extracted(GET.jobname, max_length=8)
    cores: int = extracted(GET.requested_cores, default=1, ge=1, le=64)


def rows_by_name(store: Store) -> dict[str | None, Any]:
    return {row.jobname: row for row in store.query()}  # type: ignore[attr-defined]


def test_extracted_values_land_in_rows(open_store: OpenStore) -> None:
    store = open_store(row_model=Row)
    id_ = store.save(make_job("alpha", cores=16, state="RUNNING"))
    rows = open_store(row_model=Row).query().rows()  # type: ignore[attr-defined]
    assert len(rows) == 1
    row = rows[0]
    assert isinstance(row, Row)
    assert (row.jobname, row.cores, row.state) == ("alpha", 16, "RUNNING")
    assert str(row.id) == str(id_)
    assert row.data is None  # rows never carry the payload


def test_changed_values_update_the_row(open_store: OpenStore) -> None:
    store = open_store(row_model=Row)
    job = make_job("beta", cores=2, state="NEW")
    store.save(job)
    job.requested_cores = 32
    job.execution.state = "TERMINATED"
    store.save(job)
    row = rows_by_name(open_store(row_model=Row))["beta"]
    assert (row.cores, row.state) == (32, "TERMINATED")


def test_missing_attributes_give_default_or_null(open_store: OpenStore) -> None:
    store = open_store(row_model=Row)
    store.save(Job(other="no jobname, no cores, no execution"))
    store.save(make_job("named only"))
    rows = open_store(row_model=Row).query().rows()  # type: ignore[attr-defined]
    assert [(r.jobname, r.cores, r.state) for r in rows] == [
        (None, 1, "UNKNOWN"),
        ("named only", 1, "UNKNOWN"),
    ]


def test_lax_coercion_of_numeric_text(open_store: OpenStore) -> None:
    store = open_store(row_model=Row)
    store.save(make_job("text cores", cores="8"))
    assert rows_by_name(open_store(row_model=Row))["text cores"].cores == 8


@pytest.mark.parametrize("bad", ["many", 2.5, [4]], ids=["text", "fraction", "list"])
def test_wrong_typed_value_raises_and_writes_nothing(open_store: OpenStore, bad: Any) -> None:
    store = open_store(row_model=Row)
    kept = store.save(make_job("kept", cores=4))
    job = make_job("bad", cores=bad)
    with pytest.raises(SaveError) as info:
        store.save(job)
    error = info.value
    assert error.field == "cores"
    assert error.id is not None
    assert "cores" in str(error)
    assert str(error.id) in str(error)
    assert getattr(job, "persistent_id", None) is None
    assert store.list() == [kept]
    fresh = open_store(row_model=Row)
    assert fresh.list() == [kept]
    with pytest.raises(NotFoundError):
        fresh.load(error.id)
    assert fresh.query().count() == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(("name", "cores", "field"), [
    ("much-too-long", 4, "jobname"), ("ok", 0, "cores"), ("ok", 65, "cores"),
    ("ok", True, None), ("ok", "64", None), ("exactly8", 64, None),
])
def test_field_constraints_are_enforced(open_store: OpenStore, name: str, cores: Any,
                                        field: str | None) -> None:
    """max_length, ge and le given to extracted() hold on every backend."""
    store = open_store(row_model=ConstrainedRow)
    job = make_job(name, cores=cores)
    if field is None:
        store.save(job)
        row = open_store(row_model=ConstrainedRow).query().first()  # type: ignore[attr-defined]
        assert (row.jobname, row.cores) == (name, int(cores))
        return
    with pytest.raises(SaveError) as info:
        store.save(job)
    assert info.value.field == field and field in str(info.value)
    assert open_store(row_model=ConstrainedRow).list() == []


def test_invalid_resave_keeps_old_record_and_row(open_store: OpenStore) -> None:
    store = open_store(row_model=Row)
    job = make_job("stable", cores=2)
    id_ = store.save(job)
    job.requested_cores = "many"
    with pytest.raises(SaveError) as info:
        store.save(job)
    assert info.value.id == id_
    assert job.persistent_id == id_
    fresh = open_store(row_model=Row)
    assert fresh.load(id_).requested_cores == 2
    assert rows_by_name(fresh)["stable"].cores == 2


def test_container_with_invalid_child_writes_neither(open_store: OpenStore) -> None:
    store = open_store(row_model=Row)
    child = make_job("child", cores="many")
    box = make_job("box", cores=2, child=child)
    with pytest.raises(SaveError) as info:
        store.save(box)
    assert info.value.field == "cores"
    assert getattr(box, "persistent_id", None) is None
    assert getattr(child, "persistent_id", None) is None
    assert store.list() == []
    assert open_store(row_model=Row).list() == []
    assert open_store(row_model=Row).query().count() == 0  # type: ignore[attr-defined]


def test_invalid_container_does_not_write_its_valid_child(open_store: OpenStore) -> None:
    store = open_store(row_model=Row)
    child = make_job("child", cores=2)
    box = make_job("box", cores="many", child=child)
    with pytest.raises(SaveError):
        store.save(box)
    assert getattr(child, "persistent_id", None) is None
    assert open_store(row_model=Row).list() == []


# ---------------------------------------------------------------- GC3Pie extra_fields (SQL)


class Broken(Exception):
    pass


def broken_extractor(obj: Any) -> Any:
    raise Broken(f"cannot extract from {obj!r}")


def extra_fields() -> dict[sa.Column[Any], Callable[[Any], Any]]:
    return {
        sa.Column("extra", sa.String(64)): GetAttribute("foo"),
        sa.Column("broken", sa.Integer): broken_extractor,
    }


@pytest.mark.parametrize("with_row_model", [False, True], ids=["plain", "row_model"])
@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_extra_fields_store_values_and_null_on_errors(
    open_store: OpenStore, with_row_model: bool
) -> None:
    kwargs: dict[str, Any] = {"extra_fields": extra_fields()}
    if with_row_model:
        kwargs["row_model"] = Row
    store = open_store(**kwargs)
    assert isinstance(store, SqlStore)
    with_foo = store.save(make_job("with foo", cores=3, foo="bar"))
    without_foo = store.save(make_job("without foo"))
    assert store.load(with_foo).foo == "bar"

    fresh = open_store(**kwargs)
    assert isinstance(fresh, SqlStore)
    with fresh.engine.connect() as conn:
        stored = dict(conn.execute(
            sa.select(fresh.table.c.id, fresh.table.c.extra).where(fresh.table.c.broken.is_(None))
        ).all())
    assert stored == {with_foo: "bar", without_foo: None}
    got = {r.id: r.extra for r in fresh.query().tuples()}
    assert got == {with_foo: "bar", without_foo: None}
    assert fresh.query(extra="bar").ids() == [with_foo]
    if with_row_model:
        assert [r.cores for r in fresh.query(Row.cores > 2)] == [3]


@pytest.mark.parametrize("with_row_model", [False, True], ids=["plain", "row_model"])
@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_rows_carry_the_extra_fields_columns(open_store: OpenStore, with_row_model: bool) -> None:
    # Issue 9: rows() and first() lacked the extra_fields columns.
    kwargs: dict[str, Any] = {"extra_fields": extra_fields()}
    if with_row_model:
        kwargs["row_model"] = Row
    store = open_store(**kwargs)
    with_foo = store.save(make_job("with foo", cores=3, foo="bar"))
    without_foo = store.save(make_job("without foo"))

    rows = {r.id: r for r in open_store(**kwargs).query().rows()}
    model = Row if with_row_model else StoreRow
    assert all(type(r) is model for r in rows.values())
    assert {i: r.extra for i, r in rows.items()} == {with_foo: "bar", without_foo: None}
    assert {i: r.model_extra for i, r in rows.items()} == {
        with_foo: {"extra": "bar", "broken": None},
        without_foo: {"extra": None, "broken": None},
    }
    # The row model's own fields are as before, and only they are dumped.
    assert rows[with_foo].state == "UNKNOWN"
    assert "extra" not in rows[with_foo].model_dump()
    if with_row_model:
        assert (rows[with_foo].jobname, rows[with_foo].cores) == ("with foo", 3)
    first = store.query(extra="bar").first()
    assert first is not None and (first.id, first.extra) == (with_foo, "bar")
    # A store without extra_fields has none.
    plain = open_store(**{k: v for k, v in kwargs.items() if k != "extra_fields"})
    assert all(r.model_extra is None for r in plain.query())
