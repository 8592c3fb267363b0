"""The type map on tables made before it: typedstore's columns get the map's types.

Tables created before typedstore owned its column types kept what SQLModel and
the server chose: a MariaDB ``FLOAT`` (single precision) for a ``float`` field,
text in the database's character set and case-insensitive collation, ``INTEGER``
for ``int``, a SQLite ``NUMERIC`` for a ``Decimal``. This revision converts,
keeping every value (:func:`typedstore.schema.convert_to_type_map`):

* ``state`` on MariaDB/MySQL: utf8mb4 with the binary collation, as new tables;
* the row model's columns, when the row model is known: ``typedstore.upgrade(url,
  row_model=...)``, ``alembic -x row_model=package.module:Class upgrade head``,
  or the command a store names when it opens such a table. Without it they are
  left as they are (logged); ``typedstore.upgrade(url, row_model=...)`` converts
  them later.

GC3Pie ``extra_fields`` columns keep the types their owner chose. On SQLite the
changes are a batch operation (a copy of the table). Downgrading keeps the new
types (they hold every value the old ones held).

Revision ID: ts0003
Revises: ts0002
Create Date: 2026-12-01
"""
from collections.abc import Sequence

from alembic import context, op

from typedstore.migrations import store_table
from typedstore.schema import convert_to_type_map, log

revision: str = "ts0003"
down_revision: str | Sequence[str] | None = "ts0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = store_table()
    row_model = context.config.attributes.get("typedstore_row_model")
    if row_model is None:
        log.info("table %s: no row model given to ts0003; its fields' columns keep their "
                 "types until typedstore.upgrade(url, row_model=...) converts them", table)
    convert_to_type_map(op.get_bind(), table, row_model)


def downgrade() -> None:
    """Nothing to undo: the map's types hold every value the old ones held."""
