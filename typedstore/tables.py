"""The SQL tables of a store: the record table built from a row model, and the id counter.

A store's record table is built in the store's own ``MetaData`` from copies of
the row model's columns (or the :class:`~typedstore.rows.StoreRow` base
columns), under the store's table name, plus any GC3Pie ``extra_fields``
columns. Building it is pure; checking it against the database happens in
:mod:`typedstore.schema`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlmodel import SQLModel

from .defaults import ID_COUNTER_TABLE
from .rows import BOOKKEEPING_COLUMNS, base_columns, lenient_column

#: Constraint and index names that are the same on every backend, so that
#: migrations can name them (Alembic's recommended convention).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> sa.MetaData:
    return sa.MetaData(naming_convention=NAMING_CONVENTION)


def model_columns(row_model: type[SQLModel] | None) -> list[sa.Column[Any]]:
    """Copies of the columns a row model declares (the base columns without one)."""
    if row_model is None:
        return base_columns()
    table = getattr(row_model, "__table__", None)
    if not isinstance(table, sa.Table):
        raise TypeError(
            f"row model {row_model.__name__} must be a SQLModel table class: declare it "
            f"as 'class {row_model.__name__}(StoreRow, table=True)'"
        )
    return [column._copy() for column in table.columns]


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
    columns = model_columns(row_model)
    names = {c.name for c in columns}
    for column, extractor in (extra_fields or {}).items():
        if column.name in names:
            raise ValueError(f"extra field {column.name!r} clashes with a row model column")
        columns.append(lenient_column(column, extractor))
        names.add(column.name)
    if not bookkeeping:
        columns = [c for c in columns if c.name not in BOOKKEEPING_COLUMNS]
    if only is not None:
        columns = [c for c in columns if c.name in only]
    return sa.Table(name, metadata, *columns)


def counter_table(metadata: sa.MetaData) -> sa.Table:
    """``typedstore_ids``: the next free id of every store table in the database."""
    return sa.Table(
        ID_COUNTER_TABLE,
        metadata,
        sa.Column("table_name", sa.String(255), primary_key=True),
        sa.Column("next_id", sa.BigInteger, nullable=False),
    )
