"""Alembic environment for this repository's alembic.ini: typedstore's own."""

from typedstore.schema import run_environment

run_environment()
