"""Fixtures of the SQL store tests (the suite's own are in ``tests/conftest.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def gc3pie_id_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """GC3Pie's id counter file (``GC3PIE_ID_FILE``), which stores on GC3Pie tables take
    their ids from, in this test's tmp dir: never the user's ``~/.gc3/next_id.txt``.
    Child processes inherit it."""
    path = tmp_path / "gc3pie_next_id.txt"
    monkeypatch.setenv("GC3PIE_ID_FILE", str(path))
    return path
