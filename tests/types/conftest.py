"""Fixtures of the type-map tests: the same store on all four backends at once."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from typedstore import Store, make_store

#: The four backends, in the order results are compared.
ALL_BACKENDS = ("file", "sqlite", "postgresql", "mysql")


def new_table() -> str:
    """A table name no other test uses."""
    return f"types_{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def gc3pie_id_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """GC3Pie's id counter file in this test's tmp dir, never ``~/.gc3/next_id.txt``."""
    path = tmp_path / "gc3pie_next_id.txt"
    monkeypatch.setenv("GC3PIE_ID_FILE", str(path))
    return path


@pytest.fixture
def locations(tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """A fresh store location on each backend (SQL: a new table)."""
    return {
        "file": str(tmp_path / "jobs"),
        "sqlite": f"sqlite:///{tmp_path / 'store.db'}#table={new_table()}",
        "postgresql": f"{request.getfixturevalue('pg_base_url')}#table={new_table()}",
        "mysql": f"{request.getfixturevalue('mysql_base_url')}#table={new_table()}",
    }


@pytest.fixture
def open_all(locations: dict[str, str]) -> Iterator[Callable[..., dict[str, Store]]]:
    """Open this test's store on every backend (``open_all(row_model=M)``); closed at
    teardown."""
    opened: list[Store] = []

    def _open(**kwargs: Any) -> dict[str, Store]:
        stores = {name: make_store(locations[name], **kwargs) for name in ALL_BACKENDS}
        opened.extend(stores.values())
        return stores

    yield _open
    for store in opened:
        store.close()
