"""The type map on real servers: column types per dialect, refused annotations,
the issue's regressions, and the same answers on all four backends."""

from __future__ import annotations

import datetime as dt
import pathlib
import subprocess
import sys
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Field

import typedstore
from tests.types.typed_models import (
    Color,
    Execution,
    FloatRow,
    Mode,
    TextRow,
    Thing,
    TypedRow,
    aware,
)
from typedstore import GET, SchemaError, Store, StoreRow, extracted, make_store

OpenAll = Callable[..., dict[str, Store]]


def engine_of(store: Store) -> sa.Engine:
    return store.engine  # type: ignore[attr-defined,no-any-return]


def table_of(store: Store) -> str:
    return store.table_name  # type: ignore[attr-defined,no-any-return]


def full_thing(**changes: Any) -> Thing:
    values: dict[str, Any] = dict(
        batch=0, n=0, i=-(2**63), f=1700000000.123456, b=False, s="Straße ",
        sx="x", s8="12345678", by=b"\x00\xff", t=aware(2024, 3, 31, 2, 30, 0, 999999,
                                                       offset_minutes=120),
        d=dt.date(1, 1, 1), m=Decimal("-999999999999.999999"), c=Color.Blue, e=Mode.fast,
        u=uuid.UUID(int=2**128 - 1), req="",
    )
    values.update(changes)
    return Thing(**values)


# ---------------------------------------------------------------- column types


def test_mariadb_column_types(open_all: OpenAll) -> None:
    """Double precision, 64-bit integers, utf8mb4 with the binary no-pad collation
    (case- and trailing-space-sensitive), LONGTEXT without a silent cap, DATETIME(6)."""
    store = open_all(row_model=TypedRow)["mysql"]
    with engine_of(store).connect() as conn:
        columns = {row[0]: row[1:] for row in conn.execute(sa.text(
            "SELECT COLUMN_NAME, COLUMN_TYPE, CHARACTER_SET_NAME, COLLATION_NAME, IS_NULLABLE "
            "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME = :t"), {"t": table_of(store)})}
        options = conn.execute(sa.text(
            "SELECT TABLE_COLLATION FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
            "DATABASE() AND TABLE_NAME = :t"), {"t": table_of(store)}).scalar()
    assert columns["f"][0] == "double"
    assert columns["i"][0] == "bigint(20)"
    assert columns["s"][:3] == ("longtext", "utf8mb4", "utf8mb4_nopad_bin")
    assert columns["s8"][:3] == ("varchar(8)", "utf8mb4", "utf8mb4_nopad_bin")
    assert columns["by"][0] == "longblob"
    assert columns["t"][0] == "datetime(6)"
    assert columns["m"][0] == "decimal(18,6)"
    assert columns["c"][:3] == ("varchar(255)", "utf8mb4", "utf8mb4_nopad_bin")
    assert columns["u"][0] == "char(32)"
    assert columns["req"][3] == "NO" and columns["s"][3] == "YES"
    assert options == "utf8mb4_nopad_bin"


def test_postgresql_column_types(open_all: OpenAll) -> None:
    store = open_all(row_model=TypedRow)["postgresql"]
    with engine_of(store).connect() as conn:
        columns = {row[0]: row[1:] for row in conn.execute(sa.text(
            "SELECT column_name, data_type, collation_name, is_nullable "
            "FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = :t"), {"t": table_of(store)})}
    assert columns["f"][0] == "double precision"
    assert columns["i"][0] == "bigint"
    assert columns["s"][:2] == ("text", "C")
    assert columns["s8"][:2] == ("character varying", "C")
    assert columns["t"][0] == "timestamp without time zone"  # UTC, never converted
    assert columns["m"][0] == "numeric"
    assert columns["c"][:2] == ("character varying", "C")
    assert columns["u"][0] == "uuid"
    assert columns["req"][2] == "NO" and columns["s"][2] == "YES"


def test_new_tables_match_their_row_model(open_all: OpenAll) -> None:
    """Alembic compares the created tables with the row model and finds nothing."""
    stores = open_all(row_model=TypedRow)
    for name in ("sqlite", "postgresql", "mysql"):
        store = stores[name]
        assert typedstore.drift(str(store.url), row_model=TypedRow) == [], name


# ---------------------------------------------------------------- refused annotations


def _model(name: str, annotation: Any, field: Any) -> type[StoreRow]:
    return type(f"Model{name}", (StoreRow,), {
        "__tablename__": f"types_refused_{name}",
        "__annotations__": {"bad": annotation},
        "bad": field,
        "__module__": __name__,
    }, table=True)


REFUSED_MODELS = {
    "timedelta": (dt.timedelta, extracted(GET.bad), "not in the map"),
    "time": (dt.time | None, extracted(GET.bad), "not in the map"),
    "path": (pathlib.Path | None, extracted(GET.bad), "not in the map"),
    "decimal": (Decimal, extracted(GET.bad), "max_digits"),
    "digits": (Decimal, extracted(GET.bad, max_digits=30, decimal_places=2), "max_digits"),
    "sa_type": (str, extracted(GET.bad, sa_type=sa.Text), "sa_type"),
    "list": (list[int], Field(default=None, sa_type=sa.JSON), "not in the map"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_MODELS))
def test_annotation_outside_the_map_is_refused_naming_the_field(case: str, tmp_path: Any
                                                                ) -> None:
    try:
        annotation, field, words = REFUSED_MODELS[case]
        model = _model(case, annotation, field)
    except (ValueError, TypeError) as exc:  # SQLModel itself refuses some at class time
        pytest.skip(f"SQLModel refuses it already: {exc}")
    url = f"sqlite:///{tmp_path / 'x.db'}#table=t"
    with pytest.raises(SchemaError) as info:
        make_store(url, row_model=model)
    message = str(info.value)
    assert f"Model{case}" in message and "'bad'" in message and words in message
    assert "docs/types.md" in message
    engine = sa.create_engine(url.partition("#")[0])
    assert not sa.inspect(engine).has_table("t")  # refused before anything was made
    engine.dispose()
    with pytest.raises(SchemaError):  # the file store too
        make_store(str(tmp_path / "jobs"), row_model=model)


# ---------------------------------------------------------------- the reports


def test_unix_timestamp_round_trips_and_is_found_everywhere(open_all: OpenAll) -> None:
    """MariaDB made float fields single-precision: a Unix timestamp came back 73 minutes
    off and an exact-value query found nothing."""
    stamp = 1700000000.123456
    for name, store in open_all(row_model=FloatRow).items():
        store.save(Thing(submitted=stamp, jobname="sweep"))
        store.save(Thing(submitted=stamp + 1e-6, jobname="other"))
        found = store.query(FloatRow.submitted == stamp).rows()  # type: ignore[attr-defined]
        assert [(r.submitted, r.jobname) for r in found] == [(stamp, "sweep")], name
        assert store.query(FloatRow.jobname == "sweep").count() == 1  # type: ignore[attr-defined]


def test_text_equality_is_case_and_trailing_space_sensitive_everywhere(open_all: OpenAll
                                                                       ) -> None:
    names = ["sweep", "Sweep", "sweep ", "sweep  ", "swéep", "swe\u0301ep"]
    for backend, store in open_all(row_model=TextRow).items():
        for name in names:
            store.save(Thing(jobname=name, short=name, note=name))
        for name in names:
            for field in (TextRow.jobname, TextRow.short, TextRow.note):
                rows = store.query(field == name).rows()  # type: ignore[attr-defined]
                assert [r.jobname for r in rows] == [name], (backend, field, name)
        ordered = [r.jobname for r in store.query().order_by(TextRow.jobname)]  # type: ignore[attr-defined]
        assert ordered == sorted(names), backend  # code point order


def test_every_kind_round_trips_identically_on_all_four(open_all: OpenAll) -> None:
    stores = open_all(row_model=TypedRow)
    things = lambda: [  # noqa: E731 (fresh objects for each store)
        full_thing(n=0),
        full_thing(n=1, i=2**63 - 1, f=5e-324, b=True, s="😀" * 70000, t=aware(
            1, 1, 1, 0, 0, 0, 1), d=dt.date(9999, 12, 31), m=Decimal("0.000001"),
            c=Color.RED, e=Mode.FAST, u=uuid.UUID(int=0), by=b"", sx="", req="r"),
        full_thing(n=2, f=-0.0, m=Decimal("-0"), t=aware(9999, 12, 31, 23, 59, 59, 999999),
                   s=None, sx=None, s8=None, by=None, i=None, b=None, d=None, c=None,
                   e=None, u=None),
    ]
    read: dict[str, list[tuple[Any, ...]]] = {}
    for name, store in stores.items():
        with store.transaction():
            for thing in things():
                store.save(thing)
        rows = store.query().order_by(TypedRow.n).rows()  # type: ignore[attr-defined]
        read[name] = [tuple(repr(getattr(r, f)) for f in TypedRow.model_fields
                            if f not in ("id", "data", "version", "updated_at"))
                      for r in rows]
    assert read["file"] == read["sqlite"] == read["postgresql"] == read["mysql"]
    first = read["sqlite"][0]
    assert "datetime.datetime(2024, 3, 31, 0, 30, 0, 999999, tzinfo=datetime.timezone.utc)" \
        in first
    assert "Decimal('-999999999999.999999')" in first
    assert "0.0" in read["sqlite"][2]  # -0.0 is stored as 0.0 everywhere


def test_query_values_take_the_store_columns_type(open_all: OpenAll) -> None:
    """Conditions written before any store was opened (with the row model's own
    column types) compare like the stored values: UTC datetimes, scaled decimals."""
    when = aware(2020, 1, 1, 12, offset_minutes=-300)
    conditions = [TypedRow.t == when, TypedRow.m == Decimal("1.5"), TypedRow.c == Color.Blue,
                  TypedRow.e == "fast", TypedRow.m.between(Decimal("1.4"), 1.6),
                  TypedRow.t.in_([when, aware(2000, 1, 1)])]
    for name, store in open_all(row_model=TypedRow).items():
        store.save(full_thing(t=when.astimezone(dt.timezone.utc), m=Decimal("1.500000"),
                              c=Color.Blue, e=Mode.FAST))
        for condition in conditions:
            assert store.query(condition).count() == 1, (name, condition)  # type: ignore[attr-defined]


def test_emoji_in_databases_with_other_character_sets(mysql_base_url: str) -> None:
    """MariaDB databases created with utf8mb3 and latin1 defaults: typedstore's tables
    are utf8mb4, so emoji (and the state) round-trip."""
    admin = sa.create_engine(mysql_base_url)
    try:
        for charset in ("utf8mb3", "latin1"):
            database = f"types_{charset}_{uuid.uuid4().hex[:8]}"
            with admin.begin() as conn:
                conn.execute(sa.text(f"CREATE DATABASE `{database}` CHARACTER SET {charset}"))
            try:
                url = sa.make_url(mysql_base_url).set(database=database).render_as_string(
                    hide_password=False)
                store = make_store(f"{url}#table=jobs", row_model=TextRow)
                text = "🧪 naïve ☃ \U0001d518\U0001d52b\U0001d526"  # non-BMP letters too
                thing = Thing(jobname=text, note=text * 1000, short=text)
                thing.execution = Execution(state="RUNNING 🏃")
                id_ = store.save(thing)
                store.close()
                store = make_store(f"{url}#table=jobs", row_model=TextRow)
                rows = store.query(TextRow.jobname == text).rows()  # type: ignore[attr-defined]
                assert [(r.jobname, r.note, r.short, r.state) for r in rows] == [
                    (text, text * 1000, text, "RUNNING 🏃")], charset
                assert store.load(id_).jobname == text
                store.close()
            finally:
                with admin.begin() as conn:
                    conn.execute(sa.text(f"DROP DATABASE `{database}`"))
    finally:
        admin.dispose()


def test_a_file_store_index_of_an_older_format_is_made_again(tmp_path: Any) -> None:
    """Index rows written before the type map (a Decimal stored as a float, a datetime
    as local wall time) are made again from the pickles when a store opens it."""
    directory = tmp_path / "jobs"
    store = make_store(str(directory), row_model=TypedRow)
    store.save(full_thing(m=Decimal("1.5"), t=aware(2024, 1, 1, 12, offset_minutes=60)))
    store.close()
    index = next(directory.parent.glob(".jobs.typedstore/index.db"))
    engine = sa.create_engine(f"sqlite:///{index}")
    with engine.begin() as conn:  # as an index of an older typedstore had it
        conn.execute(sa.text("DROP TABLE index_format"))
        conn.execute(sa.text("UPDATE records SET m = 1.5, t = '2024-01-01 12:00:00.000000'"))
    engine.dispose()
    store = make_store(str(directory), row_model=TypedRow)
    rows = store.query(TypedRow.m == Decimal("1.5")).rows()  # type: ignore[attr-defined]
    assert [(r.m, r.t) for r in rows] == [(Decimal("1.500000"), aware(2024, 1, 1, 11))]
    store.close()


def test_autogenerated_migrations_write_the_type_maps_types(tmp_path: Any) -> None:
    """alembic revision --autogenerate -x row_model=... renders importable column types
    (the ones the map gives), and the migration upgrades a table to the row model."""
    repo = pathlib.Path(__file__).resolve().parents[2]
    versions = tmp_path / "versions"
    versions.mkdir()
    ini = tmp_path / "alembic.ini"
    ini.write_text("[alembic]\n"
                   f"script_location = {repo / 'migrations'}\n"
                   f"version_locations = typedstore:migrations/versions {versions}\n"
                   "path_separator = space\n"
                   f"prepend_sys_path = {repo}\n")
    url = f"sqlite:///{tmp_path / 'x.db'}"
    typedstore.upgrade(url, "jobs")
    x = ["-x", f"url={url}", "-x", "table=jobs"]

    def alembic(*args: str) -> None:
        done = subprocess.run([sys.executable, "-m", "alembic", "-c", str(ini), *x, *args],
                              capture_output=True, text=True, check=False, cwd=tmp_path)
        assert done.returncode == 0, done.stderr

    alembic("-x", "row_model=tests.types.typed_models:TypedRow", "revision", "--autogenerate",
            "-m", "typed", "--version-path", str(versions), "--head", "typedstore@head")
    [generated] = list(versions.glob("*.py"))
    source = generated.read_text()
    assert "typedstore.typemap.UtcDateTime()" in source and "import typedstore.typemap" in source
    assert "typedstore.typemap.EnumName(tests.types.typed_models.Mode)" in source
    alembic("upgrade", "heads")
    assert typedstore.drift(f"{url}#table=jobs", row_model=TypedRow) == []
