"""The store table: id, data (the pickle), state.

A table that already exists (one written by GC3Pie) is adopted as it is: its
rows and extra columns are kept. On MariaDB/MySQL a new table is utf8mb4 with
the binary no-pad collation whatever the database's default
(:func:`typedstore.typemap.mysql_table_options`).

Revision ID: ts0001
Revises:
Create Date: 2026-11-23
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from typedstore.defaults import STATE_LENGTH, UNKNOWN_STATE
from typedstore.migrations import store_table
from typedstore.rows import IdType, PayloadType
from typedstore.typemap import mysql_table_options

revision: str = "ts0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("typedstore",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = store_table()
    bind = op.get_bind()
    if sa.inspect(bind).has_table(table):
        return  # adopt a GC3Pie table
    op.create_table(
        table,
        sa.Column("id", IdType, primary_key=True, autoincrement=False),
        sa.Column("data", PayloadType, nullable=True),
        sa.Column("state", sa.String(STATE_LENGTH), nullable=False,
                  server_default=UNKNOWN_STATE),
        **mysql_table_options(bind.dialect),
    )


def downgrade() -> None:
    op.drop_table(store_table())
