"""Helpers of the schema-evolution tests: a database under test, and running commands.

:class:`Db` is one database (a SQLite file, this run's PostgreSQL schema or MariaDB
database) with small inspection helpers; each test uses tables of its own
(:func:`unique_table`). :func:`run_alembic` and :func:`run_typedstore` run the real
commands in a child process from the repository root.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from typedstore.schema import version_table

REPO = Path(__file__).resolve().parents[2]
TYPEDSTORE = str(Path(sys.executable).with_name("typedstore"))
SQL_BACKENDS = ["sqlite", "postgresql", "mysql"]


def unique_table() -> str:
    """A table name used by no other test (short: index and version table names derive
    from it, and MySQL/PostgreSQL identifiers are limited to 64/63 characters)."""
    return f"mg{uuid.uuid4().hex[:10]}"


#: The CREATE TABLE that GC3Pie 2.6.8's ``SqlStore`` runs (``meta.create_all()``,
#: SQLAlchemy 1.3.24) on each backend, printed once with the real GC3Pie (its
#: SQLAlchemy engine's log, with one extra field ``Column('jobname', String(256))``
#: in ``extra_fields``). Its payload column is a plain ``BLOB`` on MySQL/MariaDB:
#: 64 KB. ``{extra}`` stands for the extra fields' columns.
GC3PIE_DDL = {
    "sqlite": "CREATE TABLE {table} (id INTEGER NOT NULL, data BLOB, state VARCHAR(128), "
              "{extra}PRIMARY KEY (id))",
    "postgresql": "CREATE TABLE {table} (id SERIAL NOT NULL, data BYTEA, state VARCHAR(128), "
                  "{extra}PRIMARY KEY (id))",
    "mysql": "CREATE TABLE {table} (id INTEGER NOT NULL AUTO_INCREMENT, data BLOB, "
             "state VARCHAR(128), {extra}PRIMARY KEY (id))",
}


def gc3pie_create_table(backend: str, table: str, *extra: str) -> str:
    """GC3Pie's CREATE TABLE of ``table`` on ``backend`` with ``extra`` columns
    (``"jobname VARCHAR(256)"``), as GC3Pie 2.6.8 emits it (:data:`GC3PIE_DDL`)."""
    return GC3PIE_DDL[backend].format(table=table, extra="".join(f"{c}, " for c in extra))


def child_env() -> dict[str, str]:
    """Environment of a child that imports ``tests.migrations.models``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.pop("TYPEDSTORE_URL", None)
    return env


def _run(cmd: list[str], expect: int | None, timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=REPO, env=child_env(), capture_output=True, text=True,
                            timeout=timeout, check=False)
    if expect is not None and result.returncode != expect:
        raise AssertionError(
            f"{cmd} exited {result.returncode}, expected {expect}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def run_alembic(*args: str, config: Path | None = None, expect: int | None = 0,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``alembic [-c config] args...`` from the repository root (its alembic.ini by default)."""
    cmd = [sys.executable, "-m", "alembic"]
    if config is not None:
        cmd += ["-c", str(config)]
    return _run([*cmd, *args], expect, timeout)


def run_typedstore(*args: str, expect: int | None = 0,
                   timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The ``typedstore`` command."""
    return _run([TYPEDSTORE, *args], expect, timeout)


@dataclass
class Db:
    """A database under test.

    Attributes:
        backend: ``sqlite``, ``postgresql`` or ``mysql``.
        url: its SQLAlchemy URL (no ``#table=``).
        engine: an engine for inspecting it (NullPool: holds no connection, so no
            lock, between calls).
    """

    backend: str
    url: str
    engine: sa.Engine

    def at(self, table: str) -> str:
        """The store URL of ``table``."""
        return f"{self.url}#table={table}"

    def has_table(self, name: str) -> bool:
        with self.engine.connect() as conn:
            return sa.inspect(conn).has_table(name)

    def columns(self, table: str) -> set[str]:
        with self.engine.connect() as conn:
            return {c["name"] for c in sa.inspect(conn).get_columns(table)}

    def column_type(self, table: str, column: str) -> str:
        """The SQL type of ``column`` as the database reports it (``LONGBLOB``)."""
        with self.engine.connect() as conn:
            for reflected in sa.inspect(conn).get_columns(table):
                if reflected["name"] == column:
                    return str(reflected["type"].compile(dialect=conn.dialect))
        raise AssertionError(f"table {table} has no column {column}")

    def indexes(self, table: str) -> set[str]:
        with self.engine.connect() as conn:
            return {str(i["name"]) for i in sa.inspect(conn).get_indexes(table)}

    def revisions(self, table: str) -> list[str]:
        """The revisions in the version table of ``table``."""
        return [r[0] for r in self.rows(f"SELECT version_num FROM {version_table(table)}")]

    def counter(self, table: str) -> int | None:
        """``next_id`` of ``table`` in the id counter table (``None``: no row)."""
        if not self.has_table("typedstore_ids"):
            return None
        rows = self.rows("SELECT next_id FROM typedstore_ids WHERE table_name = :t", t=table)
        return int(rows[0][0]) if rows else None

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params).all())

    def execute(self, sql: str, **params: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(sql), params)

    def payloads(self, table: str) -> dict[int, Any]:
        """``id -> unpickled data`` of every row, read with plain SQL and ``pickle``."""
        return {int(id_): pickle.loads(bytes(data))
                for id_, data in self.rows(f"SELECT id, data FROM {table} ORDER BY id")}

    def payload_bytes(self, table: str) -> dict[int, bytes]:
        return {int(id_): bytes(data)
                for id_, data in self.rows(f"SELECT id, data FROM {table} ORDER BY id")}
