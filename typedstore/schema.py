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

Adopting a GC3Pie table on MySQL/MariaDB also widens its payload column from
GC3Pie's ``BLOB`` (64 KB) to ``LONGBLOB`` (:func:`widen_payload`). A version
table whose store table was dropped by hand is cleared before upgrading, so
the table is created again (:func:`reset_stale_version_table`).
"""

from __future__ import annotations

import importlib
import logging
import logging.config
import os
import re
import shlex
import sys
import weakref
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.operations.ops import MigrationScript
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionMap
from alembic.util import CommandError
from sqlalchemy.dialects import mysql
from sqlmodel import SQLModel

from . import typemap
from .defaults import ID_COUNTER_TABLE, SCHEMA_LOCK_TIMEOUT, STATE_LENGTH
from .engine import create_store_engine
from .errors import ConnectError, SchemaError, StoreError, UrlError
from .integrity import INTEGRITY_COLUMNS
from .references import ROOT_COLUMN
from .rows import BASE_COLUMNS as BASE_COLUMN_NAMES
from .rows import BOOKKEEPING_COLUMNS, DEFAULT_KEY, LENIENT_KEY
from .tables import (
    CHECKPOINT_TABLE,
    build_table,
    check_table_name,
    counter_table,
    mysql_file_name_check,
    mysql_lock_name,
    new_metadata,
    refs_table_name,
    store_table_name,
)
from .tables import VERSION_TABLE_PREFIX as VERSION_TABLE_PREFIX
from .tables import version_table as _version_table
from .urls import parse_store_url, redact

log = logging.getLogger(__name__)

#: Alembic ``script_location`` of typedstore's own migrations.
SCRIPT_LOCATION = "typedstore:migrations"
#: Prefix of typedstore's own revision ids (``ts0002``); others are users'.
OWN_REVISION_PREFIX = "ts"

RowModel = type[SQLModel] | None
ExtraFields = Mapping[sa.Column[Any], Callable[[Any], Any]] | None


def version_table(table: str, dialect: str | sa.Dialect | None = None) -> str:
    """The Alembic version table of store table ``table`` on ``dialect`` (a name or
    a Dialect): ``typedstore_version_<table>``, or a hashed name when that does
    not fit the backend's identifier limit (:func:`typedstore.tables.version_table`;
    ``None``: the plain name)."""
    name = dialect if dialect is None or isinstance(dialect, str) else dialect.name
    return _version_table(table, name)


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


def model_spec(row_model: RowModel) -> str | None:
    """``module:Qualname`` of a row model importable by that name (``None`` otherwise,
    and for a row model defined in the script being run: ``__main__`` names
    another module in any other process)."""
    if row_model is None or row_model.__module__ == "__main__":
        return None
    spec = f"{row_model.__module__}:{row_model.__qualname__}"
    try:
        return spec if _import_object(spec) is row_model else None
    except Exception as exc:
        log.debug("row model %s is not importable as %s: %s", row_model.__name__, spec, exc)
        return None


#: What commands in messages show in place of a URL's password.
PASSWORD_PLACEHOLDER = "PASSWORD"
#: What commands in messages show in place of the module of a row model defined
#: in the script being run.
MODULE_PLACEHOLDER = "MODULE"


def command_url(url: str) -> str:
    """``url`` as commands in messages show it: its password replaced by
    :data:`PASSWORD_PLACEHOLDER` (:func:`password_note` says so)."""
    return redact(url, PASSWORD_PLACEHOLDER)


def password_note(url: str) -> str:
    """The sentence that goes with a command naming ``url`` when the URL holds a
    password, which messages never show ('' otherwise)."""
    if command_url(url) == redact(url, ""):
        return ""
    return (f" (messages never show the password: put it in place of {PASSWORD_PLACEHOLDER} "
            "in the URL, or set $TYPEDSTORE_URL and leave the URL out of alembic's -x url=)")


def _model_reference(row_model: RowModel) -> str | None:
    """How commands name ``row_model``: ``module:Class``; ``MODULE:Class`` for one
    defined in the script being run (:func:`model_note` says so); ``None`` when
    it cannot be named."""
    if row_model is None:
        return None
    spec = model_spec(row_model)
    if spec is None and row_model.__module__ == "__main__":
        return f"{MODULE_PLACEHOLDER}:{row_model.__qualname__}"
    return spec


def model_note(row_model: RowModel) -> str:
    """The sentence that goes with a command naming a row model defined in the
    script being run ('' otherwise)."""
    if row_model is None or row_model.__module__ != "__main__":
        return ""
    name = row_model.__qualname__
    return (f" ({name} is defined in the script being run, which the command cannot "
            f"import: give the module that defines {name} in place of {MODULE_PLACEHOLDER}, "
            "moving the class into a module of its own if needed)")


def command_notes(url: str, row_model: RowModel = None) -> str:
    """The sentences that go with a command naming ``url`` and ``row_model``."""
    return password_note(url) + model_note(row_model)


def row_model_option(row_model: RowModel) -> str:
    """`` --row-model module:Class`` for a ``typedstore`` command ('' when the row
    model cannot be named)."""
    reference = _model_reference(row_model)
    return f" --row-model {shlex.quote(reference)}" if reference else ""


def upgrade_command(url: str, table: str, row_model: RowModel = None) -> str:
    """The shell command that upgrades ``table`` at ``url`` (password replaced:
    :func:`command_notes`), with ``-x row_model=...`` when the row model can be
    named (revisions that convert its columns use it: ts0003). ``upgrade heads``:
    the table's own revisions (``migrations/versions/<table>/``) may branch off an
    older typedstore head."""
    reference = _model_reference(row_model)
    model = f"-x {shlex.quote('row_model=' + reference)} " if reference else ""
    return (f"alembic -x {shlex.quote('url=' + command_url(url))} "
            f"-x {shlex.quote('table=' + table)} {model}upgrade heads")


def add_columns_command(url: str, table: str, row_model: RowModel) -> str | None:
    """The ``typedstore upgrade`` command that adds the row model's new nullable or
    defaulted columns to ``table`` (password replaced: :func:`command_notes`);
    ``None`` when the row model cannot be named (then only
    ``typedstore.upgrade(url, row_model=...)`` from the program can)."""
    if _model_reference(row_model) is None:
        return None
    return (f"typedstore upgrade {shlex.quote(command_url(url))} --table {shlex.quote(table)}"
            f"{row_model_option(row_model)}")


def revision_command(url: str, table: str, row_model: RowModel, message: str) -> str | None:
    """The ``alembic revision --autogenerate`` command that writes the migration of
    ``table`` to ``row_model`` (``None`` when the row model cannot be named)."""
    reference = _model_reference(row_model)
    if reference is None:
        return None
    return (f"alembic -x {shlex.quote('url=' + command_url(url))} "
            f"-x {shlex.quote('table=' + table)} "
            f"-x {shlex.quote('row_model=' + reference)} revision --autogenerate "
            f"-m {shlex.quote(message)}")


def typedstore_upgrade_command(url: str, table: str) -> str:
    """The ``typedstore upgrade`` command for ``table`` at ``url`` (password
    replaced); unlike plain ``alembic upgrade``, it also repairs a table dropped
    by hand."""
    return f"typedstore upgrade {shlex.quote(command_url(url))} --table {shlex.quote(table)}"


# ---------------------------------------------------------------- inspecting


#: Bytes the MySQL/MariaDB binary column types hold; typedstore's payload type
#: is LONGBLOB (4 GB), GC3Pie's table has a BLOB (64 KB).
MYSQL_BLOB_LIMITS: tuple[tuple[type[sa.types.TypeEngine[Any]], int], ...] = (
    (mysql.LONGBLOB, 2**32 - 1),
    (mysql.MEDIUMBLOB, 2**24 - 1),
    (mysql.TINYBLOB, 2**8 - 1),
    (sa.BLOB, 2**16 - 1),
)
#: The payload column's name.
PAYLOAD_COLUMN = "data"


def payload_limit(dialect: str, type_: sa.types.TypeEngine[Any]) -> int | None:
    """The most bytes a reflected payload column of ``type_`` holds, when that is
    less than typedstore's own payload type holds (``None``: no such limit).

    Only MySQL/MariaDB has narrow binary types that a table may carry (GC3Pie's
    ``BLOB``, or a ``VARBINARY(n)`` made by hand); PostgreSQL's ``BYTEA`` and
    SQLite's ``BLOB`` hold what typedstore's payloads need.
    """
    if dialect not in ("mysql", "mariadb"):
        return None
    for blob_type, limit in MYSQL_BLOB_LIMITS:
        if isinstance(type_, blob_type):
            return None if blob_type is mysql.LONGBLOB else limit
    length = getattr(type_, "length", None)
    if isinstance(type_, (sa.VARBINARY, sa.BINARY)) and isinstance(length, int):
        return length
    return None


@dataclass(frozen=True)
class TableState:
    """What the database holds for one store table.

    Attributes:
        exists (bool): the table is there.
        columns (frozenset[str]): its column names (empty if it does not exist).
        revisions (tuple[str, ...] | None): the revisions in its Alembic version
            table; ``None`` when it has no version table (a table never
            migrated: created by GC3Pie). Read even when the table itself is
            gone (see :attr:`stale`).
        payload_type (str | None): the SQL type of its payload column.
        payload_limit (int | None): the most bytes its payload column holds
            when that is less than typedstore's payload type holds (GC3Pie's
            ``BLOB`` on MySQL/MariaDB: 65,535); ``None`` otherwise.
        gc3pie_layout (bool): GC3Pie created the table: its ``state`` column
            is nullable, as GC3Pie's ``VARCHAR(128)`` is (typedstore creates it
            NOT NULL with a default). Adoption leaves that column alone, so an
            adopted table still says so.
        foreign (tuple[str, ...]): why the table is not a store table at all
            (:func:`foreign_problems`: no ``id``, ``data`` or ``state`` column);
            empty for a store table or a missing one.
        types (Mapping[str, TypeEngine]): the reflected type of each column.
        not_null (frozenset[str]): the columns declared NOT NULL.
    """

    exists: bool
    columns: frozenset[str]
    revisions: tuple[str, ...] | None
    payload_type: str | None = None
    payload_limit: int | None = None
    gc3pie_layout: bool = False
    foreign: tuple[str, ...] = ()
    types: Mapping[str, sa.types.TypeEngine[Any]] = field(default_factory=dict, compare=False)
    dialect: sa.Dialect | None = field(default=None, compare=False)
    not_null: frozenset[str] = field(default=frozenset(), compare=False)

    @property
    def legacy(self) -> bool:
        """The table lacks typedstore's bookkeeping columns (GC3Pie's layout)."""
        return self.exists and not set(BOOKKEEPING_COLUMNS) <= self.columns

    @property
    def stale(self) -> bool:
        """The table is gone but its version table still records revisions
        (the table was dropped by hand)."""
        return not self.exists and bool(self.revisions)


def _revisions(connection: sa.Connection, inspector: Any, table: str) -> tuple[str, ...] | None:
    name = version_table(table, connection.dialect)
    if not inspector.has_table(name):
        return None
    versions = sa.table(name, sa.column("version_num"))
    return tuple(r[0] for r in connection.execute(sa.select(versions.c.version_num)))


def names_fold_case(connection: sa.Connection) -> bool:
    """Whether table names are case-insensitive on this connection's backend: on
    SQLite always (``Jobs`` and ``jobs`` are one table, ASCII letters only:
    https://www.sqlite.org/lang_keywords.html), on MariaDB/MySQL when the server's
    ``lower_case_table_names`` is not 0 (Windows, macOS); never on PostgreSQL,
    where typedstore quotes every name. Asked once per connection."""
    dialect = connection.dialect.name
    if dialect == "sqlite":
        return True
    if dialect not in ("mysql", "mariadb"):
        return False
    key = "typedstore_names_fold_case"
    if key not in connection.info:
        setting = connection.execute(sa.text("SELECT @@lower_case_table_names")).scalar()
        connection.info[key] = bool(setting)
    return bool(connection.info[key])


#: How SQLAlchemy's compiler writes a bound parameter before it turns it into a
#: positional ``?`` (``%(name)s``), and its post-compile marker: in a table name on
#: a backend whose parameter style does not double percent signs (SQLite's
#: ``qmark``) the compiler takes them for parameters (sqlalchemy.sql.compiler,
#: ``_process_positional``).
_BIND_LOOKALIKE = re.compile(r"%\([^)]*\)s")
_POSTCOMPILE = "__[POSTCOMPILE_"


def check_name(connection: sa.Connection, table: str) -> None:
    """Refuse (:class:`SchemaError`) a table name that cannot work on this backend,
    before any statement that uses it.

    Besides :func:`typedstore.tables.check_table_name` (length, NUL,
    reserved names...): where the backend folds the case of table names
    (:func:`names_fold_case`) the reserved names are compared without case, and
    a table that exists under the same name in another case (``Jobs`` for
    ``jobs``) is refused naming it, since it is the same table; on SQLite a
    name holding a bind-parameter look-alike (``%(id)s``) is refused, and
    everywhere one holding SQLAlchemy's ``__[POSTCOMPILE_`` marker.
    """
    dialect = connection.dialect.name
    check_table_name(table, dialect)

    def refuse(why: str) -> SchemaError:
        return SchemaError(f"table name {table!r} cannot be used on {dialect}: {why}",
                           table=table)

    if _POSTCOMPILE in table or (not connection.dialect.identifier_preparer._double_percents
                                 and _BIND_LOOKALIKE.search(table)):
        raise refuse("SQLAlchemy's statement compiler would read part of it as a bound "
                     "parameter (%(name)s or __[POSTCOMPILE_...]); choose a name without it")
    if dialect in ("mysql", "mariadb"):
        mysql_file_name_check(connection, table)
    if names_fold_case(connection):
        lowered = table.lower()
        if lowered in (ID_COUNTER_TABLE, CHECKPOINT_TABLE) or lowered.startswith(
                (VERSION_TABLE_PREFIX, "_alembic_tmp_")):
            raise refuse(f"typedstore uses that name (or prefix) for its own tables, and "
                         f"{dialect} table names do not tell upper from lower case")
        other = _same_name_other_case(connection, table)
        if other is not None:
            raise refuse(
                f"{dialect} table names do not tell upper from lower case, so it names the "
                f"existing table {other!r}; open that store as {other!r} (two spellings "
                f"would share one table with two id counters)")


def _same_name_other_case(connection: sa.Connection, table: str) -> str | None:
    """An existing table (or version table) whose name differs from ``table``'s (or
    its version table's) in case only, on a backend that folds case."""
    wanted = {table, version_table(table, connection.dialect)}
    if connection.dialect.name == "sqlite":
        query = sa.text("SELECT name FROM sqlite_master WHERE type = 'table' "
                        "AND lower(name) IN (lower(:a), lower(:b))")
    else:
        query = sa.text("SELECT table_name FROM information_schema.tables WHERE "
                        "table_schema = DATABASE() AND lower(table_name) IN (lower(:a), "
                        "lower(:b))")
    a, b = sorted(wanted)
    for (name,) in connection.execute(query, {"a": a, "b": b}):
        if name not in wanted:
            return str(name).removeprefix(VERSION_TABLE_PREFIX) \
                if str(name).lower().startswith(VERSION_TABLE_PREFIX) else str(name)
    return None


# ---------------------------------------------------------------- column kinds


def column_kind(type_: sa.types.TypeEngine[Any], dialect: sa.Dialect) -> str | None:
    """What values a column of ``type_`` (reflected, or a dialect's rendering of a
    type-map type) holds: ``int``, ``float``, ``decimal``, ``bool``, ``text``,
    ``bytes``, ``datetime``, ``date``, ``uuid``, ``None`` when unknown.

    MariaDB/MySQL ``BOOL`` is ``TINYINT(1)``, reflected as such; a UUID outside
    PostgreSQL is ``CHAR(32)`` text.
    """
    if isinstance(type_, sa.types.TypeDecorator):
        type_ = type_.load_dialect_impl(dialect)
    if isinstance(type_, sa.Boolean) or (
            isinstance(type_, mysql.TINYINT) and getattr(type_, "display_width", None) == 1):
        return "bool"
    if isinstance(type_, sa.Integer):
        return "int"
    if isinstance(type_, sa.Float):
        return "float"
    if isinstance(type_, sa.Numeric):
        return "decimal"
    if isinstance(type_, sa.Uuid):
        native = getattr(type_, "native_uuid", True) and dialect.name == "postgresql"
        return "uuid" if native else "text"
    if isinstance(type_, sa.String):
        return "text"
    if isinstance(type_, sa.types._Binary):
        return "bytes"
    if isinstance(type_, sa.DateTime):
        return "datetime"
    if isinstance(type_, sa.Date):
        return "date"
    return None


def _shown(type_: sa.types.TypeEngine[Any], dialect: sa.Dialect) -> str:
    try:
        return str(type_.compile(dialect=dialect))
    except Exception as exc:
        log.debug("type %r cannot be compiled for %s: %s", type_, dialect.name, exc)
        return repr(type_)


#: The columns every store table has, and what they hold: a table lacking one is
#: not a store table (neither typedstore's nor GC3Pie's).
STORE_COLUMNS = {"id": "int", "data": "bytes", "state": "text"}


def foreign_problems(columns: Mapping[str, sa.types.TypeEngine[Any]],
                     dialect: sa.Dialect) -> tuple[str, ...]:
    """Why a table with these reflected columns is not a store table (empty: it is
    one): the store columns it lacks, and those holding other values."""
    problems = []
    missing = [name for name in STORE_COLUMNS if name not in columns]
    if missing:
        problems.append(f"it has no column {', '.join(missing)}")
    for name, kind in STORE_COLUMNS.items():
        if name in columns:
            found = column_kind(columns[name], dialect)
            if found is not None and found != kind:
                problems.append(f"its column {name} is {_shown(columns[name], dialect)}, "
                                f"a store's holds {kind} values")
    return tuple(problems)


def refuse_foreign(state: TableState, table: str, url: str | None) -> None:
    """Raise :class:`SchemaError` if ``table`` exists and is not a store table: never
    adopt, alter or write a table someone else made."""
    if not state.foreign:
        return
    where = f"{redact(url)}: " if url else ""
    raise SchemaError(
        f"{where}table {table!r} exists and is not a store table (typedstore's or GC3Pie's "
        f"have the columns id, data and state): {'; '.join(state.foreign)}. typedstore "
        f"changes nothing in it; give the store another table (#table=NAME or table_name=)",
        table=table,
    )


def type_changes(state: TableState, wanted: sa.Table, dialect: sa.Dialect
                 ) -> list[tuple[str, str, str]]:
    """The row-model columns whose stored values are of another kind than the row
    model's field (``int`` stored, ``str`` declared): ``(column, stored type,
    expected type)``. Widths and collations are not compared here (a table made
    before the type map: :func:`pre_map_columns`)."""
    changes = []
    for column in wanted.columns:
        if column.name in BASE_COLUMN_NAMES or LENIENT_KEY in column.info:
            continue
        stored = state.types.get(column.name)
        if stored is None:
            continue
        have, need = column_kind(stored, dialect), column_kind(column.type, dialect)
        if have is None or need is None or have == need:
            continue
        changes.append((column.name, f"{_shown(stored, dialect)} ({have})",
                        f"{_shown(column.type, dialect)} ({need})"))
    return changes


def refuse_type_changes(state: TableState, wanted: sa.Table, dialect: sa.Dialect,
                        url: str | None) -> None:
    """Raise :class:`SchemaError` naming each row-model field whose type changed
    since the table's column was made (:func:`type_changes`)."""
    changes = type_changes(state, wanted, dialect)
    if not changes:
        return
    table = wanted.name
    listing = "; ".join(f"column {name!r} is stored as {have}, the row model declares "
                        f"{need}" for name, have, need in changes)
    where = f"{redact(url)}: " if url else ""
    raise SchemaError(
        f"{where}table {table!r}: {listing}. A field's type change is not made on open: the "
        "stored values need converting, with a reviewed migration (alembic revision "
        "--autogenerate -x row_model=..., whose op.alter_column(..., type_=...) you check "
        "and complete, e.g. with postgresql_using=, then alembic upgrade heads; or add a "
        "new field and back-fill it with typedstore.backfill), or give the field its old "
        "type back (docs/schema-evolution.md)",
        table=table,
    )


def inspect_store(connection: sa.Connection, table: str) -> TableState:
    """Read the state of store table ``table`` (a name that cannot work on this
    backend is a :class:`SchemaError` first)."""
    check_name(connection, table)
    inspector = sa.inspect(connection)
    revisions = _revisions(connection, inspector, table)
    if not inspector.has_table(table):
        return TableState(False, frozenset(), revisions)
    reflected = inspector.get_columns(table)
    columns = frozenset(c["name"] for c in reflected)
    payload_type, limit, gc3pie = None, None, False
    for column in reflected:
        if column["name"] == PAYLOAD_COLUMN:
            payload_type = str(column["type"].compile(dialect=connection.dialect))
            limit = payload_limit(connection.dialect.name, column["type"])
        elif column["name"] == "state":
            gc3pie = bool(column["nullable"])
    types = {c["name"]: c["type"] for c in reflected}
    not_null = frozenset(c["name"] for c in reflected if not c.get("nullable", True))
    return TableState(True, columns, revisions, payload_type, limit, gc3pie,
                      foreign_problems(types, connection.dialect), types, connection.dialect,
                      not_null)


def check_store(state: TableState, wanted: sa.Table, url: str,
                row_model: RowModel = None) -> None:
    """Raise :class:`SchemaError` unless a store can use the table as it is.

    Refused: a table that is not a store table (:func:`refuse_foreign`), a
    table at an older revision of typedstore's chain than the code (behind) or
    at a newer one (ahead: newer code wrote it), a table lacking columns the
    row model declares, and one whose column holds another kind of value than
    the row model's field declares (:func:`refuse_type_changes`).
    """
    table = wanted.name
    refuse_foreign(state, table, url)
    head = code_head()
    for revision in state.revisions or ():
        number, needed = _revision_number(revision), _revision_number(head)
        if number is None or needed is None or number == needed:
            continue
        fix = upgrade_command(url, table, row_model)
        if number < needed:
            raise SchemaError(
                f"{redact(url)}: table {table!r} is at schema revision {revision}, this "
                f"version of typedstore needs {head}; upgrade it with: {fix}"
                f"{command_notes(url, row_model)}",
                table=table, current=revision, required=head, command=fix,
            )
        raise SchemaError(
            f"{redact(url)}: table {table!r} is at schema revision {revision}, newer than "
            f"{head} which this version of typedstore knows; upgrade typedstore to open it",
            table=table, current=revision, required=head,
        )
    # Bookkeeping and integrity columns come with typedstore's revisions (checked
    # above); a GC3Pie table read as it is lacks them, and is used without them.
    missing = [c.name for c in wanted.columns if c.name not in state.columns
               and c.name not in BOOKKEEPING_COLUMNS and c.name not in INTEGRITY_COLUMNS
               and c.name != ROOT_COLUMN]
    if missing:
        required = [c.name for c in wanted.columns if c.name in missing and not c.nullable
                    and c.server_default is None and DEFAULT_KEY not in c.info]
        remedy: str | None = add_columns_command(url, table, row_model)
        how = (f"add them with: {remedy}" if remedy else
               f"add them with typedstore.upgrade({redact(url)!r}, table={table!r}, "
               "row_model=...)")
        how += " (new nullable or defaulted columns), or a reviewed migration " \
               "(docs/schema-evolution.md)"
        if required:
            remedy = revision_command(url, table, row_model, f"add {', '.join(required)}")
            how = (f"{', '.join(required)} {'is' if len(required) == 1 else 'are'} required "
                   "(no default, not optional): the stored rows need a value, so add "
                   f"{'it' if len(required) == 1 else 'them'} with a migration that "
                   "back-fills the rows (docs/schema-evolution.md)"
                   + (f": {remedy}, then edit the revision it writes (its plain "
                      "add_column fails on stored rows: add the column nullable, fill it with "
                      "op.backfill_column, then make it NOT NULL), then alembic ... upgrade "
                      "heads" if remedy else "")
                   + ("; the others come with that migration too"
                      if len(required) < len(missing) else ""))
        raise SchemaError(
            f"{redact(url)}: table {table!r} lacks the column(s) {', '.join(missing)} of the "
            f"row model; {how}{command_notes(url, row_model) if remedy else ''}",
            table=table, missing_columns=missing, command=remedy,
        )
    if state.dialect is not None:
        refuse_type_changes(state, wanted, state.dialect, url)


# ---------------------------------------------------------------- the Alembic environment


def _config(url: str | None = None, table: str | None = None, ini: Path | None = None,
            **attributes: Any) -> Config:
    """An Alembic configuration running typedstore's environment; with ``ini`` (a
    project's ``alembic.ini``: :func:`project_config`) it reads that file's version
    locations too, so the table's own revisions are found."""
    config = Config(str(ini)) if ini is not None else Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if ini is not None:
        # Alembic would put these in front of sys.path on every read of the
        # configuration; code imports the row model itself (import_row_model).
        config.set_main_option("prepend_sys_path", "")
    config.attributes.update(typedstore_url=url, typedstore_table=table, **attributes)
    return config


#: The file :func:`project_config` looks for in the working directory.
PROJECT_INI = "alembic.ini"


def project_config(config: str | os.PathLike[str] | None = None) -> Path | None:
    """The project's ``alembic.ini`` whose version locations (``typedstore init``:
    typedstore's and ``migrations/versions``) hold the tables' own revisions, found
    as ``alembic`` finds it: ``config`` when given, else ``./alembic.ini`` in the
    working directory; ``None`` when there is none.

    An explicit ``config`` that does not exist, cannot be read, or does not list
    typedstore's revisions among its version locations is a :class:`SchemaError`
    naming it; such a ``./alembic.ini`` (another application's) is ignored, with a
    log line.
    """
    explicit = config is not None
    path = Path(config if config is not None else PROJECT_INI).absolute()
    if not path.is_file():
        if explicit:
            raise SchemaError(f"alembic configuration {str(path)!r} does not exist (or is not "
                              "a file); `typedstore init` writes one")
        return None
    try:
        parsed = _config(ini=path)
        named = parsed.get_main_option("version_locations")
        locations = ScriptDirectory.from_config(parsed)._version_locations if named else ()
    except Exception as exc:
        if explicit:
            raise SchemaError(f"alembic configuration {str(path)!r} cannot be read "
                              f"({type(exc).__name__}: {exc})") from exc
        log.info("%s is not used (cannot be read: %s: %s)", path, type(exc).__name__, exc)
        return None
    package = _package_versions()
    if not any(Path(location).resolve() == package for location in locations):
        why = ("its version_locations do not name typedstore's revisions "
               "(typedstore:migrations/versions); `typedstore init` writes one that does")
        if explicit:
            raise SchemaError(f"alembic configuration {str(path)!r} is not a typedstore "
                              f"project's: {why}")
        log.info("%s is not used: %s", path, why)
        return None
    return path


def import_row_model(spec: str) -> Any:
    """The object ``package.module:Class`` names (also ``package.module.Class``),
    importable from the working directory as ``alembic`` (``prepend_sys_path =
    .``) imports it; an error is a :class:`SchemaError` naming ``spec`` and why."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module, colon, name = spec.partition(":")
    if not module or (colon and not name) or (not colon and "." not in spec):
        raise SchemaError(f"row model {spec!r} is not of the form package.module:Class")
    try:
        obj = _import_object(spec)
    except Exception as exc:
        # Whatever importing the user's module raised (ImportError, SyntaxError, an
        # error of its own code) is that module's problem: one line naming it.
        where = ""
        if isinstance(exc, SyntaxError) and exc.filename:
            where = f" at {exc.filename}:{exc.lineno}"
        raise SchemaError(
            f"row model {spec!r} cannot be imported ({type(exc).__name__}{where}: {exc}); "
            "name it as package.module:Class, importable from the current directory or "
            "$PYTHONPATH") from exc
    table = getattr(obj, "__table__", None)
    if not (isinstance(obj, type) and issubclass(obj, SQLModel) and isinstance(table, sa.Table)):
        what = (f"the class {obj.__module__}.{obj.__qualname__}" if isinstance(obj, type)
                else f"{type(obj).__name__} {_short_repr(obj)}")
        raise SchemaError(
            f"row model {spec!r} is {what}, not a row model: a row model is a SQLModel table "
            "class, declared as 'class JobRow(StoreRow, table=True)'")
    return obj


def _short_repr(obj: Any) -> str:
    try:
        text = repr(obj)
    except Exception as exc:
        log.debug("repr of %s failed: %s", type(obj).__name__, exc)
        return ""
    return text if len(text) <= 60 else text[:57] + "..."


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


def _include_only(table: str, keep_columns: bool = False) -> Callable[..., bool]:
    """Autogenerate filter: look at this store's table and the counter table only.

    With ``keep_columns`` (autogenerate in the Alembic environment) a column the
    database has and the row model lacks is left out, with a log line: typedstore
    never drops a column (GC3Pie's ``extra_fields``, a field removed from the row
    model), as ``typedstore check`` says."""
    mine = {table, ID_COUNTER_TABLE}

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "table":
            return name in mine
        owner = getattr(getattr(obj, "table", None), "name", None)
        if owner is not None and owner not in mine:
            return False
        if keep_columns and type_ == "column" and reflected and compare_to is None:
            log.info("table %s: column %s kept: typedstore never drops columns; write "
                     "op.drop_column by hand if you mean it", owner, name)
            return False
        return True

    return include


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    """Alembic ``render_item`` hook: autogenerated migrations write the type map's
    column types (:mod:`typedstore.typemap`) importably, with their imports."""
    if type_ != "type" or type(obj).__module__ != typemap.__name__:
        return False
    autogen_context.imports.add(f"import {typemap.__name__}")
    enum_class = getattr(obj, "enum_class", None)
    if enum_class is not None:
        autogen_context.imports.add(f"import {enum_class.__module__}")
    return f"{typemap.__name__}.{obj!r}"


def run_environment() -> None:
    """Body of the Alembic ``env.py`` (both the package's and the repository's).

    The URL comes from code (``Config.attributes``), ``-x url=``,
    ``$TYPEDSTORE_URL`` or ``sqlalchemy.url``; a row model from code or ``-x
    row_model=package.module:Class`` (used by ``--autogenerate``); the table
    from code, ``-x table=``, the URL's ``#table=``, the row model's
    ``__tablename__``, else ``store`` (:func:`typedstore.tables.store_table_name`).

    Run by the ``alembic`` command (an ``alembic.ini`` from ``typedstore init``):
    the ini's logging is set up, only the revisions of this table's folder
    (``migrations/versions/<table>/``) and typedstore's are visible
    (:func:`_narrow_to_table`), and a new revision is filed in that folder on top
    of the table's own newest revision (or typedstore's head). After a downgrade
    that removed the table, its empty version table and back-fill checkpoints
    go too (:func:`remove_leftovers`).
    """
    from alembic import context

    config = context.config
    if config.cmd_opts is None:
        _run_environment(context)
        return
    # Run by the alembic command: its logging, and every error one line
    # (alembic prints a CommandError as "FAILED: ..." and exits with status 255).
    if config.config_file_name and config.file_config.has_section("loggers"):
        logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)
    try:
        _run_environment(context)
    except StoreError as exc:
        raise CommandError(str(exc)) from exc


def _run_environment(context: Any) -> None:
    config = context.config
    x = context.get_x_argument(as_dictionary=True)
    url = (config.attributes.get("typedstore_url") or x.get("url")
           or os.environ.get("TYPEDSTORE_URL") or config.get_main_option("sqlalchemy.url"))
    if not url:
        raise CommandError("no database URL: pass -x url=..., set $TYPEDSTORE_URL, or set "
                           "sqlalchemy.url in alembic.ini")
    if context.is_offline_mode():
        raise CommandError(
            "offline mode (--sql) is not supported: typedstore's revisions look at the "
            "table they change (its columns, its backend's settings), which needs the "
            "database; read the revision files to review them, and run without --sql")
    parsed = parse_store_url(url)
    row_model = config.attributes.get("typedstore_row_model")
    if row_model is None and x.get("row_model"):
        row_model = import_row_model(x["row_model"])
    config.attributes["typedstore_row_model"] = row_model  # for ts0003
    table = store_table_name(config.attributes.get("typedstore_table") or x.get("table"),
                             parsed.table, row_model)
    config.attributes["typedstore_table"] = table
    folder = _narrow_to_table(context.script, table)
    options: dict[str, Any] = {
        "target_metadata": target_metadata(
            table, row_model, config.attributes.get("typedstore_extra_fields")),
        "version_table": version_table(table, sa.make_url(parsed.target).get_backend_name()),
        "include_object": _include_only(table, keep_columns=True),
        "render_as_batch": True,
        "compare_type": True,
        "on_version_apply": _widen_after_adoption(table),
        "render_item": render_item,
        "template_args": {"typedstore_table": table},
        "process_revision_directives": _file_in_folder(context.script, table, folder,
                                                       row_model),
    }
    connection = config.attributes.get("connection")
    if connection is not None:
        # From code (migrate): the caller holds the schema lock.
        # Never adopt (or drop) a table someone else made, whichever way this runs.
        refuse_foreign(inspect_store(connection, table), table, url)
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            context.run_migrations()
            remove_leftovers(connection, table)
        return
    # The schema lock typedstore.upgrade and make_store take: two upgrades of one
    # table at once wait for each other (the second finds the work done).
    with connected(url, parsed.target, sqlite_immediate=True) as conn, \
            schema_lock(conn, table):
        refuse_foreign(inspect_store(conn, table), table, url)
        context.configure(connection=conn, **options)
        with context.begin_transaction():
            context.run_migrations()
            remove_leftovers(conn, table)
        conn.commit()


def _package_versions() -> Path:
    return Path(__file__).resolve().parent / "migrations" / "versions"


def _narrow_to_table(script: ScriptDirectory, table: str) -> Path | None:
    """Let Alembic see only typedstore's revisions and those of ``table``: each
    configured version location other than typedstore's is read flat (its own
    files: revisions for every table) plus its subfolder for ``table``
    (:func:`typedstore.scaffold.table_directory`), never the other tables'
    subfolders. Returns the table's folder in the first such location (where
    new revisions of the table go); ``None`` when the configuration names no
    location of its own (typedstore's environment run from code)."""
    from .scaffold import table_directory

    if not script.version_locations:
        return None
    package = _package_versions()
    locations: list[str] = []
    folder = None
    for location, path in zip(script.version_locations, script._version_locations,
                              strict=False):
        locations.append(location)
        if path.resolve() == package:
            continue
        own = path / table_directory(table)
        locations.append(str(own))
        folder = folder or own
    script.version_locations = locations
    script.recursive_version_locations = False
    # Alembic reads the resolved locations and the map of revisions lazily, once:
    # forget what it read, so that both come from these locations.
    for memo in ("_version_locations", "_singular_version_location"):
        script.__dict__.pop(memo, None)
    script.revision_map = RevisionMap(script._load_revisions)
    return folder


def _file_in_folder(script: ScriptDirectory, table: str, folder: Path | None,
                    row_model: RowModel = None) -> Callable[..., None]:
    """Alembic ``process_revision_directives`` hook: a new revision (no
    ``--version-path`` given) goes to ``table``'s folder, and (no ``--head``
    given, several heads) on top of the table's own newest revision, else on
    top of typedstore's head. Autogenerate (``revision --autogenerate``,
    ``check``) without a row model is refused: every typed column would look
    like one to drop."""

    package = _package_versions()

    def process(context: Any, revision: Any, directives: list[Any]) -> None:
        environment = getattr(context, "environment_context", None)
        revision_context = getattr(environment, "context_opts", {}).get("revision_context")
        autogenerate = bool(getattr(revision_context, "command_args", {}).get("autogenerate"))
        if autogenerate and row_model is None and not _checking(environment):
            raise CommandError(
                f"table {table}: autogenerate needs the row model: -x "
                "row_model=pkg.mod:Class (without it every typed column of the table "
                "would look like one to drop)")
        for directive in directives:
            if not isinstance(directive, MigrationScript):
                continue
            if directive.version_path is None and folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
                directive.version_path = str(folder)
            path = directive.version_path
            if path is None and len(script._version_locations) == 1:
                path = str(script._version_locations[0])  # where Alembic writes it then
            target = Path(path or ".").resolve()
            if path is not None and (target == package or package in target.parents):
                raise CommandError(
                    f"table {table}: the new revision would be written into the installed "
                    f"typedstore package ({target}), where an upgrade of typedstore loses it "
                    "and every store table would run it; give this alembic.ini a version "
                    "location of your own (version_locations = typedstore:migrations/versions "
                    "%(here)s/migrations/versions; `typedstore init` writes one)")
            heads = script.get_revisions("heads")
            if directive.head in (None, "head") and len(heads) > 1:
                own = [h.revision for h in heads if folder is not None
                       and Path(h.path).resolve().parent == folder.resolve()]
                if len(own) == 1:
                    directive.head = own[0]
                elif not own:
                    directive.head = "typedstore@head"
            log.info("table %s: new revision in %s on top of %s", table,
                     directive.version_path or "the default folder",
                     directive.head or "the newest revision")

    return process


def _checking(environment: Any) -> bool:
    """Whether the alembic command running is ``alembic check``, which writes
    nothing: without a row model it compares typedstore's columns only (the typed
    columns are kept, as ``typedstore check`` says)."""
    options = getattr(getattr(environment, "config", None), "cmd_opts", None)
    command_fn = (getattr(options, "cmd", None) or (None,))[0]
    return getattr(command_fn, "__name__", None) == "check"


def remove_leftovers(connection: sa.Connection, table: str) -> list[str]:
    """After a downgrade that removed store table ``table`` (``downgrade base``):
    drop its version table when empty, and its back-fill checkpoints (with the
    checkpoint table, when no other table has any). Returns what it removed.
    The id counter row goes with revision ts0002's downgrade."""
    inspector = sa.inspect(connection)
    if inspector.has_table(table):
        return []
    removed = []
    name = version_table(table, connection.dialect)
    if inspector.has_table(name):
        versions = sa.table(name, sa.column("version_num"))
        if not connection.execute(sa.select(sa.func.count()).select_from(versions)).scalar():
            sa.Table(name, sa.MetaData()).drop(connection)
            removed.append(name)
    if inspector.has_table(CHECKPOINT_TABLE):
        checkpoints = sa.table(CHECKPOINT_TABLE, sa.column("table_name"))
        if connection.execute(checkpoints.delete().where(
                checkpoints.c.table_name == table)).rowcount:
            removed.append(f"{CHECKPOINT_TABLE} rows of {table}")
        if not connection.execute(sa.select(sa.func.count()).select_from(checkpoints)).scalar():
            sa.Table(CHECKPOINT_TABLE, sa.MetaData()).drop(connection)
            removed.append(CHECKPOINT_TABLE)
    if removed:
        log.info("table %s is gone: removed %s", table, ", ".join(removed))
    return removed


#: The revision that creates the store table or adopts GC3Pie's.
ADOPTING_REVISION = "ts0001"


def _widen_after_adoption(table: str) -> Callable[..., None]:
    """Alembic ``on_version_apply`` hook: right after the revision that adopts a
    GC3Pie table, widen its payload column (whichever way the upgrade was started:
    the ``alembic`` command, :func:`upgrade` or opening a store)."""

    def after_step(*, ctx: MigrationContext, step: Any, **_: Any) -> None:
        if ctx.as_sql or ctx.connection is None or step.is_stamp or not step.is_upgrade:
            return  # offline (--sql) mode cannot inspect the table
        if ADOPTING_REVISION in step.up_revision_ids:
            widen_payload(ctx.connection, table)

    return after_step


# ---------------------------------------------------------------- the type map on old tables

_MYSQL_INT_WIDTH = re.compile(r"^(TINYINT|SMALLINT|MEDIUMINT|INTEGER|INT|BIGINT)\(\d+\)")
_MYSQL_CHARSET = re.compile(r" (CHARACTER SET|COLLATE) \w+")


def _form(type_: sa.types.TypeEngine[Any], dialect: sa.Dialect) -> str:
    """A column type as the database spells it, for telling two forms of one kind
    apart (MariaDB ``FLOAT`` and ``DOUBLE``): display widths, character sets and
    collations left out on MariaDB/MySQL (read from the catalogue instead)."""
    if isinstance(type_, sa.types.TypeDecorator):
        type_ = type_.load_dialect_impl(dialect)
    text = _shown(type_, dialect)
    if typemap.is_mysql(dialect):
        text = _MYSQL_CHARSET.sub("", _MYSQL_INT_WIDTH.sub(r"\1", text))
        text = {"BOOL": "TINYINT", "INT": "INTEGER"}.get(text, text)
        text = text.replace("NUMERIC", "DECIMAL")
    return text


def _mysql_text_settings(connection: sa.Connection, table: str) -> dict[str, tuple[str, str]]:
    """``{column: (character set, collation)}`` of the text columns of ``table``."""
    rows = connection.execute(sa.text(
        "SELECT column_name, character_set_name, collation_name FROM "
        "information_schema.columns WHERE table_schema = DATABASE() AND table_name = :t "
        "AND character_set_name IS NOT NULL"), {"t": table})
    return {str(name): (str(charset), str(collation)) for name, charset, collation in rows}


@dataclass(frozen=True)
class Conversion:
    """One column :func:`convert_to_type_map` changes: its name, the reflected
    column, and the type the map gives it."""

    column: str
    reflected: Mapping[str, Any]
    target: sa.types.TypeEngine[Any]


def type_map_conversions(connection: sa.Connection, table: str, row_model: RowModel
                         ) -> list[Conversion]:
    """The columns of store table ``table`` whose type is not the one the type map
    gives them, though they hold the same kind of values (a table made before the
    map: a MariaDB ``FLOAT`` for a ``float`` field, text without the binary
    collation, ``INTEGER`` for ``int``, a SQLite ``NUMERIC`` for a ``Decimal``).

    Looked at: ``state`` (MariaDB/MySQL: utf8mb4 with the binary collation, as new
    tables have it) and, with ``row_model``, its fields' columns. GC3Pie
    ``extra_fields`` columns and columns of other kinds (a type changed on
    purpose: :func:`refuse_type_changes`) are left alone.
    """
    dialect = connection.dialect
    reflected = {c["name"]: c for c in sa.inspect(connection).get_columns(table)}
    wanted: dict[str, sa.types.TypeEngine[Any]] = {}
    if typemap.is_mysql(dialect):
        wanted["state"] = mysql.VARCHAR(STATE_LENGTH, charset=typemap.MYSQL_CHARSET,
                                        collation=typemap.mysql_collation(dialect))
    if row_model is not None:
        model = build_table(table, new_metadata(), row_model)
        for column in model.columns:
            if column.name not in BASE_COLUMN_NAMES:
                wanted[column.name] = column.type
    settings = _mysql_text_settings(connection, table) if typemap.is_mysql(dialect) else {}
    conversions = []
    for name, target in wanted.items():
        found = reflected.get(name)
        if found is None:
            continue
        have, need = column_kind(found["type"], dialect), column_kind(target, dialect)
        scaled = have == "decimal" and need == "int" and dialect.name == "sqlite"
        if have is None or (have != need and not scaled):
            continue
        differs = _form(found["type"], dialect) != _form(target, dialect)
        if name in settings:
            impl = target.load_dialect_impl(dialect) if isinstance(
                target, sa.types.TypeDecorator) else target
            charset = getattr(impl, "charset", None) or typemap.MYSQL_CHARSET
            collation = getattr(impl, "collation", None) or typemap.mysql_collation(dialect)
            differs = differs or settings[name] != (charset, collation)
        if differs:
            conversions.append(Conversion(name, found, target))
    return conversions


def convert_to_type_map(connection: sa.Connection, table: str, row_model: RowModel
                        ) -> list[str]:
    """Change the columns :func:`type_map_conversions` finds to the type map's types,
    keeping their values, nullability and defaults; return their names.

    Alembic operations: ``ALTER COLUMN ... TYPE`` on PostgreSQL (a native enum
    or a time zone-aware timestamp converted with ``USING``), ``MODIFY`` on
    MariaDB/MySQL (whose indexes on the column are made again, with a prefix
    for LONGTEXT), a batch table copy on SQLite (``NUMERIC`` decimals scaled to
    the map's integers first).
    """
    conversions = type_map_conversions(connection, table, row_model)
    if not conversions:
        return []
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    ops = Operations(MigrationContext.configure(connection))
    changed = {c.column for c in conversions}
    indexes = [i for i in sa.inspect(connection).get_indexes(table)
               if changed & set(i["column_names"])] if typemap.is_mysql(dialect) else []
    for index in indexes:
        ops.drop_index(str(index["name"]), table_name=table)
    for conversion in conversions:
        target = conversion.target
        if dialect.name == "sqlite" and isinstance(target, typemap.ScaledDecimal):
            name = quote(conversion.column)
            connection.execute(sa.text(
                f"UPDATE {quote(table)} SET {name} = CAST(ROUND({name} * "
                f"{10 ** target.scale}) AS INTEGER) WHERE {name} IS NOT NULL"))
    with ops.batch_alter_table(table) as batch:
        for conversion in conversions:
            column = conversion.reflected
            target = conversion.target
            impl = target.load_dialect_impl(dialect) if isinstance(
                target, sa.types.TypeDecorator) else target
            extra: dict[str, Any] = {}
            if dialect.name == "postgresql":
                name = quote(conversion.column)
                if isinstance(column["type"], sa.Enum):
                    extra["postgresql_using"] = f"{name}::text"
                elif getattr(column["type"], "timezone", False):
                    extra["postgresql_using"] = f"{name} AT TIME ZONE 'UTC'"
            default = column.get("default")
            batch.alter_column(
                conversion.column, type_=impl, existing_type=column["type"],
                existing_nullable=column["nullable"],
                existing_server_default=sa.text(default) if default is not None else None,
                existing_comment=column.get("comment"), **extra)
    for index in indexes:
        names = [str(n) for n in index["column_names"]]
        kwargs: dict[str, Any] = {}
        if len(names) == 1 and conversions and any(
                c.column == names[0] and getattr(c.target, "needs_index_prefix", lambda: False)()
                for c in conversions):
            kwargs["mysql_length"] = typemap.MYSQL_INDEX_PREFIX
        ops.create_index(str(index["name"]), table, names, unique=bool(index.get("unique")),
                         **kwargs)
    log.warning("table %s: column(s) %s converted to the type map's types (made before it)",
                table, ", ".join(sorted(changed)))
    return sorted(changed)


# ---------------------------------------------------------------- repairs


def widen_payload(connection: sa.Connection, table: str) -> bool:
    """Widen the payload column of ``table`` to typedstore's payload type when it
    holds less (GC3Pie's ``BLOB`` on MySQL/MariaDB: 64 KB); return whether it did.

    An Alembic ``alter_column`` keeping the column's nullability, default and
    comment. MySQL rewrites the table to do it; the rows are kept.
    """
    inspector = sa.inspect(connection)
    if not inspector.has_table(table):
        return False
    for column in inspector.get_columns(table):
        if column["name"] != PAYLOAD_COLUMN:
            continue
        limit = payload_limit(connection.dialect.name, column["type"])
        if limit is None:
            return False
        default = column.get("default")
        ops = Operations(MigrationContext.configure(connection))
        ops.alter_column(
            table, PAYLOAD_COLUMN, type_=mysql.LONGBLOB(), existing_type=column["type"],
            existing_nullable=column["nullable"],
            existing_server_default=sa.text(default) if default is not None else None,
            existing_comment=column.get("comment"),
        )
        log.warning("table %s: payload column %r widened from %s (at most %d bytes) to "
                    "LONGBLOB", table, PAYLOAD_COLUMN,
                    column["type"].compile(dialect=connection.dialect), limit)
        return True
    return False


def reset_stale_version_table(connection: sa.Connection, table: str) -> tuple[str, ...]:
    """Clear the version table of ``table`` if the table itself is gone; return the
    revisions it recorded (empty: nothing to do).

    A store table dropped by hand leaves ``typedstore_version_<table>`` behind,
    still saying the table is at the head revision: Alembic would then create
    nothing, and the next steps would fail on the missing table. Clearing it
    makes the next upgrade create the table from the first revision. Revisions
    of your own migrations on top of typedstore's are cleared too (the table
    they changed is gone): run them again after the upgrade. The id counter
    row is kept, so the new table never reissues an id the old one used.
    """
    state = inspect_store(connection, table)
    if not state.stale:
        return ()
    assert state.revisions is not None
    name = version_table(table, connection.dialect)
    versions = sa.table(name, sa.column("version_num"))
    connection.execute(versions.delete())
    log.warning("table %s does not exist but its version table %s says it is at %s "
                "(dropped by hand?): cleared it; the table is created again",
                table, name, ", ".join(state.revisions))
    return state.revisions


# ---------------------------------------------------------------- upgrading from code


def _target(url: str, table: str | None, row_model: RowModel = None) -> tuple[str, str]:
    parsed = parse_store_url(url)
    return parsed.target, store_table_name(table, parsed.table, row_model)


def _file_store(url: str, what: str) -> bool:
    """Whether ``url`` names a file store; for ``what`` other than ``upgrade``,
    raise :class:`SchemaError` saying why it has no schema to act on."""
    parsed = parse_store_url(url)
    if parsed.scheme != "file":
        return False
    if what == "upgrade":
        return True
    raise SchemaError(
        f"{parsed.redacted} is a file store: it has no SQL table to {what}. Its records are "
        "pickles, and its index (queries) follows the row model it is opened with: columns "
        "are added, or made again when a field's type changed, and filled from the pickles. "
        "To do that now: typedstore.upgrade(path, row_model=...) or typedstore upgrade PATH "
        "--row-model module:Class", table=str(parsed.target))


def _upgrade_file_store(url: str, row_model: RowModel, extra_fields: ExtraFields) -> list[str]:
    """:func:`upgrade` of a file store: open it with the row model, which adds (or
    makes again) its index columns, and index every record from its pickle now.
    Returns the index columns added; raises :class:`SchemaError` if stored records
    do not fit the row model (:meth:`typedstore.fileindex.FileIndex.refresh`)."""
    from .filesystem import FilesystemStore

    store = FilesystemStore(url, row_model=row_model, extra_fields=extra_fields)
    try:
        store.query().count()  # brings the index in line with the pickles
        return list(store.index.added)
    finally:
        store.close()


@contextmanager
def schema_transaction(connection: sa.Connection, table: str) -> Iterator[None]:
    """A transaction on ``connection`` that holds ``table``'s schema lock
    (:func:`schema_lock`) until it has committed or rolled back.

    On MySQL/MariaDB the lock is a session's named lock: released inside the
    transaction, it let another process read the version table before the last
    revision's ``UPDATE`` had committed and find the table "behind" (a race
    seen once in about a hundred four-process opens). So there it is taken
    before ``BEGIN`` and released after the end; on PostgreSQL the advisory
    lock ends with the transaction anyway.
    """
    if _is_mysql(connection):
        with schema_lock(connection, table):
            connection.commit()  # the one the lock's SELECT began: BEGIN anew
            with connection.begin():
                yield
    else:
        with connection.begin(), schema_lock(connection, table):
            yield


@contextmanager
def schema_lock(connection: sa.Connection, table: str) -> Iterator[None]:
    """Let one process at a time change the schema of ``table``.

    PostgreSQL: a transaction-scoped advisory lock. MySQL/MariaDB: a named
    lock (``GET_LOCK``; DDL commits implicitly there, so a transaction could
    not hold it). SQLite: the caller's ``BEGIN IMMEDIATE`` already excludes
    other writers. Whoever waited finds the work done: migrations are
    idempotent.
    """
    check_name(connection, table)
    dialect = connection.dialect.name
    if dialect == "postgresql":
        key = zlib.crc32(f"typedstore:{table}".encode())
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        yield
    elif dialect in ("mysql", "mariadb"):
        name = mysql_lock_name(table)
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


@dataclass(frozen=True)
class _Footprint:
    """What a database held of a store table before typedstore created it, so that a
    failed creation on MariaDB/MySQL (whose DDL commits at once) can be undone."""

    version_table: bool
    revisions: tuple[str, ...]
    counter_table: bool
    counter_row: bool


#: ``Connection.info`` key: the table this connection's transaction created,
#: with the transaction (a weak reference) and what was there before.
_CREATED = "typedstore_created"


def _footprint(connection: sa.Connection, table: str) -> _Footprint | None:
    """``None`` if ``table`` exists; else what the database holds for it."""
    inspector = sa.inspect(connection)
    if inspector.has_table(table):
        return None
    revisions = _revisions(connection, inspector, table)
    counter = inspector.has_table(ID_COUNTER_TABLE)
    row = False
    if counter:
        ids = sa.table(ID_COUNTER_TABLE, sa.column("table_name"))
        row = connection.execute(
            sa.select(ids.c.table_name).where(ids.c.table_name == table)).first() is not None
    return _Footprint(revisions is not None, revisions or (), counter, row)


def _is_mysql(connection: sa.Connection) -> bool:
    return connection.dialect.name in ("mysql", "mariadb")


def _undo_creation(connection: sa.Connection, table: str, before: _Footprint) -> None:
    """After a failed creation of ``table`` on MariaDB/MySQL: drop what it made and
    restore what was there (SQLite and PostgreSQL roll the DDL back themselves).

    Runs on the same connection, which holds the table's schema lock: the
    transaction's uncommitted writes are rolled back first (their row locks
    would block anyone else), then rows are restored and committed, then the
    tables made are dropped.
    """
    steps: list[tuple[str, Callable[[], Any]]] = []
    ids = sa.table(ID_COUNTER_TABLE, sa.column("table_name"))
    versions_name = version_table(table, connection.dialect)
    versions = sa.table(versions_name, sa.column("version_num"))

    def has(name: str) -> bool:
        return bool(sa.inspect(connection).has_table(name))

    steps.append(("rolling back", lambda: connection.exec_driver_sql("ROLLBACK")))
    if not before.counter_row:
        steps.append(("removing the id counter row", lambda: has(ID_COUNTER_TABLE) and
                      connection.execute(ids.delete().where(ids.c.table_name == table))))
    if before.version_table:
        def restore() -> None:
            if has(versions_name):
                connection.execute(versions.delete())
                for revision in before.revisions:
                    connection.execute(versions.insert().values(version_num=revision))

        steps.append(("restoring the version table", restore))
    steps.append(("committing", lambda: connection.exec_driver_sql("COMMIT")))
    steps.append(("dropping the table",
                  lambda: sa.Table(table, sa.MetaData()).drop(connection, checkfirst=True)))
    if not before.version_table:
        steps.append(("dropping the version table", lambda: sa.Table(
            versions_name, sa.MetaData()).drop(connection, checkfirst=True)))
    steps.append(("dropping the reference table", lambda: sa.Table(
        refs_table_name(table, connection.dialect.name), sa.MetaData()).drop(
            connection, checkfirst=True)))
    if not before.counter_table:
        def drop_empty_counter() -> None:
            if has(ID_COUNTER_TABLE) and not connection.execute(
                    sa.select(sa.func.count()).select_from(ids)).scalar():
                sa.Table(ID_COUNTER_TABLE, sa.MetaData()).drop(connection)

        steps.append(("dropping the empty id counter table", drop_empty_counter))
    for what, step in steps:
        try:
            step()
        except Exception as exc:
            log.error("table %s: creation failed, and %s failed too (%s: %s)",
                      table, what, type(exc).__name__, exc)
    log.warning("table %s: creation failed on %s; removed what it had made (DDL is not "
                "transactional there)", table, connection.dialect.name)


def _created_here(connection: sa.Connection, table: str) -> _Footprint | None:
    """The footprint recorded by :func:`migrate` if it created ``table`` in this very
    transaction (``None`` otherwise)."""
    entry = connection.info.get(_CREATED)
    if entry is None:
        return None
    name, transaction, before = entry
    if name != table or transaction() is not connection.get_transaction():
        return None
    return before  # type: ignore[no-any-return]


def migrate(connection: sa.Connection, url: str, table: str, revision: str = "head",
            downgrade: bool = False, row_model: RowModel = None,
            ini: Path | None = None) -> None:
    """Run the migrations of ``table`` on ``connection`` (in its transaction):
    typedstore's, and with ``ini`` (a project's ``alembic.ini``:
    :func:`project_config`) the table's own revisions too (``head`` is then every
    head: the table's own revisions may branch off typedstore's).

    Upgrading first clears a stale version table (:func:`reset_stale_version_table`)
    and ends by widening a narrow payload column (:func:`widen_payload`). A table
    created here is remembered for :func:`add_missing_columns` in the same
    transaction (it adds NOT NULL columns to a new table); if creating it fails
    on MariaDB/MySQL, what was made is removed again. A table name that cannot
    work on the backend is refused first (:func:`check_name`), and so is a table
    at a revision none of these locations holds (:func:`refuse_unknown_revisions`).
    """
    check_name(connection, table)
    config = _config(url, table, ini, connection=connection, typedstore_row_model=row_model)
    connection.info.pop(_CREATED, None)
    with schema_lock(connection, table):
        state = inspect_store(connection, table)
        refuse_foreign(state, table, url)
        if state.exists:
            refuse_unknown_revisions(state, config, url, table, revision, downgrade,
                                     row_model, ini)
        before = None if downgrade else _footprint(connection, table)
        try:
            if downgrade:
                command.downgrade(config, revision)
            else:
                reset_stale_version_table(connection, table)
                command.upgrade(config, "heads" if revision == "head" else revision)
                # A GC3Pie table adopted before typedstore widened payloads.
                widen_payload(connection, table)
        except BaseException as exc:
            if before is not None and _is_mysql(connection):
                _undo_creation(connection, table, before)
            if isinstance(exc, CommandError):
                raise SchemaError(f"{redact(url)}: table {table!r}: {exc}",
                                  table=table) from exc
            raise
        transaction = connection.get_transaction()
        if before is not None and transaction is not None:
            connection.info[_CREATED] = (table, weakref.ref(transaction), before)


def refuse_unknown_revisions(state: TableState, config: Config, url: str, table: str,
                             revision: str, downgrade: bool, row_model: RowModel,
                             ini: Path | None) -> None:
    """Raise :class:`SchemaError` if ``table`` is at a revision that neither
    typedstore's chain nor the project's version locations (``ini``) hold: one of
    the project's own, which only its ``alembic.ini`` finds. The error names the
    revision and, as ``.command``, the ``typedstore`` command that runs from the
    project's directory (or with ``--config``)."""
    if not state.revisions:
        return
    script = ScriptDirectory.from_config(config)
    _narrow_to_table(script, table)
    unknown = []
    for current in state.revisions:
        try:
            found = script.get_revision(current)
        except Exception as exc:  # Alembic: "Can't locate revision ..." and its kin
            log.debug("table %s: revision %s not found: %s", table, current, exc)
            found = None
        if found is None:
            unknown.append(current)
    if not unknown:
        return
    searched = (f"typedstore's revisions and those of {ini}" if ini is not None else
                f"typedstore's revisions only: there is no typedstore alembic.ini in "
                f"{os.getcwd()}")
    config_option = f" --config {shlex.quote(str(ini))}" if ini is not None else ""
    if downgrade:
        fix = (f"typedstore downgrade {shlex.quote(command_url(url))} {shlex.quote(revision)} "
               f"--table {shlex.quote(table)}{config_option}")
    else:
        fix = (f"typedstore upgrade {shlex.quote(command_url(url))} --table "
               f"{shlex.quote(table)}{row_model_option(row_model)}{config_option}")
    where = ("" if ini is not None else
             " in your project's directory (the one holding its alembic.ini), or add "
             "--config PATH/alembic.ini")
    raise SchemaError(
        f"{redact(url)}: table {table!r} is at revision {', '.join(unknown)}, which is not "
        f"among the revisions found ({searched}): a revision of your project's own "
        f"migrations (migrations/versions/{_table_folder(table)}/). Run{where}: {fix}"
        f"{command_notes(url, row_model)}",
        table=table, current=unknown[0], command=fix)


def _table_folder(table: str) -> str:
    from .scaffold import table_directory

    return table_directory(table)


def _server_default(connection: sa.Connection, column: sa.Column[Any], default: Any
                    ) -> sa.DefaultClause | None:
    """The server default of a new NOT NULL column for the rows already there:
    ``default`` as the column's type stores it (an enum member's name, a UTC
    time...), or ``None`` if it is not a plain value."""
    if default is None or callable(default) or isinstance(default, (list, dict, set, tuple)):
        return None
    value = sa.literal(default, type_=column.type)
    try:
        value.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True})
    except Exception:
        log.debug("default %r of column %s cannot be a server default", default, column.name,
                  exc_info=True)
        return None
    # The bound literal, not its text: the DDL compiler escapes it once for
    # the driver's paramstyle (sa.text() of the rendered text doubled a '%').
    return sa.DefaultClause(value)


def add_missing_columns(connection: sa.Connection, table: str, row_model: RowModel = None,
                        extra_fields: ExtraFields = None) -> list[str]:
    """Add the row model's new columns and indexes to ``table``; return what was added.

    A table :func:`migrate` created in this same transaction gets every column
    as the row model declares it: a field without a default is NOT NULL. To an
    existing table only additive changes are made: a nullable column, a column
    with a default (used as the server default for the existing rows), an
    index. A new NOT NULL column without a default there raises
    :class:`SchemaError`: the existing rows need a value, which a migration
    with a back-fill gives (docs/schema-evolution.md). On MariaDB/MySQL a
    failure while completing a new table removes the table again.
    """
    new = _created_here(connection, table)
    connection.info.pop(_CREATED, None)
    if new is not None:
        rows = sa.table(table)
        if connection.execute(sa.select(sa.literal(1)).select_from(rows).limit(1)).first():
            new = None  # someone wrote rows already: treat it as an existing table
    try:
        return _add_missing_columns(connection, table, row_model, extra_fields, new is not None)
    except BaseException:
        if new is not None and _is_mysql(connection):
            _undo_creation(connection, table, new)
        raise


def _add_missing_columns(connection: sa.Connection, table: str, row_model: RowModel,
                         extra_fields: ExtraFields, new_table: bool) -> list[str]:
    metadata = target_metadata(table, row_model, extra_fields)
    if not new_table:
        # A field whose type changed is a migration's work, never an addition's.
        refuse_type_changes(inspect_store(connection, table), metadata.tables[table],
                            connection.dialect, None)
    context = MigrationContext.configure(
        connection, opts={"include_object": _include_only(table), "compare_type": False})
    added: list[str] = []
    columns: list[sa.Column[Any]] = []
    indexes: list[sa.Index] = []
    for diff in _same_indexes_dropped(list(compare_metadata(context, metadata))):
        if isinstance(diff, tuple) and diff[0] == "add_column" and diff[2] == table:
            columns.append(diff[3])
        elif isinstance(diff, tuple) and diff[0] == "add_index" and diff[1].table.name == table:
            indexes.append(diff[1])
    ops = Operations(context)
    if columns:
        required = []
        new_columns = []
        for column in columns:
            new = column._copy()
            new.index = None  # indexes are created below, once
            if not new.nullable and new.server_default is None:
                # Also in a new table: writers that do not know the column (GC3Pie's
                # INSERTs) still give a valid row.
                new.server_default = _server_default(connection, column,
                                                     column.info.get(DEFAULT_KEY))
                if new.server_default is None and not new_table:
                    required.append(column.name)
            new_columns.append(new)
        if required:
            raise SchemaError(
                f"table {table!r} exists, and the row model's new field(s) "
                f"{', '.join(required)} are required (NOT NULL, no default): the rows "
                "already stored need a value first. Add the column(s) with a migration "
                "that back-fills them (docs/schema-evolution.md: alembic revision "
                "--autogenerate, then typedstore.backfill), or give the field(s) a default "
                "or make them optional ('X | None')",
                table=table, missing_columns=required,
            )
        # SQLite adds a NOT NULL column without a default only by copying the table
        # (empty: a table created in this transaction).
        recreate: Literal["auto", "always"] = "always" if (
            new_table and connection.dialect.name == "sqlite" and any(
                not c.nullable and c.server_default is None for c in new_columns)) else "auto"
        with ops.batch_alter_table(table, recreate=recreate) as batch:
            for new in new_columns:
                batch.add_column(new)
                added.append(new.name)
    for index in indexes:
        ops.create_index(index.name, table, [c.name for c in index.columns],
                         unique=bool(index.unique), **index.dialect_kwargs)
        added.append(str(index.name))
    if added:
        log.info("table %s: added %s", table, ", ".join(added))
    return added


def upgrade(url: str, table: str | None = None, row_model: RowModel = None,
            extra_fields: ExtraFields = None, add_columns: bool = True,
            revision: str = "head",
            config: str | os.PathLike[str] | None = None) -> list[str]:
    """Bring a store table up to date from code; return the columns and indexes added.

    Runs typedstore's migrations to head (creating the table, or adopting a
    GC3Pie table), then, with ``add_columns``, adds the row model's new
    columns and indexes (:func:`add_missing_columns`), after converting its
    columns made before the type map (:func:`convert_to_type_map`). Another
    ``revision`` (``"ts0002"``) stops there, adding nothing. All in one transaction
    where the database supports transactional DDL (SQLite, PostgreSQL).
    A file store's URL (a directory) brings its index up to the row model
    instead: columns added and filled from the pickles now.

    The table's own revisions (``migrations/versions/<table>/``) are found as
    ``alembic`` finds them: through ``config`` (a project's ``alembic.ini``),
    else ``./alembic.ini`` (:func:`project_config`); they run too (every head).

    Raises :class:`SchemaError` for a table that is not a store table, a
    field whose type changed, a new required field of an existing table, a
    table at a revision of the project's that no configuration found
    (:func:`refuse_unknown_revisions`), and (file store) records that do not
    fit the row model; :class:`UrlError` and :class:`ConnectError` for a URL
    without a backend and a server that cannot be reached.
    """
    if _file_store(url, "upgrade"):
        return _upgrade_file_store(url, row_model, extra_fields)
    ini = project_config(config)
    target, table = _target(url, table, row_model)
    with connected(url, target, sqlite_immediate=True) as conn, \
            schema_transaction(conn, table):
        migrate(conn, url, table, revision, row_model=row_model, ini=ini)
        if revision != "head":
            return []
        if row_model is not None:
            # Columns a ts0003 run without the row model left in their old types.
            convert_to_type_map(conn, table, row_model)
        if add_columns:
            return add_missing_columns(conn, table, row_model, extra_fields)
        return []


def downgrade(url: str, revision: str, table: str | None = None,
              row_model: RowModel = None,
              config: str | os.PathLike[str] | None = None) -> None:
    """Downgrade a store table to ``revision``: ``"base"`` removes everything
    typedstore made for it (the table, its id counter row, its version table,
    its back-fill checkpoints). The table follows the one rule
    (:func:`typedstore.tables.store_table_name`; ``row_model`` only names it).
    The table's own revisions are found as :func:`upgrade` finds them
    (``config``, else ``./alembic.ini``). A file store's URL is a
    :class:`SchemaError` saying what to do instead."""
    _file_store(url, "downgrade")
    ini = project_config(config)
    target, table = _target(url, table, row_model)
    with connected(url, target, sqlite_immediate=True) as conn, conn.begin():
        migrate(conn, url, table, revision, downgrade=True, ini=ini)


@contextmanager
def connected(url: str, target: str, **execution_options: Any) -> Iterator[sa.Connection]:
    """A connection to the database of store URL ``url`` (SQLAlchemy URL ``target``)
    for schema work, its engine disposed of afterwards. A URL SQLAlchemy has no
    dialect or driver for is a :class:`UrlError`, a server that cannot be reached
    or refuses the login a :class:`ConnectError`, both naming the URL without its
    password."""
    shown = redact(url)
    try:
        engine = create_store_engine(target, poolclass=sa.pool.NullPool)
    except (sa.exc.NoSuchModuleError, sa.exc.ArgumentError, ImportError) as exc:
        raise UrlError(f"{shown}: no database backend for this URL ({_said(exc, url)}); "
                       "a store URL is a directory, sqlite:PATH, postgresql://... or "
                       "mysql://...", url=shown) from exc
    try:
        try:
            conn = engine.connect()
        except sa.exc.DBAPIError as exc:
            raise ConnectError(f"{shown}: cannot connect to the database: {_said(exc, url)}",
                               store=shown) from exc
        with conn.execution_options(**execution_options) if execution_options else conn:
            yield conn
    finally:
        engine.dispose()


def _said(exc: BaseException, url: str) -> str:
    """The first line of what the driver said about ``exc``, any password of ``url``
    taken out."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    text = f"{type(orig).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    try:
        password = sa.make_url(parse_store_url(url).target).password
    except Exception as parse_error:
        log.debug("no password to take out of the message: %s", parse_error)
        password = None
    if password:
        text = text.replace(str(password), "***")
    return redact(text)


def _index_key(index: Any) -> tuple[str, tuple[str, ...], str]:
    return (index.table.name, tuple(c.name for c in index.columns),
            str(index.name).replace("``", "`"))


def _same_indexes_dropped(diffs: list[Any]) -> list[Any]:
    """Alembic's differences without an index reported both missing and extra:
    SQLAlchemy reflects a MariaDB/MySQL index name holding a backtick with the
    backtick doubled, so the same index looks renamed."""
    added = {_index_key(d[1]) for d in diffs if isinstance(d, tuple) and d[0] == "add_index"}
    removed = {_index_key(d[1]) for d in diffs
               if isinstance(d, tuple) and d[0] == "remove_index"}
    same = added & removed
    return [d for d in diffs if not (isinstance(d, tuple) and d[0] in ("add_index",
                                                                        "remove_index")
                                     and _index_key(d[1]) in same)]


def drift(url: str, table: str | None = None, row_model: RowModel = None,
          extra_fields: ExtraFields = None) -> list[Any]:
    """Alembic's differences between the database table and the row model (empty: none).

    A file store's URL is a :class:`SchemaError` saying what to do instead (its
    index follows the row model it is opened with); a table name that cannot
    work on the backend is a :class:`SchemaError` too (:func:`check_name`).
    """
    _file_store(url, "compare with a row model")
    target, table = _target(url, table, row_model)
    with connected(url, target) as conn:
        check_name(conn, table)
        context = MigrationContext.configure(
            conn, opts={"include_object": _include_only(table), "compare_type": True})
        return _same_indexes_dropped(list(compare_metadata(
            context, target_metadata(table, row_model, extra_fields))))
