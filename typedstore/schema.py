"""Checking (and, when allowed, creating) a store's tables in the database.

:func:`inspect_table` compares what a store needs with what the database has:
a missing table, columns of the row model that the table lacks, and whether
the table has typedstore's bookkeeping columns (a table written by GC3Pie does
not; it is then used as it is, without version checks, until upgraded).
:func:`create_tables` is the single place where store tables are created.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import sqlalchemy as sa

from .errors import SchemaError
from .rows import BOOKKEEPING_COLUMNS
from .urls import redact

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableState:
    """What the database holds for one store table.

    Attributes:
        exists (bool): the table is there.
        columns (frozenset[str]): its column names (empty if it does not exist).
    """

    exists: bool
    columns: frozenset[str]

    @property
    def legacy(self) -> bool:
        """The table lacks typedstore's bookkeeping columns (GC3Pie's layout)."""
        return self.exists and not set(BOOKKEEPING_COLUMNS) <= self.columns


def inspect_table(connection: sa.Connection, name: str) -> TableState:
    inspector = sa.inspect(connection)
    if not inspector.has_table(name):
        return TableState(False, frozenset())
    return TableState(True, frozenset(c["name"] for c in inspector.get_columns(name)))


def check_columns(wanted: sa.Table, state: TableState, url: str) -> None:
    """Raise :class:`SchemaError` naming every column ``wanted`` has and the table lacks."""
    missing = [
        c.name for c in wanted.columns
        if c.name not in state.columns and c.name not in BOOKKEEPING_COLUMNS
    ]
    if missing:
        raise SchemaError(
            f"{redact(url)}: table {wanted.name!r} lacks the column(s) "
            f"{', '.join(missing)} of the row model; add them with a migration "
            "(see docs/schema-evolution.md)",
            table=wanted.name,
            missing_columns=missing,
        )


def create_tables(connection: sa.Connection, *tables: sa.Table) -> None:
    """Create the given tables (and their indexes) where missing."""
    for table in tables:
        table.create(connection, checkfirst=True)
