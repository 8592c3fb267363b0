"""The ``alembic`` command of the repository creates, versions and drops store tables.

Runs the real command (a child process, from the repository root, with its
alembic.ini) on SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import typedstore
from tests.migrations.support import Db, run_alembic, unique_table
from typedstore import make_store
from typedstore.schema import code_head, version_table

#: typedstore's head revision, which tables reach on open.
HEAD = code_head()


def test_upgrade_head_creates_a_working_store(db: Db, table: str) -> None:
    run_alembic("-x", f"url={db.url}", "-x", f"table={table}", "upgrade", "head")

    assert db.has_table(table)
    assert db.has_table(version_table(table))
    assert version_table(table) == f"typedstore_version_{table}"
    assert not db.has_table("alembic_version")  # no shared default version table
    assert db.revisions(table) == [HEAD]
    assert {"id", "data", "state", "version", "updated_at"} <= db.columns(table)

    current = run_alembic("-x", f"url={db.url}", "-x", f"table={table}", "current")
    assert f"{HEAD} (head)" in current.stdout

    with make_store(db.at(table)) as store:
        first = store.save({"name": "a", "n": 1})
        second = store.save(["b", 2])
    with make_store(db.at(table), create=False) as store:
        assert store.load(first) == {"name": "a", "n": 1}
        assert store.load(second) == ["b", 2]
        assert sorted(store.list()) == sorted([first, second])


def test_tables_in_one_database_are_versioned_independently(db: Db) -> None:
    a, b = unique_table(), unique_table()
    typedstore.upgrade(db.url, a)
    # The table may also come from the URL's #table= fragment.
    run_alembic("-x", f"url={db.at(b)}", "upgrade", "ts0001")

    assert db.revisions(a) == [HEAD]
    assert db.revisions(b) == ["ts0001"]
    assert db.columns(b) == {"id", "data", "state"}
    assert {"version", "updated_at"} <= db.columns(a)
    assert db.counter(a) == 1
    assert db.counter(b) is None

    with make_store(db.at(a)) as store:
        saved = store.save({"kept": True})

    typedstore.upgrade(db.at(b))
    assert db.revisions(b) == [HEAD]
    assert {"version", "updated_at"} <= db.columns(b)

    run_alembic("-x", f"url={db.url}", "-x", f"table={b}", "downgrade", "base")
    assert not db.has_table(b)
    assert not db.has_table(version_table(b, db.backend))  # base leaves nothing of b
    # Table a is untouched by b's migrations.
    assert db.revisions(a) == [HEAD]
    with make_store(db.at(a), create=False) as store:
        assert store.load(saved) == {"kept": True}
