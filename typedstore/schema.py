"""Schema of store tables: Alembic migrations driven from code, checks, additive upgrades.

Every store table is created and evolved by Alembic: typedstore's own revision
chain (``typedstore/migrations/versions``, revisions ``ts0001``, ``ts0002``...)
builds the base table and its bookkeeping; each table records its revision in
a version table of its own (``typedstore_version_<table>``), so several stores
can share one database. The same environment serves the ``alembic`` command
(repo-root ``alembic.ini``, ``-x url=... -x table=...``) and code
(:func:`upgrade`), so there is one way tables are made.

When a store opens, :func:`inspect_store` reads what the database holds and
:func:`check_store` refuses a table that is behind or ahead of the code (saying
the command that fixes it) or that lacks columns of the row model (naming
them). A table with typedstore's columns but no version table, or GC3Pie's
plain table, is used as it is and adopted by the next upgrade.
"""

from __future__ import annotations

import importlib
import logging
import os
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlmodel import SQLModel

from .defaults import DEFAULT_TABLE, ID_COUNTER_TABLE, SCHEMA_LOCK_TIMEOUT
from .engine import create_store_engine
from .errors import SchemaError
from .rows import BOOKKEEPING_COLUMNS, DEFAULT_KEY
from .tables import build_table, counter_table, new_metadata
from .urls import parse_store_url, redact

log = logging.getLogger(__name__)

#: Prefix of the per-table Alembic version tables.
VERSION_TABLE_PREFIX = "typedstore_version_"
#: Alembic ``script_location`` of typedstore's own migrations.
SCRIPT_LOCATION = "typedstore:migrations"
#: Prefix of typedstore's own revision ids (``ts0002``); others are users'.
OWN_REVISION_PREFIX = "ts"

RowModel = type[SQLModel] | None
ExtraFields = Mapping[sa.Column[Any], Callable[[Any], Any]] | None


def version_table(table: str) -> str:
    """The Alembic version table of store table ``table``."""
    return f"{VERSION_TABLE_PREFIX}{table}"


@cache
def code_head() -> str:
    """The newest revision of typedstore's own chain (what this code needs)."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def _revision_number(revision: str) -> int | None:
    if revision.startswith(OWN_REVISION_PREFIX) and revision[2:6].isdigit():
        return int(revision[2:6])
    return None


def upgrade_command(url: str, table: str) -> str:
    """The shell command that upgrades ``table`` at ``url`` (password hidden)."""
    return f"alembic -x url='{redact(url)}' -x table={table} upgrade head"


# ---------------------------------------------------------------- inspecting


@dataclass(frozen=True)
class TableState:
    """What the database holds for one store table.

    Attributes:
        exists (bool): the table is there.
        columns (frozenset[str]): its column names (empty if it does not exist).
        revisions (tuple[str, ...] | None): its Alembic revisions; ``None`` when
            it has no version table (never migrated: created by GC3Pie).
    """

    exists: bool
    columns: frozenset[str]
    revisions: tuple[str, ...] | None

    @property
    def legacy(self) -> bool:
        """The table lacks typedstore's bookkeeping columns (GC3Pie's layout)."""
        return self.exists and not set(BOOKKEEPING_COLUMNS) <= self.columns


def inspect_store(connection: sa.Connection, table: str) -> TableState:
    """Read the state of store table ``table``."""
    inspector = sa.inspect(connection)
    if not inspector.has_table(table):
        return TableState(False, frozenset(), None)
    columns = frozenset(c["name"] for c in inspector.get_columns(table))
    if not inspector.has_table(version_table(table)):
        return TableState(True, columns, None)
    versions = sa.table(version_table(table), sa.column("version_num"))
    revisions = tuple(r[0] for r in connection.execute(sa.select(versions.c.version_num)))
    return TableState(True, columns, revisions)


def check_store(state: TableState, wanted: sa.Table, url: str) -> None:
    """Raise :class:`SchemaError` unless a store can use the table as it is.

    Refused: a table at an older revision of typedstore's chain than the code
    (behind) or at a newer one (ahead: newer code wrote it), and a table
    lacking columns the row model declares.
    """
    table = wanted.name
    head = code_head()
    for revision in state.revisions or ():
        number, needed = _revision_number(revision), _revision_number(head)
        if number is None or needed is None or number == needed:
            continue
        fix = upgrade_command(url, table)
        if number < needed:
            raise SchemaError(
                f"{redact(url)}: table {table!r} is at schema revision {revision}, this "
                f"version of typedstore needs {head}; upgrade it with: {fix}",
                table=table, current=revision, required=head, command=fix,
            )
        raise SchemaError(
            f"{redact(url)}: table {table!r} is at schema revision {revision}, newer than "
            f"{head} which this version of typedstore knows; upgrade typedstore to open it",
            table=table, current=revision, required=head,
        )
    missing = [c.name for c in wanted.columns
               if c.name not in state.columns and c.name not in BOOKKEEPING_COLUMNS]
    if missing:
        raise SchemaError(
            f"{redact(url)}: table {table!r} lacks the column(s) {', '.join(missing)} of the "
            "row model; add them with typedstore.upgrade(url, row_model=...) (new nullable "
            "or defaulted columns) or a reviewed migration (docs/schema-evolution.md)",
            table=table, missing_columns=missing,
        )


# ---------------------------------------------------------------- the Alembic environment


def _config(url: str | None = None, table: str | None = None, **attributes: Any) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes.update(typedstore_url=url, typedstore_table=table, **attributes)
    return config


def _import_object(spec: str) -> Any:
    module, _, name = spec.partition(":")
    if not name:
        module, _, name = spec.rpartition(".")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def target_metadata(table: str, row_model: RowModel = None,
                    extra_fields: ExtraFields = None) -> sa.MetaData:
    """The tables a store with this row model needs, for comparing with the database."""
    metadata = new_metadata()
    build_table(table, metadata, row_model, extra_fields)
    counter_table(metadata)
    return metadata


def _include_only(table: str) -> Callable[..., bool]:
    """Autogenerate filter: look at this store's table and the counter table only."""
    mine = {table, ID_COUNTER_TABLE}

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "table":
            return name in mine
        owner = getattr(getattr(obj, "table", None), "name", None)
        return owner is None or owner in mine

    return include


def run_environment() -> None:
    """Body of the Alembic ``env.py`` (both the package's and the repository's).

    The URL comes from code (``Config.attributes``), ``-x url=``,
    ``$TYPEDSTORE_URL`` or ``sqlalchemy.url``; the table from code, ``-x
    table=``, the URL's ``#table=``, else ``store``; a row model from code or
    ``-x row_model=package.module:Class`` (used by ``--autogenerate``).
    """
    from alembic import context

    config = context.config
    x = context.get_x_argument(as_dictionary=True)
    url = (config.attributes.get("typedstore_url") or x.get("url")
           or os.environ.get("TYPEDSTORE_URL") or config.get_main_option("sqlalchemy.url"))
    if not url:
        raise SchemaError("no database URL: pass -x url=... or set TYPEDSTORE_URL")
    parsed = parse_store_url(url)
    table = (config.attributes.get("typedstore_table") or x.get("table") or parsed.table
             or DEFAULT_TABLE)
    config.attributes["typedstore_table"] = table
    row_model = config.attributes.get("typedstore_row_model")
    if row_model is None and x.get("row_model"):
        row_model = _import_object(x["row_model"])
    options: dict[str, Any] = {
        "target_metadata": target_metadata(
            table, row_model, config.attributes.get("typedstore_extra_fields")),
        "version_table": version_table(table),
        "include_object": _include_only(table),
        "render_as_batch": True,
        "compare_type": True,
    }
    if context.is_offline_mode():
        context.configure(url=parsed.target, literal_binds=True, **options)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_store_engine(parsed.target, poolclass=sa.pool.NullPool)
    try:
        with engine.connect().execution_options(sqlite_immediate=True) as conn:
            context.configure(connection=conn, **options)
            with context.begin_transaction():
                context.run_migrations()
            conn.commit()
    finally:
        engine.dispose()


# ---------------------------------------------------------------- upgrading from code


def _target(url: str, table: str | None) -> tuple[str, str]:
    parsed = parse_store_url(url)
    return parsed.target, table or parsed.table or DEFAULT_TABLE


@contextmanager
def schema_lock(connection: sa.Connection, table: str) -> Iterator[None]:
    """Let one process at a time change the schema of ``table``.

    PostgreSQL: a transaction-scoped advisory lock. MySQL/MariaDB: a named
    lock (``GET_LOCK``; DDL commits implicitly there, so a transaction could
    not hold it). SQLite: the caller's ``BEGIN IMMEDIATE`` already excludes
    other writers. Whoever waited finds the work done: migrations are
    idempotent.
    """
    dialect = connection.dialect.name
    if dialect == "postgresql":
        key = zlib.crc32(f"typedstore:{table}".encode())
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        yield
    elif dialect in ("mysql", "mariadb"):
        name = f"typedstore:{table}"[:64]
        got = connection.execute(sa.text("SELECT GET_LOCK(:name, :timeout)"),
                                 {"name": name, "timeout": int(SCHEMA_LOCK_TIMEOUT)}).scalar()
        if got != 1:
            raise SchemaError(f"table {table!r}: another process has been changing its schema "
                              f"for {SCHEMA_LOCK_TIMEOUT:.0f} s", table=table)
        try:
            yield
        finally:
            connection.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": name})
    else:
        yield


def migrate(connection: sa.Connection, url: str, table: str, revision: str = "head",
            downgrade: bool = False) -> None:
    """Run typedstore's migrations for ``table`` on ``connection`` (in its transaction)."""
    config = _config(url, table, connection=connection)
    with schema_lock(connection, table):
        try:
            if downgrade:
                command.downgrade(config, revision)
            else:
                command.upgrade(config, revision)
        except CommandError as exc:
            # Typically the table is at a revision of the user's own chain, which
            # only the user's alembic.ini knows.
            fix = f"alembic -x url='{redact(url)}' -x table={table} upgrade heads"
            raise SchemaError(
                f"{redact(url)}: table {table!r}: {exc}; if it is at a revision of your "
                f"own migrations, run them with your alembic.ini: {fix}",
                table=table, command=fix,
            ) from exc


def add_missing_columns(connection: sa.Connection, table: str, row_model: RowModel = None,
                        extra_fields: ExtraFields = None) -> list[str]:
    """Add the row model's new columns and indexes to ``table``; return what was added.

    Only additive changes are made: a nullable column, a column with a scalar
    default (used as the server default for existing rows), an index. A new
    NOT NULL column without a default raises :class:`SchemaError`: it needs a
    migration with a back-fill.
    """
    metadata = target_metadata(table, row_model, extra_fields)
    context = MigrationContext.configure(
        connection, opts={"include_object": _include_only(table), "compare_type": False})
    added: list[str] = []
    columns: list[sa.Column[Any]] = []
    indexes: list[sa.Index] = []
    for diff in compare_metadata(context, metadata):
        if isinstance(diff, tuple) and diff[0] == "add_column" and diff[2] == table:
            columns.append(diff[3])
        elif isinstance(diff, tuple) and diff[0] == "add_index" and diff[1].table.name == table:
            indexes.append(diff[1])
    ops = Operations(context)
    if columns:
        with ops.batch_alter_table(table) as batch:
            for column in columns:
                new = column._copy()
                new.index = None  # indexes are created below, once
                if not new.nullable and new.server_default is None:
                    default = column.info.get(DEFAULT_KEY)
                    if not isinstance(default, (int, float, str)) or isinstance(default, bool):
                        raise SchemaError(
                            f"table {table!r}: new column {column.name!r} is NOT NULL without "
                            "a scalar default; add it with a migration that back-fills it",
                            table=table, missing_columns=[column.name],
                        )
                    new.server_default = sa.DefaultClause(str(default))
                batch.add_column(new)
                added.append(column.name)
    for index in indexes:
        ops.create_index(index.name, table, [c.name for c in index.columns],
                         unique=bool(index.unique))
        added.append(str(index.name))
    if added:
        log.info("table %s: added %s", table, ", ".join(added))
    return added


def upgrade(url: str, table: str | None = None, row_model: RowModel = None,
            extra_fields: ExtraFields = None, add_columns: bool = True) -> list[str]:
    """Bring a store table up to date from code; return the columns and indexes added.

    Runs typedstore's migrations to head (creating the table, or adopting a
    GC3Pie table), then, with ``add_columns``, adds the row model's new
    columns and indexes (:func:`add_missing_columns`). All in one transaction
    where the database supports transactional DDL (SQLite, PostgreSQL).
    """
    target, table = _target(url, table)
    engine = create_store_engine(target, poolclass=sa.pool.NullPool)
    try:
        with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin(), \
                schema_lock(conn, table):
            migrate(conn, url, table)
            if add_columns:
                return add_missing_columns(conn, table, row_model, extra_fields)
            return []
    finally:
        engine.dispose()


def downgrade(url: str, revision: str, table: str | None = None) -> None:
    """Downgrade a store table to ``revision`` (``"base"`` drops it)."""
    target, table = _target(url, table)
    engine = create_store_engine(target, poolclass=sa.pool.NullPool)
    try:
        with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
            migrate(conn, url, table, revision, downgrade=True)
    finally:
        engine.dispose()


def drift(url: str, table: str | None = None, row_model: RowModel = None,
          extra_fields: ExtraFields = None) -> list[Any]:
    """Alembic's differences between the database table and the row model (empty: none)."""
    target, table = _target(url, table)
    engine = create_store_engine(target, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"include_object": _include_only(table), "compare_type": True})
            return list(compare_metadata(context, target_metadata(table, row_model,
                                                                  extra_fields)))
    finally:
        engine.dispose()
