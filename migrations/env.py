"""Alembic environment of typedstore store tables (the logic lives in typedstore.schema)."""

from typedstore.schema import run_environment

run_environment()
