"""Reference tracking: a ``_root`` column and the table of references.

``_root`` (nullable) says whether a record was saved directly or only ever
as another record's child, and whether it was ever referenced; the table ``typedstore_refs_<table>``
holds one row ``(source, target)`` per reference from one record to another
(:mod:`typedstore.references`). Existing rows get NULL: their references are
read from their payloads when something first relies on them (nothing is
unpickled here). Downgrading drops both.

Revision ID: ts0005
Revises: ts0004
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from typedstore.migrations import store_table
from typedstore.references import ROOT_COLUMN
from typedstore.tables import refs_table, refs_table_name

revision: str = "ts0005"
down_revision: str | Sequence[str] | None = "ts0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = store_table()
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    if ROOT_COLUMN not in {c["name"] for c in inspector.get_columns(table)}:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column(ROOT_COLUMN, sa.SmallInteger(), nullable=True))
    name = refs_table_name(table, bind.dialect.name)
    if not inspector.has_table(name):
        refs_table(name, sa.MetaData(), bind.dialect.name).create(bind)


def downgrade() -> None:
    table = store_table()
    bind = op.get_bind()
    name = refs_table_name(table, bind.dialect.name)
    sa.Table(name, sa.MetaData()).drop(bind, checkfirst=True)
    if ROOT_COLUMN in {c["name"] for c in sa.inspect(bind).get_columns(table)}:
        with op.batch_alter_table(table) as batch:
            batch.drop_column(ROOT_COLUMN)
