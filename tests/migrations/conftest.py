"""Fixtures of the schema-evolution tests: one database per backend.

``db`` runs a test on SQLite (a file in ``tmp_path``), PostgreSQL (this run's schema,
``pg_base_url``) and MariaDB (this run's database, ``mysql_base_url``); tests use
tables of their own (:func:`tests.migrations.support.unique_table`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.migrations.support import SQL_BACKENDS, Db, unique_table


def _db(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'migrations.db'}"
    elif backend == "postgresql":
        url = request.getfixturevalue("pg_base_url")
    else:
        url = request.getfixturevalue("mysql_base_url")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    yield Db(backend, url, engine)
    engine.dispose()


@pytest.fixture(autouse=True)
def gc3pie_id_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """GC3Pie's id counter file (``GC3PIE_ID_FILE``), which stores on adopted GC3Pie
    tables take their ids from, in this test's tmp dir: never ``~/.gc3/next_id.txt``."""
    path = tmp_path / "gc3pie_next_id.txt"
    monkeypatch.setenv("GC3PIE_ID_FILE", str(path))
    return path


@pytest.fixture(params=SQL_BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    """The database of this test, on each SQL backend."""
    yield from _db(str(request.param), request, tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_sqlite_pg(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    """The database of this test, on SQLite and PostgreSQL only."""
    yield from _db(str(request.param), request, tmp_path)


@pytest.fixture
def mysql_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    """A MariaDB/MySQL database, for tests of what only that backend has."""
    yield from _db("mysql", request, tmp_path)


@pytest.fixture
def sqlite_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    """A SQLite database for tests that need one backend only."""
    yield from _db("sqlite", request, tmp_path)


@pytest.fixture
def table() -> str:
    """A table name of this test's own."""
    return unique_table()
