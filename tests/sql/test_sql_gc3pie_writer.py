"""The real GC3Pie 2.6.8 and typedstore writing the same GC3Pie table.

GC3Pie's ``SqlStore.save(obj)`` looks the row up by ``id == obj.persistent_id`` and
updates it, or inserts a new row: a record typedstore wrote must come back from
GC3Pie's ``load`` with its row's id, so that GC3Pie's save updates it rather than
adding a second row. And typedstore must update the rows GC3Pie rewrote.

GC3Pie runs in a venv of its own (SQLAlchemy 1.3): ``$TYPEDSTORE_TEST_GC3PIE_PYTHON``
if set, else the cached venv ``tests/gc3pie/gc3env.py`` builds from PyPI (as the
GC3Pie tests of ``tests/gc3pie`` do). A venv that cannot be had fails these tests
when ``CI=true`` and skips them elsewhere.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from gc3pie_plain import PlainJob
from sql_jobs import HERE, SQL_BACKENDS
from test_sql_gc3pie_table import create_gc3pie_table, ensure_counter, jobname_field, jobnames

from tests.gc3pie.gc3env import Gc3EnvError, ensure_gc3pie_python

OpenStore = Callable[..., Any]

@cache
def gc3pie_python() -> Path | str:
    """GC3Pie's interpreter, or why GC3Pie cannot run here."""
    given = os.environ.get("TYPEDSTORE_TEST_GC3PIE_PYTHON")
    if given:
        python = Path(given)
    else:
        try:
            python = ensure_gc3pie_python()
        except Gc3EnvError as exc:
            return f"the GC3Pie venv cannot be built: {exc}"
    check = subprocess.run([str(python), "-c", "import gc3libs.persistence.sql"],
                           capture_output=True, text=True, timeout=120, check=False)
    if check.returncode != 0:
        return f"{python} cannot import GC3Pie: {check.stderr.strip()[-300:]}"
    return python


@pytest.fixture
def gc3pie(store_url: str, tmp_path: Path) -> Callable[..., list[Any]]:
    """Run GC3Pie's side (:func:`gc3pie_plain.gc3pie_side`) on this test's store."""
    python = gc3pie_python()
    if isinstance(python, str):
        if os.environ.get("CI") == "true":
            pytest.fail(python)
        pytest.skip(python)
    url = gc3pie_url(store_url)
    env = dict(os.environ, PYTHONPATH=str(HERE), HOME=str(tmp_path),
               GC3PIE_ID_FILE=str(tmp_path / "gc3pie_next_id.txt"))

    def run(*commands: Any) -> list[Any]:
        done = subprocess.run([str(python), str(HERE / "gc3pie_plain.py"), url,
                               json.dumps(commands)], capture_output=True, text=True, env=env,
                              timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        return list(json.loads(done.stdout.strip().splitlines()[-1]))

    return run


def gc3pie_url(store_url: str) -> str:
    """The URL GC3Pie 2.6.8 opens the same table with: psycopg2 for PostgreSQL (its
    SQLAlchemy 1.3 has no psycopg 3), and its own ``sqlite:///abs/path`` spelling."""
    scheme, rest = store_url.split("://", 1)
    if scheme == "sqlite":
        return f"sqlite://{rest[1:]}"
    if scheme.startswith("postgresql"):
        return f"postgresql://{rest}"
    return f"mysql+pymysql://{rest}"


@pytest.mark.parametrize("create", [True, False], ids=["adopted", "as_it_is"])
@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_gc3pie_updates_the_records_typedstore_wrote(
    store_url: str, open_store: OpenStore, backend: str, create: bool,
    gc3pie: Callable[..., list[Any]],
) -> None:
    create_gc3pie_table(store_url, backend, rows=False)
    if not create:
        ensure_counter(store_url)
    store = open_store(create=create, extra_fields=jobname_field())
    first, second = store.save_many([PlainJob("first"), PlainJob("second")])
    ids = [int(first), int(second)]

    saved, listed, name = gc3pie(["rename", ids[0], "first, renamed by GC3Pie"], ["list"],
                                 ["jobname", ids[1]])
    assert saved == ids[0]
    assert listed == ids  # updated in place: no second row
    assert name == "second"

    fresh = open_store(create=False, extra_fields=jobname_field())
    assert fresh.list() == ids
    obj = fresh.load(ids[0])
    assert obj.jobname == "first, renamed by GC3Pie"
    assert jobnames(store_url) == {ids[0]: "first, renamed by GC3Pie", ids[1]: "second"}

    # And back: typedstore updates the row GC3Pie rewrote.
    obj.jobname = "first, renamed by typedstore"
    assert fresh.save(obj) == ids[0]
    assert gc3pie(["jobname", ids[0]], ["list"]) == ["first, renamed by typedstore", ids]
    assert open_store(create=False).list() == ids
