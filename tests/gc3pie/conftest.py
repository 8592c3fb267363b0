"""Fixtures of the GC3Pie interoperability tests: the GC3Pie venv and its side.

* ``gc3pie_python`` (session): the interpreter of GC3Pie 2.6.8's own venv, built
  once and cached between runs (:mod:`gc3env`). A failed build fails the run
  when ``CI=true`` (with pip's output) and skips these tests elsewhere.
* ``gc3_id_file``: GC3Pie's id counter file (``GC3PIE_ID_FILE``) in the test's
  tmp dir, set for GC3Pie's subprocesses and for this process (typedstore reads
  it for stores in GC3Pie-compatible mode), never ``~/.gc3/next_id.txt``.
* ``gc3``: runs ``gc3side.py`` commands on this test's store (:class:`Gc3Side`).
* ``gc3_counts``: lines of record counts, printed at the end of the run.

The store location comes from the suite's ``store_url`` fixture (one per backend);
GC3Pie is given the same store under its own URL spelling (:func:`gc3env.gc3pie_url`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gc3env
import pytest
from gc3env import Gc3Side

IN_CI = os.environ.get("CI", "").lower() == "true"

#: Lines of counts the tests report (printed in the terminal summary).
_COUNTS: list[str] = []


@pytest.fixture(scope="session")
def gc3pie_python() -> Path:
    """The GC3Pie venv's python (built on first use, then cached between runs)."""
    try:
        return gc3env.ensure_gc3pie_python()
    except Exception as exc:  # Gc3EnvError, a lock timeout, a full disk...
        message = (f"the GC3Pie {gc3env.GC3PIE_VERSION} venv at {gc3env.venv_dir()} could not "
                   f"be built: {type(exc).__name__}: {exc}")
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture
def gc3_id_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """GC3Pie's id counter file for this test, also set in this process's environment."""
    path = tmp_path / "gc3" / "next_id.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("GC3PIE_ID_FILE", str(path))
    return path


@pytest.fixture
def gc3(gc3pie_python: Path, store_url: str, tmp_path: Path, gc3_id_file: Path) -> Gc3Side:
    return Gc3Side(store_url, tmp_path, gc3_id_file)


@pytest.fixture(scope="session")
def gc3_counts() -> Iterator[list[str]]:
    yield _COUNTS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _COUNTS:
        terminalreporter.section("GC3Pie 2.6.8 interoperability: record counts")
        for line in _COUNTS:
            terminalreporter.write_line(line)
