"""Alembic environment of typedstore stores (all logic lives in typedstore.schema)."""

from typedstore.schema import run_environment

run_environment()
