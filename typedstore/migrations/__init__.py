"""typedstore's Alembic environment and its revision chain for store tables.

Revisions read the store table they act on from :func:`store_table`, so one
chain serves every store table; each table records its revision in a version
table of its own (``typedstore_version_<table>``).
"""

from __future__ import annotations

from alembic import context


def store_table() -> str:
    """The name of the store table the running migration acts on."""
    return str(context.config.attributes["typedstore_table"])
