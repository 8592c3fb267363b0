"""The SQL tables of a store: the record table built from a row model, and the id counter.

A store's record table is built in the store's own ``MetaData`` from copies of
the row model's columns (or the :class:`~typedstore.rows.StoreRow` base
columns), under the store's table name, plus any GC3Pie ``extra_fields``
columns. Each extracted field's column type comes from the type map
(:mod:`typedstore.typemap`), checked on the row model's first use. Building
it is pure; checking it against the database happens in
:mod:`typedstore.schema`.

Identifiers: any table name the backend accepts works, including
PostgreSQL's full 63 bytes and MariaDB's 64 characters, with spaces, quotes
or backticks (every name is quoted by SQLAlchemy). The names typedstore
derives from it (the Alembic version table ``typedstore_version_<table>``,
index and key names) keep their plain form whenever it fits the backend's
limit, and otherwise become a prefix of the name plus a hash of the whole
name (:func:`fitted`), so existing stores keep their names. A name that
cannot work is refused before any statement with :func:`check_table_name`.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlmodel import SQLModel

from . import typemap
from .defaults import DEFAULT_TABLE, ID_COUNTER_TABLE
from .errors import SchemaError
from .integrity import CHECKSUM_COLUMN, MAC_COLUMN, MAC_LENGTH
from .references import ROOT_COLUMN
from .rows import BASE_COLUMNS, BOOKKEEPING_COLUMNS, DEFAULT_KEY, base_columns, lenient_column

log = logging.getLogger(__name__)

#: PostgreSQL's identifier limit, in UTF-8 bytes (NAMEDATALEN - 1); longer names
#: are cut silently by the server.
PG_IDENTIFIER_BYTES = 63
#: MariaDB/MySQL's identifier limit, in characters.
MYSQL_IDENTIFIER_CHARS = 64
#: The longest file name MariaDB/MySQL may make of a table name (NAME_MAX 255
#: less the ".ibd"/".frm" suffix); names are encoded for files (``@0020``...).
MYSQL_FILE_NAME = 251
#: Prefix of the per-table Alembic version tables.
VERSION_TABLE_PREFIX = "typedstore_version_"
#: Alembic names the version table's key ``<version table>_pkc``.
_PKC_SUFFIX = "_pkc"
#: Other names a store table may not take: typedstore's own tables, and the
#: temporary tables of Alembic's batch mode.
CHECKPOINT_TABLE = "typedstore_backfill"
#: Prefix of the per-table reference tables (:mod:`typedstore.references`).
REFS_TABLE_PREFIX = "typedstore_refs_"
_RESERVED_PREFIXES = (VERSION_TABLE_PREFIX, REFS_TABLE_PREFIX, "_alembic_tmp_")
_SAFE = re.compile(r"[^0-9A-Za-z_]")


def _name_hash(name: str) -> str:
    return hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def fits(name: str, dialect: str | None) -> bool:
    """Whether ``name`` is within the identifier limit of ``dialect``
    (``postgresql``, ``mysql``/``mariadb``, ``sqlite``; ``None``: no limit)."""
    if dialect == "postgresql":
        return len(name.encode("utf-8", "surrogatepass")) <= PG_IDENTIFIER_BYTES
    if dialect in ("mysql", "mariadb"):
        return len(name) <= MYSQL_IDENTIFIER_CHARS
    return True


def fitted(prefix: str, name: str, dialect: str | None, reserve: int = 0) -> str:
    """``prefix + name`` if it fits ``dialect``'s limit with ``reserve`` characters
    to spare (what existing stores use); else ``prefix``, the ASCII letters,
    digits and underscores of ``name`` (at most 31) and a hash of ``name``:
    short, unique and plain on every backend."""
    plain = prefix + name
    if fits(plain + "x" * reserve, dialect):
        return plain
    return f"{prefix}{_SAFE.sub('', name)[:31]}_{_name_hash(name)}"


def _convention_name(prefix: str, table: str, columns: list[str]) -> str:
    """A naming-convention name: the plain one (SQLAlchemy cuts one of more than the
    backend's characters with a hash of its own, as it always did), or, when it
    fits in characters but not in PostgreSQL's 63 bytes, a hashed one."""
    plain = "_".join([prefix + table, *columns])
    if fits(plain, "postgresql") or (len(plain) > PG_IDENTIFIER_BYTES and plain.isascii()):
        return plain
    # Non-ASCII and over 63 bytes: SQLAlchemy's cut (to 63 characters) could still
    # exceed PostgreSQL's 63 bytes, which the server would cut again silently.
    return fitted(prefix, plain[len(prefix):], "postgresql")


def _index_name(constraint: Any, table: sa.Table) -> str:
    return _convention_name("ix_", table.name, [c.name for c in constraint.columns])


def _unique_name(constraint: Any, table: sa.Table) -> str:
    return _convention_name("uq_", table.name, [c.name for c in constraint.columns])


def _primary_key_name(constraint: Any, table: sa.Table) -> str:
    return _convention_name("pk_", table.name, [])


#: Constraint and index names that are the same on every backend, so that
#: migrations can name them (Alembic's recommended convention:
#: ``ix_<table>_<columns>``, ``pk_<table>``...), fitted to PostgreSQL's bytes.
NAMING_CONVENTION: dict[str, Any] = {
    "ix": "%(typedstore_ix)s",
    "uq": "%(typedstore_uq)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "%(typedstore_pk)s",
    "typedstore_ix": _index_name,
    "typedstore_uq": _unique_name,
    "typedstore_pk": _primary_key_name,
}


def version_table(table: str, dialect: str | None = None) -> str:
    """The Alembic version table of store table ``table`` on ``dialect``:
    ``typedstore_version_<table>`` when that (and Alembic's ``_pkc`` key name)
    fits, else a hashed name (:func:`fitted`). ``None``: the plain name."""
    return fitted(VERSION_TABLE_PREFIX, table, dialect, reserve=len(_PKC_SUFFIX))


def store_table_name(explicit: str | None, url_table: str | None, row_model: Any) -> str:
    """The store table, by the one rule every entry point follows (``make_store``,
    ``SqlStore``, :func:`typedstore.upgrade`, ``typedstore check``, the Alembic
    environment): the table given explicitly (``table_name=``, ``table=``,
    ``--table``, ``-x table=``), else the URL's ``#table=``, else the row model's
    ``__tablename__``, else ``store``."""
    return (explicit or url_table or getattr(row_model, "__tablename__", None)
            or DEFAULT_TABLE)


def state_index_name(table: str) -> str:
    """The name of the ``state`` index (``ix_<table>_state``, by the convention)."""
    return _convention_name("ix_", table, ["state"])


def mysql_lock_name(table: str) -> str:
    """The name of the MariaDB/MySQL named lock (``GET_LOCK``) of ``table``'s schema."""
    return fitted("typedstore:", table, "mysql")


def check_table_name(name: Any, dialect: str | None) -> None:
    """Refuse (:class:`SchemaError`) a store table name that cannot work on ``dialect``.

    Any name the backend accepts as a quoted identifier works; refused are the
    empty name, NUL characters, lone surrogates, names over the backend's limit
    (PostgreSQL: 63 bytes in UTF-8; MariaDB/MySQL: 64 characters, no trailing
    space, no line break, no character outside the Basic Multilingual Plane; SQLite: the
    ``sqlite_`` prefix) and the names of typedstore's own tables.
    """
    def refuse(why: str) -> SchemaError:
        return SchemaError(f"table name {name!r} cannot be used on {dialect or 'any backend'}: "
                           f"{why}", table=str(name))

    if not isinstance(name, str) or not name:
        raise refuse("a table name is a non-empty string")
    if "\x00" in name:
        raise refuse("it holds a NUL character")
    if re.search("[\ud800-\udfff]", name):
        raise refuse("it holds a lone surrogate (not Unicode text)")
    if name in (ID_COUNTER_TABLE, CHECKPOINT_TABLE) or name.startswith(_RESERVED_PREFIXES):
        raise refuse("typedstore uses that name (or prefix) for its own tables")
    if dialect == "postgresql" and not fits(name, dialect):
        raise refuse(f"it is {len(name.encode())} bytes long in UTF-8; PostgreSQL identifiers "
                     f"hold at most {PG_IDENTIFIER_BYTES} bytes")
    if dialect in ("mysql", "mariadb"):
        if not fits(name, dialect):
            raise refuse(f"it is {len(name)} characters long; MariaDB/MySQL identifiers hold "
                         f"at most {MYSQL_IDENTIFIER_CHARS}")
        if name.endswith(" "):
            raise refuse("MariaDB/MySQL table names cannot end with a space")
        if any(ord(ch) > 0xFFFF for ch in name):
            raise refuse("MariaDB/MySQL identifiers hold characters of the Basic Multilingual "
                         "Plane only (no emoji)")
        if any(ch in "\n\r" for ch in name):
            # The server takes them, but SHOW CREATE TABLE, which SQLAlchemy's
            # reflection reads line by line, then cannot be read back.
            raise refuse("MariaDB/MySQL table names with a line break cannot be read "
                         "back by reflection")
    if dialect == "sqlite" and name.lower().startswith("sqlite_"):
        raise refuse("SQLite reserves names beginning with 'sqlite_'")


def mysql_file_name_check(connection: sa.Connection, name: str) -> None:
    """MariaDB/MySQL keep a table in files named after it, each character outside
    ``[0-9A-Za-z_]`` taking up to 5: refuse a name whose file name would be too
    long (the server's own encoding, ``CONVERT(... USING filename)``)."""
    if len(_SAFE.sub("xxxxx", name)) <= MYSQL_FILE_NAME:
        return
    size = connection.execute(
        sa.text("SELECT LENGTH(CAST(CONVERT(:name USING filename) AS BINARY))"), {"name": name}
    ).scalar()
    if size is not None and int(size) > MYSQL_FILE_NAME:
        raise SchemaError(
            f"table name {name!r} cannot be used on MariaDB/MySQL: the server keeps a table in "
            f"files named after it, and this name makes a {size}-character file name (each "
            f"character outside [0-9A-Za-z_] is written as @XXXX); at most "
            f"{MYSQL_FILE_NAME} fit", table=name)


def new_metadata() -> sa.MetaData:
    return sa.MetaData(naming_convention=NAMING_CONVENTION)


def model_columns(row_model: type[SQLModel] | None) -> list[sa.Column[Any]]:
    """Copies of the columns a row model declares (the base columns without one),
    each field's with the type map's column type and nullability.

    Raises :class:`SchemaError` naming the field if an annotation is outside the
    type map (checked once per row model).
    """
    if row_model is None:
        return base_columns()
    table = getattr(row_model, "__table__", None)
    if not isinstance(table, sa.Table):
        raise TypeError(
            f"row model {row_model.__name__} must be a SQLModel table class: declare it "
            f"as 'class {row_model.__name__}(StoreRow, table=True)'"
        )
    mapped = typemap.field_types(row_model, skip=BASE_COLUMNS)
    columns = []
    for column in table.columns:
        copy = column._copy()
        field = mapped.get(column.name)
        if field is not None:
            copy.type = field.column_type
            copy.nullable = field.nullable
            copy.info[typemap.FIELD_TYPE_KEY] = field
            if not field.nullable and copy.server_default is None:
                copy.server_default = server_default(field, column.info)
        columns.append(copy)
    return columns


def server_default(field: typemap.FieldType, info: Mapping[str, Any]) -> sa.DefaultClause | None:
    """The server default of a required field's column: its default as the column
    type stores it on each dialect (an enum member's name, a UTC time, a scaled
    Decimal on SQLite...), so rows written by code that does not know the column
    (GC3Pie's INSERTs, the rows already there when the column is added) are valid.

    The value is a bound literal rendered by the DDL compiler, which escapes it
    once for the driver's paramstyle (a ``%`` in the default is stored as
    ``%``). ``None`` when there is no plain default, or when the value policy
    refuses it.
    """
    if DEFAULT_KEY not in info:
        return None
    default = info[DEFAULT_KEY]
    if default is None or callable(default) or isinstance(default, (list, dict, set, tuple)):
        return None
    try:
        value = typemap.condition_value(field, default)
    except (typemap.Refused, TypeError, ValueError) as exc:
        log.warning("field %s: default %r cannot be a server default (%s)", field.name,
                    default, exc)
        return None
    return sa.DefaultClause(sa.literal(value, type_=field.column_type))


def _prefix_indexes(table: sa.Table) -> None:
    """MariaDB/MySQL index a LONGTEXT/LONGBLOB column by a prefix of its values
    (they cannot index it whole); queries stay exact."""
    for index in table.indexes:
        columns = list(index.columns)
        if len(columns) != 1:
            continue
        needs = getattr(columns[0].type, "needs_index_prefix", None)
        if needs is not None and needs():
            index.dialect_kwargs["mysql_length"] = typemap.MYSQL_INDEX_PREFIX
            index.dialect_kwargs["mariadb_length"] = typemap.MYSQL_INDEX_PREFIX


def build_table(
    name: str,
    metadata: sa.MetaData,
    row_model: type[SQLModel] | None = None,
    extra_fields: Mapping[sa.Column[Any], Callable[[Any], Any]] | None = None,
    bookkeeping: bool = True,
    only: set[str] | None = None,
) -> sa.Table:
    """The record table ``name`` for ``row_model`` plus ``extra_fields``.

    ``bookkeeping=False`` leaves out the version/updated_at columns (a GC3Pie
    table not upgraded yet); ``only`` keeps just the named columns (the
    columns an existing table has).
    """
    check_table_name(name, None)  # what no backend takes; the rest once the dialect is known
    columns = model_columns(row_model)
    names = {c.name for c in columns}
    for column, extractor in (extra_fields or {}).items():
        if column.name in names:
            raise ValueError(f"extra field {column.name!r} clashes with a row model column")
        columns.append(lenient_column(column, extractor))
        names.add(column.name)
    if not bookkeeping:
        columns = [c for c in columns if c.name not in BOOKKEEPING_COLUMNS]
    else:
        columns += integrity_columns() + tracking_columns()
    if only is not None:
        columns = [c for c in columns if c.name in only]
    table = sa.Table(name, metadata, *columns)
    _prefix_indexes(table)
    return table


def tracking_columns() -> list[sa.Column[Any]]:
    """``_root`` (:data:`typedstore.references.ROOT_COLUMN`), nullable: whether
    a record was saved directly and whether it was ever referenced (values in
    :mod:`typedstore.references`); NULL where not known (rows written before
    revision ts0005, or by GC3Pie)."""
    return [sa.Column(ROOT_COLUMN, sa.SmallInteger, nullable=True)]


def refs_table_name(table: str, dialect: str | None = None) -> str:
    """The reference table of store table ``table`` on ``dialect``:
    ``typedstore_refs_<table>``, or a hashed name when that does not fit
    (:func:`fitted`)."""
    return fitted(REFS_TABLE_PREFIX, table, dialect)


def refs_table(name: str, metadata: sa.MetaData, dialect: str | None = None) -> sa.Table:
    """The reference table ``name``: one row ``(source, target)`` per record
    ``source`` whose payload references record ``target``; looked up both ways
    (its key, and an index on ``target``). No foreign keys: GC3Pie deletes rows
    of the store table without knowing of it, which leaves rows here whose
    source is gone; every reader joins them away, pack removes them. Its
    index's name fits ``dialect`` too."""
    return sa.Table(
        name, metadata,
        sa.Column("source", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("target", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Index(fitted("ix_", f"{name}_target", dialect), "target"),
    )


def integrity_columns() -> list[sa.Column[Any]]:
    """``_checksum`` and ``_mac`` (:mod:`typedstore.integrity`), nullable: rows
    written before revision ts0004, or by GC3Pie, have neither and load unchecked."""
    return [sa.Column(CHECKSUM_COLUMN, sa.BigInteger, nullable=True),
            sa.Column(MAC_COLUMN, sa.String(MAC_LENGTH), nullable=True)]


def counter_table(metadata: sa.MetaData) -> sa.Table:
    """``typedstore_ids``: the next free id of every store table in the database."""
    return sa.Table(
        ID_COUNTER_TABLE,
        metadata,
        sa.Column("table_name", sa.String(255), primary_key=True),
        sa.Column("next_id", sa.BigInteger, nullable=False),
    )
