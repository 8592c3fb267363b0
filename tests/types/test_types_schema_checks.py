"""Checks when a store opens on an existing table: a table that is not a store table is
never changed, a field whose type changed is named, table names follow the backend's
case rule, names the statement compiler would misread are refused; the file store's
index follows a changed row model without hiding records."""

from __future__ import annotations

import logging
import shlex
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import typedstore
from tests.migrations.support import run_alembic
from tests.types.test_types_identifiers import base_url  # noqa: F401  (fixture)
from typedstore import GET, SchemaError, StoreRow, extracted, make_store
from typedstore.demo import DemoJob

# ---------------------------------------------------------------- row models


class Before(StoreRow, table=True):
    """A row model as first deployed."""

    __tablename__ = "types_schema_before"

    jobname: str | None = extracted(GET.jobname)
    cores: int | None = extracted(GET.requested_cores)
    ratio: float | None = extracted(GET.ratio)


class Retyped(StoreRow, table=True):
    """:class:`Before` with two fields' types changed (int -> str, float -> int)."""

    __tablename__ = "types_schema_retyped"

    jobname: str | None = extracted(GET.jobname)
    cores: str | None = extracted(GET.requested_cores)
    ratio: int | None = extracted(GET.ratio)


class NewRequired(StoreRow, table=True):
    """:class:`Before` plus a required field (no default, not optional)."""

    __tablename__ = "types_schema_newrequired"

    jobname: str | None = extracted(GET.jobname)
    cores: int | None = extracted(GET.requested_cores)
    ratio: float | None = extracted(GET.ratio)
    queue: str = extracted(GET.queue)


def job(name: str, cores: int = 2, **attrs: Any) -> DemoJob:
    obj = DemoJob(name, cores, [])
    obj.ratio = 0.5  # type: ignore[attr-defined]
    for key, value in attrs.items():
        setattr(obj, key, value)
    return obj


def snapshot(url: str, table: str) -> tuple[Any, ...]:
    """Everything a table is: its columns (name, type, nullable, default), indexes and
    rows; and the names of all tables of the database."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            columns = [(c["name"], str(c["type"]), c["nullable"], c.get("default"))
                       for c in inspector.get_columns(table)]
            indexes = sorted(str(i["name"]) for i in inspector.get_indexes(table))
            rows = sorted(conn.execute(sa.select(sa.text("*")).select_from(
                sa.table(table))).all())
            return columns, indexes, rows, sorted(inspector.get_table_names())
    finally:
        engine.dispose()


# ---------------------------------------------------------------- not a store table


@pytest.fixture
def foreign(base_url: str) -> Iterator[str]:  # noqa: F811
    """A table of someone else's (a INT, b TEXT) with rows, under a name a store asks for."""
    engine = sa.create_engine(base_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE jobs (a INT, b TEXT)"))
        conn.execute(sa.text("INSERT INTO jobs (a, b) VALUES (1, 'one'), (2, NULL)"))
    engine.dispose()
    yield "jobs"


def test_a_table_that_is_not_a_store_table_is_never_changed(
        base_url: str, foreign: str) -> None:  # noqa: F811
    before = snapshot(base_url, foreign)
    url = f"{base_url}#table={foreign}"
    attempts = [
        lambda: make_store(url),
        lambda: make_store(url, create=False),
        lambda: make_store(url, row_model=Before),
        lambda: typedstore.upgrade(url),
        lambda: typedstore.upgrade(url, row_model=Before),
        lambda: typedstore.downgrade(url, "base"),
    ]
    for attempt in attempts:
        with pytest.raises(SchemaError) as info:
            attempt()
        message = str(info.value)
        assert info.value.table == foreign
        assert "'jobs' exists and is not a store table" in message, message
        assert "no column id, data, state" in message, message
        assert snapshot(base_url, foreign) == before
    # The alembic command refuses it too, before making a version table.
    result = run_alembic("-x", f"url={base_url}", "-x", f"table={foreign}", "upgrade", "head",
                         expect=None)
    assert result.returncode != 0
    assert "is not a store table" in result.stderr
    assert snapshot(base_url, foreign) == before


def test_a_table_with_store_columns_of_other_kinds_is_not_a_store_table(
        base_url: str) -> None:  # noqa: F811
    engine = sa.create_engine(base_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE lookalike (id TEXT, data TEXT, state INT)"))
        conn.execute(sa.text("INSERT INTO lookalike VALUES ('x', 'y', 3)"))
    engine.dispose()
    before = snapshot(base_url, "lookalike")
    with pytest.raises(SchemaError) as info:
        make_store(f"{base_url}#table=lookalike")
    message = str(info.value)
    assert "its column id is" in message and "holds int values" in message, message
    assert "its column state is" in message, message
    assert snapshot(base_url, "lookalike") == before


# ---------------------------------------------------------------- a field's type changed


def test_a_field_whose_type_changed_is_named_on_open(base_url: str) -> None:  # noqa: F811
    url = f"{base_url}#table=retyped"
    with make_store(url, row_model=Before) as store:
        id_ = store.save(job("a", 4))
    before = snapshot(base_url, "retyped")
    for create in (True, False):
        with pytest.raises(SchemaError) as info:
            make_store(url, row_model=Retyped, create=create)
        error = info.value
        message = str(error)
        assert error.table == "retyped"
        assert "column 'cores' is stored as" in message and "(int)" in message, message
        assert "column 'ratio' is stored as" in message and "(float)" in message, message
        assert "the row model declares" in message and "migration" in message, message
    with pytest.raises(SchemaError, match="column 'cores' is stored as"):
        typedstore.upgrade(url, row_model=Retyped)
    assert snapshot(base_url, "retyped") == before
    with make_store(url, row_model=Before) as store:  # still as it was
        assert store.load(id_).requested_cores == 4


def test_drift_and_upgrade_of_a_file_store_say_what_to_do(tmp_path: Path) -> None:
    directory = str(tmp_path / "jobs")
    with make_store(directory) as store:
        id_ = store.save(job("a", 3))
    for call in (lambda: typedstore.drift(directory, row_model=Before),
                 lambda: typedstore.downgrade(directory, "base")):
        with pytest.raises(SchemaError) as info:
            call()
        assert "is a file store" in str(info.value)
        assert "typedstore.upgrade(path, row_model=...)" in str(info.value)
    # upgrade indexes the records with the row model now.
    assert set(typedstore.upgrade(directory, row_model=Before)) == {"jobname", "cores", "ratio"}
    with make_store(directory, row_model=Before) as store:
        assert store.query(Before.cores == 3).ids() == [id_]  # type: ignore[attr-defined]
    assert typedstore.upgrade(directory, row_model=Before) == []


def test_a_file_store_index_follows_a_field_whose_type_changed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = str(tmp_path / "jobs")
    with make_store(directory, row_model=Before) as store:
        store.save(job("a", 4))
    index = next(tmp_path.glob(".jobs.typedstore/index.db"))

    class Now(StoreRow, table=True):
        __tablename__ = f"types_schema_now_{uuid.uuid4().hex[:6]}"
        cores: float | None = extracted(GET.requested_cores)

    with caplog.at_level(logging.WARNING), make_store(directory, row_model=Now) as store:
        assert [r.cores for r in store.query().rows()] == [4.0]  # type: ignore[attr-defined]
    assert any("column cores held int values" in r.getMessage() for r in caplog.records)
    with sqlite3.connect(index) as db:
        declared = {row[1]: row[2] for row in db.execute("PRAGMA table_info(records)")}
        stored = db.execute("SELECT typeof(cores) FROM records").fetchall()
    assert declared["cores"] == "DOUBLE" and stored == [("real",)]


# ---------------------------------------------------------------- a new required field


def test_a_file_store_never_hides_records_a_new_required_field_refuses(
        tmp_path: Path) -> None:
    directory = str(tmp_path / "jobs")
    with make_store(directory, row_model=Before) as store:
        old = store.save(job("old"))
    with make_store(directory, row_model=NewRequired) as store:
        with pytest.raises(SchemaError) as info:
            store.query().ids()  # type: ignore[attr-defined]
        message = str(info.value)
        assert "1 stored record(s) do not fit the row model NewRequired" in message, message
        assert "queue" in message and str(old) in message, message
        with pytest.raises(SchemaError):  # every query, not just the first
            store.query(NewRequired.queue == "x").count()  # type: ignore[attr-defined]
        assert store.list() == [old]
    # The other row model still sees it, and once it carries the field, all is well.
    with make_store(directory, row_model=Before) as store:
        assert store.query().ids() == [old]  # type: ignore[attr-defined]
        obj = store.load(old)
        obj.queue = "long"
        store.save(obj)
    with make_store(directory, row_model=NewRequired) as store:
        assert store.query(NewRequired.queue == "long").ids() == [old]  # type: ignore[attr-defined]
        new = store.save(job("new", queue="short"))
        assert store.query().ids() == [old, new]  # type: ignore[attr-defined]


def test_a_file_store_back_fills_a_new_required_field_the_records_have(
        tmp_path: Path) -> None:
    directory = str(tmp_path / "jobs")
    with make_store(directory, row_model=Before) as store:
        ids = [store.save(job(f"j{n}", queue=f"q{n}")) for n in range(3)]
    with make_store(directory, row_model=NewRequired) as store:
        assert store.query(NewRequired.queue == "q1").ids() == [ids[1]]  # type: ignore[attr-defined]


# ---------------------------------------------------------------- case and look-alikes


def test_sqlite_table_names_differing_in_case_are_one_table_and_refused(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'case.db'}"
    with make_store(f"{url}#table=jobs") as store:
        id_ = store.save({"n": 1})
    for other in ("Jobs", "JOBS"):
        with pytest.raises(SchemaError) as info:
            make_store(f"{url}#table={other}")
        assert "names the existing table 'jobs'" in str(info.value)
        assert "upper from lower case" in str(info.value)
    with make_store(f"{url}#table=jobs") as store:
        assert store.list() == [id_]
    with sqlite3.connect(tmp_path / "case.db") as db:
        assert db.execute("SELECT table_name FROM typedstore_ids").fetchall() == [("jobs",)]


@pytest.mark.parametrize("name", ["Typedstore_IDS", "TYPEDSTORE_BACKFILL",
                                  "Typedstore_Version_x", "_ALEMBIC_TMP_x"])
def test_sqlite_reserved_names_are_refused_in_any_case(tmp_path: Path, name: str) -> None:
    with pytest.raises(SchemaError, match="for its own tables"):
        make_store(f"sqlite:///{tmp_path / 'x.db'}#table={name}")


def test_names_differing_in_case_are_two_tables_where_the_backend_says_so(
        request: pytest.FixtureRequest) -> None:
    """PostgreSQL (quoted names) and MariaDB on Linux (lower_case_table_names=0)."""
    for base in (request.getfixturevalue("pg_base_url"),
                 request.getfixturevalue("mysql_base_url")):
        name = f"case{uuid.uuid4().hex[:6]}"
        with make_store(f"{base}#table={name}") as lower, \
                make_store(f"{base}#table={name.upper()}") as upper:
            a, b = lower.save({"n": 1}), upper.save({"n": 2})
            assert lower.list() == [a] and upper.list() == [b]


@pytest.mark.parametrize("name", ["%(id)s", "x%(k_id)s", "%(state)s", "%()s"])
def test_sqlite_names_the_compiler_would_read_as_binds_are_refused(
        tmp_path: Path, name: str) -> None:
    with pytest.raises(SchemaError, match="bound parameter"):
        make_store(f"sqlite:///{tmp_path / 'x.db'}", table_name=name)
    assert not (tmp_path / "x.db").exists() or sqlite3.connect(tmp_path / "x.db").execute(
        "SELECT name FROM sqlite_master").fetchall() == []


@pytest.mark.parametrize("name", ["%(id)s", "x%(k_id)s", "%s", "%%s", "50%", "%(state)s"])
def test_percent_names_work_on_the_servers(request: pytest.FixtureRequest, name: str) -> None:
    """PostgreSQL and MariaDB: their parameter style doubles percent signs in names."""
    for base in (request.getfixturevalue("pg_base_url"),
                 request.getfixturevalue("mysql_base_url")):
        with make_store(base, table_name=name, row_model=Before) as store:
            id_ = store.save(job("p", 5))
            with store.transaction():
                store.save(job("q", 6))
                store.save(job("r", 7))
            assert store.query(Before.cores == 5).ids() == [id_]  # type: ignore[attr-defined]
            assert typedstore.backfill(store, progress=False).rows == 3
        assert typedstore.drift(base, name, row_model=Before) == []
        typedstore.downgrade(base, "base", name)


def test_a_version_command_with_quotes_runs_as_written(tmp_path: Path) -> None:
    """The command in an error names a table with quotes and spaces safely."""
    url = f"sqlite:///{tmp_path / 'q.db'}"
    typedstore.upgrade(url, "it's a table")
    with sqlite3.connect(tmp_path / "q.db") as db:
        db.execute("UPDATE \"typedstore_version_it's a table\" SET version_num = 'ts0001'")
    with pytest.raises(SchemaError) as info:
        make_store(f"{url}#table=it's a table")
    assert info.value.command is not None
    run_alembic(*shlex.split(info.value.command)[1:])
    make_store(f"{url}#table=it's a table").close()


@pytest.mark.parametrize("charset", ["latin1", "utf8mb3"])
def test_backfill_of_a_unicode_table_name_in_a_latin1_database(
        mysql_base_url: str, charset: str) -> None:
    """The back-fill checkpoint table is utf8mb4 like every typedstore table."""
    database = f"types_cp_{charset}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(mysql_base_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{database}` CHARACTER SET {charset}"))
    try:
        url = sa.make_url(mysql_base_url).set(database=database).render_as_string(
            hide_password=False)
        with make_store(url, table_name="jöbs 日本", row_model=Before) as store:
            store.save(job("a", 2))
            assert typedstore.backfill(store, batch_size=1, progress=False).rows == 1
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE `{database}`"))
        admin.dispose()


class QueueOptional(StoreRow, table=True):
    """:class:`NewRequired` with its required field made optional."""

    __tablename__ = "types_schema_queueoptional"

    jobname: str | None = extracted(GET.jobname)
    cores: int | None = extracted(GET.requested_cores)
    ratio: float | None = extracted(GET.ratio)
    queue: str | None = extracted(GET.queue)


def test_a_field_made_optional_over_a_not_null_column_refuses_none_up_front(
        base_url: str) -> None:  # noqa: F811
    """The table's column stays NOT NULL (made when the field was required): a
    None is refused by the value policy, naming the field, the same on every
    backend, instead of reaching the database."""
    url = f"{base_url}#table=optional_{uuid.uuid4().hex[:8]}"
    first = make_store(url, row_model=NewRequired)
    kept = first.save(job("kept", queue="long"))
    first.close()
    store = make_store(url, row_model=QueueOptional)
    try:
        with pytest.raises(typedstore.SaveError) as info:
            store.save(job("no queue", queue=None))
        assert info.value.field == "queue"
        assert "not optional" in str(info.value) and "migration" in str(info.value)
        assert [str(i) for i in store.list()] == [str(kept)]
        assert store.save(job("with queue", queue="short")) is not None
    finally:
        store.close()
