"""Bookkeeping: version and updated_at columns, the state index, the id counter.

On a GC3Pie table this is what adoption adds; the counter starts above the
largest id already stored.

Revision ID: ts0002
Revises: ts0001
Create Date: 2026-11-23
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from typedstore.defaults import ID_COUNTER_TABLE
from typedstore.migrations import store_table
from typedstore.tables import state_index_name
from typedstore.typemap import mysql_table_options

revision: str = "ts0002"
down_revision: str | Sequence[str] | None = "ts0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = store_table()
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    columns = {c["name"] for c in inspector.get_columns(table)}
    state_indexed = any(i["column_names"] == ["state"] for i in inspector.get_indexes(table))
    with op.batch_alter_table(table) as batch:
        if "version" not in columns:
            batch.add_column(sa.Column("version", sa.Integer(), nullable=False,
                                       server_default="1"))
        if "updated_at" not in columns:
            batch.add_column(sa.Column("updated_at", sa.Double(), nullable=True))
    if not state_indexed:
        # op.f: the name is final; SQLAlchemy shortens it (with a hash) where too long.
        op.create_index(op.f(state_index_name(table)), table, ["state"])
    if not inspector.has_table(ID_COUNTER_TABLE):
        op.create_table(
            ID_COUNTER_TABLE,
            sa.Column("table_name", sa.String(255), primary_key=True),
            sa.Column("next_id", sa.BigInteger(), nullable=False),
            **mysql_table_options(bind.dialect),
        )
    counter = sa.table(ID_COUNTER_TABLE, sa.column("table_name"), sa.column("next_id"))
    exists = bind.execute(sa.select(counter.c.table_name)
                          .where(counter.c.table_name == table)).first()
    if exists is None:
        records = sa.table(table, sa.column("id"))
        largest = bind.execute(sa.select(sa.func.max(records.c.id))).scalar()
        op.bulk_insert(counter, [{"table_name": table, "next_id": int(largest or 0) + 1}])


def downgrade() -> None:
    table = store_table()
    bind = op.get_bind()
    counter = sa.table(ID_COUNTER_TABLE, sa.column("table_name"))
    op.execute(counter.delete().where(counter.c.table_name == table))
    if bind.execute(sa.select(sa.func.count()).select_from(counter)).scalar() == 0:
        op.drop_table(ID_COUNTER_TABLE)
    op.drop_index(op.f(state_index_name(table)), table_name=table)
    with op.batch_alter_table(table) as batch:
        batch.drop_column("updated_at")
        batch.drop_column("version")
