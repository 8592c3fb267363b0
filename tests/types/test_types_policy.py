"""One value policy on every backend: each refused value is the same SaveError on all
four (field, object id, reason) and changes nothing; required fields; failed table
creations leave nothing behind."""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import typedstore
from tests.types.typed_models import Execution, RequiredRow, Thing, TypedRow, aware
from typedstore import SaveError, SchemaError, Store, make_store

OpenAll = Callable[..., dict[str, Store]]


def good(**changes: Any) -> Thing:
    values: dict[str, Any] = dict(batch=1, n=0, i=1, f=1.5, s="s", sx="x", s8="s8",
                                  t=aware(2024, 1, 1), m=Decimal("1.5"), req="r")
    values.update(changes)
    return Thing(**values)


#: name: (field, bad value, words of the reason)
REFUSALS: dict[str, tuple[str, Any, str]] = {
    "nan": ("f", float("nan"), "not a finite number"),
    "inf": ("f", float("inf"), "not a finite number"),
    "-inf": ("f", float("-inf"), "not a finite number"),
    "nul": ("s", "before\x00after", "NUL character"),
    "nul-indexed": ("sx", "\x00", "NUL character"),
    "surrogate": ("s", "lone \ud83d half", "lone surrogate (U+D83D)"),
    "int64+": ("i", 2**63, "64-bit integer range"),
    "int64-": ("i", -(2**63) - 1, "64-bit integer range"),
    "int-huge": ("i", 10**5000, "an integer of 16610 bits is outside"),
    "naive": ("t", dt.datetime(2024, 1, 1, 12), "naive datetime"),
    "naive-text": ("t", "2024-01-01T12:00:00", "naive datetime"),
    "before-year-1": ("t", aware(1, 1, 1, 0, 30, offset_minutes=60), "years 1..9999"),
    "none-required": ("req", None, "not optional"),
    "none-defaulted": ("k", None, "not optional"),
    "too-long": ("s8", "123456789", "at most 8 characters"),
    "too-long-for-index": ("sx", "é" * 1001, "2002 bytes long in UTF-8"),
    "decimal-places": ("m", Decimal("0.0000001"), "no more than 6 decimal places"),
    "decimal-nan": ("m", Decimal("NaN"), "finite number"),
    "enum": ("c", "PURPLE", "not valid"),
    "uuid": ("u", "not-a-uuid", "not valid"),
}


def _normalised(error: SaveError) -> str:
    """The message without the object's id (ids differ between backends)."""
    return re.sub(r"^object \S+ ", "object ID ", str(error))


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refused_values_are_the_same_save_error_everywhere(open_all: OpenAll, case: str
                                                           ) -> None:
    field, bad, words = REFUSALS[case]
    messages = {}
    for name, store in open_all(row_model=TypedRow).items():
        kept = good(n=1)
        kept_id = store.save(kept)
        # A new object: nothing is written, no record appears.
        with pytest.raises(SaveError) as info:
            store.save(good(n=2, **{field: bad}))
        error = info.value
        assert error.field == field and error.id is not None, name
        assert str(error).startswith(f"object {error.id} (Thing): field {field!r}: "), name
        assert words in str(error) and "nothing was written" in str(error), name
        messages[name] = _normalised(error)
        # An update: the stored row keeps its values.
        setattr(kept, field, bad)
        with pytest.raises(SaveError):
            store.save(kept)
        # In a transaction with other writes: none of them is written.
        with pytest.raises(SaveError), store.transaction():
            store.save(good(n=3))
            store.save(good(n=4, **{field: bad}))
        store.close()
        fresh = make_store(str(store.url), row_model=TypedRow)
        rows = fresh.query().rows()  # type: ignore[attr-defined]
        assert [(r.n, r.i, r.f, r.s, r.req) for r in rows] == [(1, 1, 1.5, "s", "r")], name
        assert fresh.list() == [kept_id], name
        fresh.close()
    assert len(set(messages.values())) == 1, messages


def test_the_issues_raw_driver_errors_are_save_errors(open_all: OpenAll) -> None:
    """PostgreSQL raised psycopg.DataError for "\\x00", PyMySQL refused NaN, SQLModel
    raised ValueError for a naive datetime: all SaveErrors now, on every backend."""
    for name, store in open_all(row_model=TypedRow).items():
        for bad in ({"s": "\x00"}, {"f": float("nan")}, {"t": dt.datetime.now()}):
            with pytest.raises(SaveError):
                store.save(good(**bad))
        assert store.list() == [], name


def test_state_is_checked_too(open_all: OpenAll) -> None:
    for name, store in open_all(row_model=TypedRow).items():
        thing = good()
        thing.execution = Execution(state="RUN\x00NING")
        with pytest.raises(SaveError) as info:
            store.save(thing)
        assert info.value.field == "state", name
        thing.execution = Execution(state="RUNNING ✓")
        store.save(thing)
        assert [r.state for r in store.query().rows()] == ["RUNNING ✓"], name  # type: ignore[attr-defined]


def test_gc3pie_extra_fields_store_null_for_refused_values(
        open_all: OpenAll, caplog: pytest.LogCaptureFixture) -> None:
    """GC3Pie's extra_fields are lenient: a value no backend could store is NULL (with a
    warning), never a raw driver error."""
    extra = {sa.Column("jobname", sa.String(8)): lambda obj: obj.jobname,
             sa.Column("ratio", sa.Float): lambda obj: obj.ratio,
             sa.Column("returncode", sa.Integer): lambda obj: obj.returncode}
    stores = open_all(extra_fields=extra)
    for name in ("sqlite", "postgresql", "mysql"):
        store = stores[name]
        with caplog.at_level(logging.WARNING, logger="typedstore"):
            store.save(Thing(jobname="a\x00b", ratio=float("nan"), returncode=2**31))
            store.save(Thing(jobname="too long a name", ratio=float("-inf"),
                             returncode=-(2**31) - 1))
            store.save(Thing(jobname="fine", ratio=0.5, returncode=-(2**31)))
        rows = store.query().tuples()  # type: ignore[attr-defined]
        assert [(r.jobname, r.ratio, r.returncode) for r in rows] == [
            (None, None, None), (None, None, None), ("fine", 0.5, -(2**31))], name
    assert any("NUL" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- required fields


def test_a_new_table_has_not_null_columns_for_required_fields(open_all: OpenAll) -> None:
    when = aware(2024, 5, 1, 8, offset_minutes=330)
    for name, store in open_all(row_model=RequiredRow).items():
        store.save(Thing(jobname="a", requested_cores=2, when=when))
        with pytest.raises(SaveError, match="'jobname': no value and no default"):
            store.save(Thing(requested_cores=2, when=when))
        with pytest.raises(SaveError, match="'cores': None, but the field is not optional"):
            store.save(Thing(jobname="b", requested_cores=None, when=when))
        rows = store.query().rows()  # type: ignore[attr-defined]
        assert [(r.jobname, r.cores, r.when, r.mode.value, r.ok) for r in rows] == [
            ("a", 2, when, "slow", True)], name
        if name == "file":
            continue
        with store.engine.connect() as conn:  # type: ignore[attr-defined]
            columns = {c["name"]: c for c in sa.inspect(conn).get_columns(store.table_name)}  # type: ignore[attr-defined]
        for column in ("jobname", "cores", "when", "mode", "ok", "state"):
            assert columns[column]["nullable"] is False, (name, column)
        assert columns["mode"]["default"] is not None and "SLOW" in columns["mode"]["default"]


def test_a_required_field_added_to_an_existing_table_needs_a_backfill(
        open_all: OpenAll) -> None:
    stores = open_all()
    for name in ("sqlite", "postgresql", "mysql"):
        store = stores[name]
        store.save(Thing(jobname="old"))
        url = str(store.url)
        with pytest.raises(SchemaError) as info:
            typedstore.upgrade(url, row_model=RequiredRow)
        message = str(info.value)
        assert "exists" in message and "back-fill" in message, name
        assert "docs/schema-evolution.md" in message
        assert info.value.missing_columns == ("jobname", "cores", "when"), name
        with store.engine.connect() as conn:  # type: ignore[attr-defined]
            columns = {c["name"] for c in sa.inspect(conn).get_columns(store.table_name)}  # type: ignore[attr-defined]
        assert not columns & {"jobname", "cores", "when", "mode", "ok"}, name  # nothing added


def test_opening_an_existing_table_without_a_required_field_says_how(open_all: OpenAll
                                                                     ) -> None:
    stores = open_all()
    for name in ("sqlite", "postgresql", "mysql"):
        url = str(stores[name].url)
        with pytest.raises(SchemaError) as info:
            make_store(url, row_model=RequiredRow)
        message = str(info.value)
        assert "jobname, cores, when are required" in message, name
        assert "back-fills" in message and "the others come with that migration too" in message


# ---------------------------------------------------------------- failed creations


def _snapshot(engine: sa.Engine) -> tuple[set[str], set[tuple[Any, ...]]]:
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        rows: set[tuple[Any, ...]] = set()
        if "typedstore_ids" in tables:
            rows = {tuple(r) for r in conn.execute(sa.text(
                "SELECT table_name, next_id FROM typedstore_ids"))}
    return tables, rows


BROKEN = {sa.Column("broken", sa.Integer, server_default=sa.text("no_such_function()")):
          lambda obj: 1}


def _fresh_database(backend: str, request: pytest.FixtureRequest, tmp_path: Path
                    ) -> tuple[str, Callable[[], None]]:
    """An empty database: a SQLite file, a PostgreSQL schema, a MariaDB database."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}", lambda: None
    name = f"types_fresh_{uuid.uuid4().hex[:8]}"
    if backend == "postgresql":
        base = request.getfixturevalue("pg_base_url")
        admin = sa.create_engine(base)
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
        url = re.sub(r"search_path%3D[^&]*", f"search_path%3D{name}", base)

        def drop() -> None:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
            admin.dispose()

        return url, drop
    base = request.getfixturevalue("mysql_base_url")
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}`"))

    def drop_db() -> None:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE `{name}`"))
        admin.dispose()

    return sa.make_url(base).set(database=name).render_as_string(hide_password=False), drop_db


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mysql"])
@pytest.mark.parametrize("first", [True, False], ids=["empty-database", "other-store-there"])
def test_a_failed_creation_leaves_nothing_behind(backend: str, first: bool,
                                                 request: pytest.FixtureRequest,
                                                 tmp_path: Path) -> None:
    """MariaDB commits each DDL statement: typedstore removes the half-made table, its
    version table, the id counter row (and the counter table it made) itself."""
    url, drop = _fresh_database(backend, request, tmp_path)
    try:
        if not first:
            other = make_store(f"{url}#table=canary", row_model=RequiredRow)
            other.save(Thing(jobname="canary", requested_cores=1, when=aware(2020, 1, 1)))
            other.close()
        engine = sa.create_engine(url)
        before = _snapshot(engine)
        with pytest.raises(Exception) as info:
            make_store(f"{url}#table=broken", row_model=RequiredRow, extra_fields=BROKEN)
        assert "no_such_function" in str(info.value) or "syntax" in str(info.value).lower()
        assert _snapshot(engine) == before
        # The name is free: a correct store of that name is made, ids start at 1.
        store = make_store(f"{url}#table=broken", row_model=RequiredRow)
        assert store.save(Thing(jobname="x", requested_cores=1, when=aware(2020, 1, 1))) == 1
        store.close()
        if not first:
            canary = make_store(f"{url}#table=canary", row_model=RequiredRow)
            assert [r.jobname for r in canary.query().rows()] == ["canary"]  # type: ignore[attr-defined]
            canary.close()
        engine.dispose()
    finally:
        drop()
