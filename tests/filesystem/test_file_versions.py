"""Versions and conflicts on the file store (issue 14, item 1), with real processes
and real files.

* two processes save the same object, both having read the same version: exactly
  one commit wins, the other gets ConflictError and writes nothing;
* a writer killed after its commit staged the index rows, before it renamed its
  file, leaves no version that makes the next save conflict falsely; killed
  after its journal was written, its commit is finished by the next one, and a
  save of what was read before it is then a true conflict;
* a record another program rewrote (as GC3Pie does) in a GC3Pie-compatible
  store: saving the object loaded before raises ConflictError;
* the record files stay as GC3Pie wrote them: versions live in the index only.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from typedstore import ConflictError, FilesystemStore
from typedstore.demo import DemoJob

RACER = """
import json, os, sys, time
from typedstore import ConflictError, make_store
from typedstore.demo import DemoJob

directory, id_, me, gate = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
store = make_store(directory)
job = store.load(id_)
open(os.path.join(gate, me), "w").close()
deadline = time.monotonic() + 60
while len(os.listdir(gate)) < 2:  # both have read the record before either saves
    if time.monotonic() > deadline:
        sys.exit("the other racer never came")
    time.sleep(0.001)
job.requested_cores = int(me)
try:
    with store.transaction():
        marker = store.save(DemoJob("marker-" + me, 0, []))
        store.save(job)
except ConflictError as exc:
    print(json.dumps({"me": me, "outcome": "conflict", "ids": [str(i) for i in exc.ids],
                      "expected": exc.expected, "found": exc.found}))
else:
    print(json.dumps({"me": me, "outcome": "won", "marker": str(marker)}))
store.close()
"""


def temporaries(directory: Path) -> list[str]:
    """Files left in the store's temporary directory (a refused commit leaves none)."""
    return sorted(os.listdir(directory.parent / f".{directory.name}.typedstore" / "tmp"))


def test_two_processes_save_the_same_object_exactly_one_wins(tmp_path: Path) -> None:
    import json

    directory = tmp_path / "jobs"
    store = FilesystemStore(directory)
    id_ = store.save(DemoJob("contested", 1, []))
    script = tmp_path / "racer.py"
    script.write_text(RACER)
    rounds = 6
    for round_ in range(rounds):
        gate = tmp_path / f"gate{round_}"
        gate.mkdir()
        first, second = 100 + 2 * round_, 101 + 2 * round_
        racers = [subprocess.Popen([sys.executable, str(script), str(directory), str(id_),
                                    str(me), str(gate)], stdout=subprocess.PIPE, text=True)
                  for me in (first, second)]
        results = []
        for racer in racers:
            out, _ = racer.communicate(timeout=120)
            assert racer.returncode == 0, out
            results.append(json.loads(out.strip().splitlines()[-1]))
        outcomes = sorted(r["outcome"] for r in results)
        assert outcomes == ["conflict", "won"], (round_, results)
        winner = next(r for r in results if r["outcome"] == "won")
        loser = next(r for r in results if r["outcome"] == "conflict")
        assert loser["ids"] == [str(id_)]
        assert loser["found"] == loser["expected"] + 1  # the winner's commit, one more
        reader = FilesystemStore(directory)
        assert reader.load(id_).requested_cores == int(winner["me"])
        names = {job.jobname for job in reader.query().objects()}
        assert f"marker-{winner['me']}" in names
        assert f"marker-{loser['me']}" not in names  # the whole transaction was refused
        reader.close()
        assert temporaries(directory) == []
    # Each round moved the version by one: the next save of a fresh read succeeds.
    fresh = FilesystemStore(directory)
    job = fresh.load(id_)
    job.requested_cores = 1
    fresh.save(job)
    assert FilesystemStore(directory).load(id_).requested_cores == 1


KILLED_WRITER = """
import os, signal, sys
from typedstore import make_store

directory, kill_at, ids = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
store = make_store(directory)
jobs = [store.load(id_) for id_ in ids]
count = 0
armed = False

def hook(event, args):
    global count
    if armed and event == "os.rename":
        count += 1
        if count == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

sys.addaudithook(hook)
with store.transaction():
    for job in jobs:
        job.requested_cores = 1000
        store.save(job)
    armed = True  # the commit runs when the block ends
"""


def kill_writer(tmp_path: Path, directory: Path, ids: list[str], kill_at: int) -> None:
    script = tmp_path / "killed.py"
    script.write_text(KILLED_WRITER)
    done = subprocess.run([sys.executable, str(script), str(directory), str(kill_at),
                           ",".join(ids)], capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr


@pytest.mark.parametrize("then", ["save", "query then save", "refresh then save",
                                  "new store saves"])
def test_writer_killed_before_its_rename_leaves_no_false_conflict(
        tmp_path: Path, then: str) -> None:
    directory = tmp_path / "jobs"
    store = FilesystemStore(directory)
    id_ = store.save(DemoJob("job", 1, []))
    job = store.load(id_)
    job.requested_cores = 2
    store.save(job)  # version 2
    # One record: the commit's first rename is its file's, after the row is staged.
    kill_writer(tmp_path, directory, [str(id_)], kill_at=1)
    if then == "query then save":
        assert [str(i) for i in store.query().ids()] == [str(id_)]
    elif then == "refresh then save":
        report = store.refresh()
        assert (report.changed, report.removed, report.unchanged) == ([], [], 1)
    elif then == "new store saves":
        store = FilesystemStore(directory)
        job = store.load(id_)
    assert job.requested_cores == 2
    job.requested_cores = 3
    store.save(job)  # no conflict: the killed commit never happened
    other = FilesystemStore(directory)
    again = other.load(id_)
    assert again.requested_cores == 3
    again.requested_cores = 4
    other.save(again)  # and the version the save stored is the one the next reader gets
    stale = job
    stale.requested_cores = 5
    with pytest.raises(ConflictError, match="changed"):
        store.save(stale)  # versions still move: a true conflict is caught
    assert FilesystemStore(directory).load(id_).requested_cores == 4


def test_transaction_killed_after_its_journal_is_finished_and_conflicts_truly(
        tmp_path: Path) -> None:
    directory = tmp_path / "jobs"
    store = FilesystemStore(directory)
    ids = store.save_many([DemoJob(f"job-{n}", 1, []) for n in range(2)])
    jobs = [store.load(i) for i in ids]
    # Two records: rename 1 installs the journal, rename 2 applies it.
    kill_writer(tmp_path, directory, [str(i) for i in ids], kill_at=1)  # before the journal
    jobs[0].requested_cores = 2
    store.save(jobs[0])  # the killed commit did not happen: no conflict
    kill_writer(tmp_path, directory, [str(i) for i in ids], kill_at=2)  # journal written
    # The journal is finished by the next commit: the killed transaction happened,
    # so saving what this store read before it is a conflict, and writes nothing.
    jobs[1].requested_cores = 3
    with pytest.raises(ConflictError) as info:
        store.save(jobs[1])
    assert [str(i) for i in info.value.ids] == [str(ids[1])]
    reader = FilesystemStore(directory)
    assert [reader.load(i).requested_cores for i in ids] == [1000, 1000]
    fresh = store.load(ids[1])
    fresh.requested_cores = 4
    store.save(fresh)
    assert FilesystemStore(directory).load(ids[1]).requested_cores == 4


def rewrite_as_gc3pie(directory: Path, id_: str, job: DemoJob) -> None:
    """Replace record ``id_`` as GC3Pie 2.6.8's FilesystemStore does: the old file
    renamed to ``.OLD``, the new pickle written in place, the backup removed."""
    path = directory / id_
    os.rename(path, directory / f"{id_}.OLD")
    with open(path, "wb") as stream:
        pickle.dump(job, stream, protocol=2)
    os.unlink(directory / f"{id_}.OLD")


@pytest.fixture
def gc3pie_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GC3PIE_ID_FILE", str(tmp_path / "gc3" / "next_id.txt"))
    (tmp_path / "gc3").mkdir()
    return tmp_path / "jobs"


@pytest.mark.parametrize("then", ["save", "query then save", "refresh then save"])
def test_record_rewritten_by_another_program_conflicts(gc3pie_store: Path, then: str) -> None:
    directory = gc3pie_store
    store = FilesystemStore(directory, gc3pie_compatible=True)
    id_ = store.save(DemoJob("job", 1, []))
    mine = store.load(id_)
    theirs = DemoJob("job", 50, [])
    theirs.persistent_id = str(id_)
    time.sleep(0.01)  # a new modification time even on coarse clocks
    rewrite_as_gc3pie(directory, str(id_), theirs)
    if then == "query then save":
        assert [r.state for r in store.query()]  # rebuilds the row from the new file
    elif then == "refresh then save":
        assert store.refresh().changed == [id_]
    mine.requested_cores = 2
    with pytest.raises(ConflictError) as info:
        store.save(mine)
    assert [str(i) for i in info.value.ids] == [str(id_)]
    assert str(id_) in str(info.value) and str(directory) in str(info.value)
    assert FilesystemStore(directory).load(id_).requested_cores == 50  # theirs kept
    fresh = store.load(id_)
    assert fresh is not mine and fresh.requested_cores == 50
    fresh.requested_cores = 51
    store.save(fresh)  # load it again and reapply: converges
    assert FilesystemStore(directory).load(id_).requested_cores == 51


def test_last_writer_wins_overwrites_a_gc3pie_rewrite(gc3pie_store: Path) -> None:
    directory = gc3pie_store
    store = FilesystemStore(directory, gc3pie_compatible=True, conflicts="last-writer-wins")
    id_ = store.save(DemoJob("job", 1, []))
    mine = store.load(id_)
    theirs = DemoJob("job", 50, [])
    time.sleep(0.01)
    rewrite_as_gc3pie(directory, str(id_), theirs)
    mine.requested_cores = 2
    store.save(mine)
    assert FilesystemStore(directory).load(id_).requested_cores == 2


def test_record_files_hold_no_version(tmp_path: Path) -> None:
    """The bytes of a record file are the pickle of the object, whatever its
    version: saving the same state again writes the same bytes."""
    directory = tmp_path / "jobs"
    store = FilesystemStore(directory)
    id_ = store.save(DemoJob("job", 1, []))
    first = (directory / str(id_)).read_bytes()
    job = store.load(id_)
    for cores in (2, 1):
        job.requested_cores = cores
        store.save(job)
    assert (directory / str(id_)).read_bytes() == first
    assert store._current_versions([id_]) == {id_: 3}


def test_index_from_before_versions_gets_the_column_and_checks_at_once(tmp_path: Path) -> None:
    """An index.db written before versions (no ``_version`` column) gets the column
    on open, without indexing anything again; its records count as version 0, so
    the first commit over one is already checked."""
    import sqlite3

    directory = tmp_path / "jobs"
    store = FilesystemStore(directory)
    id_ = store.save(DemoJob("job", 1, []))
    store.close()
    index = directory.parent / f".{directory.name}.typedstore" / "index.db"
    with sqlite3.connect(index) as db:
        db.execute("ALTER TABLE records DROP COLUMN _version")
    first, second = FilesystemStore(directory), FilesystemStore(directory)
    assert first.index.added == []  # typedstore's own column: nothing indexed again
    mine, theirs = first.load(id_), second.load(id_)
    assert first._current_versions([id_]) == {id_: 0}
    theirs.requested_cores = 2
    second.save(theirs)
    mine.requested_cores = 3
    with pytest.raises(ConflictError, match="now version 1"):
        first.save(mine)
    assert FilesystemStore(directory).load(id_).requested_cores == 2


def test_object_saved_twice_in_a_transaction_is_still_checked(tmp_path: Path) -> None:
    """Writes are checked at commit: a second save of the same object in the
    transaction keeps the version its first save expected."""
    directory = tmp_path / "jobs"
    store = FilesystemStore(directory)
    id_ = store.save(DemoJob("job", 1, []))
    mine = store.load(id_)
    other = FilesystemStore(directory)
    theirs = other.load(id_)
    theirs.requested_cores = 2
    other.save(theirs)
    with pytest.raises(ConflictError), store.transaction():
        mine.requested_cores = 3
        store.save(mine)
        mine.requested_cores = 4
        store.save(mine)
    assert FilesystemStore(directory).load(id_).requested_cores == 2
