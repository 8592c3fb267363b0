"""Shared fixtures: one store location per test on every backend.

SQL backends use the real servers: ``TYPEDSTORE_TEST_PG_URL`` and
``TYPEDSTORE_TEST_MYSQL_URL`` (defaults: the loopback servers of the
development and CI machines). Each test run gets its own PostgreSQL schema and
MariaDB database, dropped at the end; each test gets its own table. When
``CI=true`` an unreachable server fails the run; elsewhere its tests are
skipped with the reason.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from typedstore import Store, make_store

PG_URL = os.environ.get("TYPEDSTORE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("TYPEDSTORE_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
IN_CI = os.environ.get("CI", "").lower() == "true"

#: Backends every contract test runs on. The SQL store issue adds its own.
BACKENDS = ["file", "sqlite", "postgresql", "mysql"]

_RUN = uuid.uuid4().hex[:10]
_table_counter = itertools.count()


def unreachable(what: str, exc: BaseException) -> None:
    """Fail in CI, skip elsewhere, naming the server and the reason."""
    message = f"{what} is unreachable: {type(exc).__name__}: {exc}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def new_table() -> str:
    return f"t{_RUN}_{next(_table_counter)}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh, empty store location for this test on ``backend``."""
    if backend == "file":
        return str(tmp_path / "jobs")
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}#table={new_table()}"
    if backend == "postgresql":
        base = request.getfixturevalue("pg_base_url")
        return f"{base}#table={new_table()}"
    if backend == "mysql":
        base = request.getfixturevalue("mysql_base_url")
        return f"{base}#table={new_table()}"
    raise AssertionError(backend)


@pytest.fixture
def open_store(store_url: str) -> Iterator[Callable[..., Store]]:
    """Open (another instance of) this test's store; all are closed at teardown."""
    opened: list[Store] = []

    def _open(**kwargs: Any) -> Store:
        store = make_store(store_url, **kwargs)
        opened.append(store)
        return store

    yield _open
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Callable[..., Store]) -> Store:
    return open_store()


@pytest.fixture(scope="session")
def pg_base_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a schema of this run's own."""
    import sqlalchemy as sa

    schema = f"ts_{_RUN}"
    try:
        admin = sa.create_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        unreachable(f"PostgreSQL at {sa.make_url(PG_URL).render_as_string()}", exc)
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(scope="session")
def mysql_base_url() -> Iterator[str]:
    """A MariaDB/MySQL URL naming a database of this run's own."""
    import sqlalchemy as sa

    database = f"ts_{_RUN}"
    try:
        admin = sa.create_engine(MYSQL_URL)
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE DATABASE `{database}`"))
    except Exception as exc:
        unreachable(f"MySQL at {sa.make_url(MYSQL_URL).render_as_string()}", exc)
    url = sa.make_url(MYSQL_URL).set(database=database)
    yield url.render_as_string(hide_password=False)
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP DATABASE `{database}`"))
    admin.dispose()
