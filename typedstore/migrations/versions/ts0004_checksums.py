"""Integrity: a ``_checksum`` column (CRC-32 of the payload) and a ``_mac`` column
(HMAC-SHA256 of a signed store's records), both nullable.

Rows written before this revision (and rows GC3Pie writes) have neither: they
load unchecked, and a signed store refuses them until they are signed
(``typedstore resign URL --sign-unsigned``). Nothing is computed for existing
rows here; downgrading drops the columns (their values are lost, the records
are not).

Revision ID: ts0004
Revises: ts0003
Create Date: 2026-12-08
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from typedstore.integrity import CHECKSUM_COLUMN, MAC_COLUMN, MAC_LENGTH
from typedstore.migrations import store_table

revision: str = "ts0004"
down_revision: str | Sequence[str] | None = "ts0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = store_table()
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}
    with op.batch_alter_table(table) as batch:
        if CHECKSUM_COLUMN not in columns:
            batch.add_column(sa.Column(CHECKSUM_COLUMN, sa.BigInteger(), nullable=True))
        if MAC_COLUMN not in columns:
            batch.add_column(sa.Column(MAC_COLUMN, sa.String(MAC_LENGTH), nullable=True))


def downgrade() -> None:
    table = store_table()
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}
    with op.batch_alter_table(table) as batch:
        for name in (MAC_COLUMN, CHECKSUM_COLUMN):
            if name in columns:
                batch.drop_column(name)
