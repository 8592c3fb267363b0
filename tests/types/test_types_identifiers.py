"""Table names: any name the backend accepts works (at its length limit, with spaces,
quotes, backticks, percent signs...), names that cannot work are refused before any
statement, and a canary table beside them is never touched."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import typedstore
from tests.types.typed_models import Thing, TypedRow, aware
from typedstore import SchemaError, make_store
from typedstore.schema import version_table

SQL = ["sqlite", "postgresql", "mysql"]

#: Names every SQL backend takes (quoted by SQLAlchemy wherever they appear).
ODD_NAMES = [
    "with space", 'double"quote', "single'quote", "back`tick", "per%cent", "per%%s",
    "semi;colon", 'x"; DROP TABLE canary; --', "x`; DROP TABLE canary; --", "dot.ted",
    "slash/and\\back", "colon:name", "Upper", "ünïcödé", "日本語のテーブル", "-leading",
    "  leading spaces",
]


@pytest.fixture(params=SQL)
def base_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of this test's own (the canary test must see every table)."""
    backend = request.param
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'names.db'}"
        return
    name = f"types_names_{uuid.uuid4().hex[:8]}"
    if backend == "postgresql":
        base = request.getfixturevalue("pg_base_url")
        admin = sa.create_engine(base)
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
        yield base.replace(base.rpartition("search_path%3D")[2], name)
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
    else:
        base = request.getfixturevalue("mysql_base_url")
        admin = sa.create_engine(base)
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE DATABASE `{name}`"))
        yield sa.make_url(base).set(database=name).render_as_string(hide_password=False)
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE `{name}`"))
    admin.dispose()


def backend_of(url: str) -> str:
    return sa.make_url(url).get_backend_name()


def limit_names(backend: str) -> list[str]:
    """Names exactly at the backend's limit (and a pair sharing a long prefix)."""
    if backend == "postgresql":  # 63 bytes
        return ["p" * 63, "p" * 60 + "abc", "p" * 60 + "abd", "é" * 31 + "x",
                "日" * 21, "with space " * 5 + "12345678"]
    if backend == "mysql":  # 64 characters
        # ...and MariaDB's file names: "日" is written "@65e5", 50 of them fill 250.
        return ["m" * 64, "m" * 61 + "abc", "m" * 61 + "abd", "é" * 64, "日" * 50]
    return ["s" * 300]


def make_thing(n: int) -> Thing:
    return Thing(batch=1, n=n, sx=f"x{n}", s8="s8", t=aware(2024, 1, n + 1), req="r")


def exercise(url: str, table: str) -> None:
    """Everything a store does with its table and derived names."""
    store = make_store(url, table_name=table, row_model=TypedRow)
    try:
        ids = [store.save(make_thing(n)) for n in range(3)]
        with store.transaction():
            store.save(make_thing(9))
        assert store.load(ids[0]).n == 0
        assert [r.n for r in store.query(TypedRow.sx == "x1").rows()] == [1]  # type: ignore[attr-defined]
        assert store.query(TypedRow.t > aware(2024, 1, 2)).count() == 2  # type: ignore[attr-defined]
        store.remove(ids[2])
    finally:
        store.close()
    again = make_store(url, table_name=table, row_model=TypedRow)  # checks on open
    try:
        assert sorted(r.n for r in again.query().rows()) == [0, 1, 9]  # type: ignore[attr-defined]
    finally:
        again.close()
    assert typedstore.drift(url, table, row_model=TypedRow) == []
    assert typedstore.upgrade(url, table, row_model=TypedRow) == []


def tables_and_rows(url: str) -> dict[str, Any]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            names = sa.inspect(conn).get_table_names()
            return {name: conn.execute(sa.select(sa.func.count()).select_from(
                sa.table(name))).scalar() for name in names}
    finally:
        engine.dispose()


@pytest.fixture
def canary(base_url: str) -> Iterator[str]:
    """A table of someone else's, which no store may touch."""
    engine = sa.create_engine(base_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE canary (v INTEGER)"))
        conn.execute(sa.text("INSERT INTO canary (v) VALUES (42)"))
    engine.dispose()
    yield "canary"
    engine = sa.create_engine(base_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT v FROM canary")).all() == [(42,)]
    engine.dispose()


def test_odd_names_work(base_url: str, canary: str) -> None:
    for name in ODD_NAMES:
        exercise(base_url, name)
    tables = tables_and_rows(base_url)
    for name in ODD_NAMES:
        assert tables[name] == 3, name
    assert tables["canary"] == 1


def test_names_at_the_limit_work(base_url: str, canary: str) -> None:
    backend = backend_of(base_url)
    names = limit_names(backend)
    for name in names:
        exercise(base_url, name)
    tables = tables_and_rows(base_url)
    for name in names:
        assert tables[name] == 3, name
        helper = version_table(name, backend)
        assert tables[helper] == 1, (name, helper)
        if backend != "sqlite":
            assert helper != f"typedstore_version_{name}" and len(helper) <= 59


def test_names_that_fit_keep_their_version_table(base_url: str) -> None:
    """Existing stores keep working: the plain name is kept wherever it fits."""
    backend = backend_of(base_url)
    name = "k" * (40 if backend == "postgresql" else 41 if backend == "mysql" else 200)
    exercise(base_url, name)
    assert version_table(name, backend) == f"typedstore_version_{name}"
    assert f"typedstore_version_{name}" in tables_and_rows(base_url)


REFUSED = {
    "postgresql": ["p" * 64, "é" * 32, "nul\x00char", "typedstore_ids",
                   "typedstore_version_x", "lone\udc00"],
    "mysql": ["m" * 65, "trailing ", "emoji😀", "line\nbreak", "carriage\rreturn",
              "/" * 63 + "a", "日" * 64, "nul\x00char", "typedstore_backfill"],
    "sqlite": ["sqlite_master2", "SQLITE_x", "typedstore_ids", "nul\x00char"],
}


def test_names_that_cannot_work_are_refused_up_front(base_url: str, canary: str) -> None:
    before = tables_and_rows(base_url)
    for name in REFUSED[backend_of(base_url)]:
        with pytest.raises(SchemaError) as info:
            make_store(base_url, table_name=name, row_model=TypedRow)
        assert repr(name) in str(info.value) and "cannot be used" in str(info.value), name
        with pytest.raises(SchemaError):
            typedstore.upgrade(base_url, name)
    assert tables_and_rows(base_url) == before
