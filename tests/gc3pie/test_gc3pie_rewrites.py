"""A jobs directory GC3Pie keeps writing: typedstore's queries follow its rewrites.

Regression (issue 9, found by a new user's trial): after a GC3Pie process
changed a job's state, the file store's index kept answering with the old state,
for good.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from gc3env import Gc3Side

from typedstore import FilesystemStore


@pytest.fixture
def backend() -> str:
    return "file"


def test_queries_see_gc3pie_rewrites_and_additions(gc3: Gc3Side, gc3_id_file: Path) -> None:
    written = gc3.write()
    directory = Path(gc3.store_url)
    store = FilesystemStore(directory)
    try:
        assert store.gc3pie_compatible
        before = {str(i) for i in store.query().ids()}
        assert before == {str(i) for i in written["ids"]}
        states = {str(r.id): r.state for r in store.query()}
        more = gc3.save_more("late", count=2)  # new records
        changed = gc3.run("save-more", "--tag", "again", "--count", "1")
        assert more and changed
        # GC3Pie rewrites every job it loads and saves: let it change states.
        done = gc3.run("set-state", "--state", "TERMINATED")
        assert done["changed"], done
        after = {str(r.id): r.state for r in store.query()}
        fresh = {str(r.id): r.state for r in FilesystemStore(directory).query()}
    finally:
        store.close()
    assert set(after) >= before | {str(i) for i in more["ids"]}
    for id_ in done["changed"]:
        assert after[id_] == "TERMINATED", (id_, states.get(id_), after[id_])
        assert fresh[id_] == "TERMINATED"
