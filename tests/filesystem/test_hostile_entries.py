"""Entries of a jobs directory that are not records (issue 12: planted records,
hostile input): a FIFO, links to a device or to nowhere, a huge sparse file, names
that are not UTF-8, that number beyond a 64-bit id, or that look temporary. None of
them may hang, exhaust memory, or break ``list()`` and queries over the real
records; loading one is a LoadError naming it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from typedstore import FilesystemStore, LoadError
from typedstore.defaults import MAX_RECORD_BYTES


def plant_entries(directory: Path) -> None:
    os.mkfifo(directory / "Job.70")
    os.symlink("/dev/zero", directory / "Job.71")
    os.symlink("Job.72", directory / "Job.72")  # a link to itself
    os.symlink("nowhere", directory / "Job.73")
    os.mkdir(directory / "Job.74")
    (directory / "Job.75.tmp").write_bytes(b"x")
    (directory / ("Job." + "9" * 250)).write_bytes(b"x")
    os.close(os.open(os.fsencode(directory) + b"/Job.\xff\xfe", os.O_CREAT | os.O_WRONLY))


def test_entries_that_are_not_records_are_left_out(tmp_path: Path) -> None:
    directory = tmp_path / "jobs"
    store = FilesystemStore(directory)
    ids = [str(store.save({"n": n})) for n in range(3)]
    plant_entries(directory)
    reader = FilesystemStore(directory)
    assert [str(i) for i in reader.list()] == ids
    assert [r.id for r in reader.query()] == ids
    assert reader.unreadable() == []
    assert sorted(o["n"] for o in reader.query().objects()) == [0, 1, 2]
    for odd in ("Job.70", "Job.71"):
        with pytest.raises(LoadError, match="not a regular file"):
            reader.load(odd)
    assert reader.load(reader.save({"n": 3})) == {"n": 3}  # writing still works


def test_a_record_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    directory = tmp_path / "jobs"
    store = FilesystemStore(directory)
    kept = store.save({"n": 1})
    with open(directory / "Job.80", "wb") as sparse:  # no disk space: a hole
        sparse.truncate(MAX_RECORD_BYTES + 1)
    reader = FilesystemStore(directory)
    with pytest.raises(LoadError, match="over the"):
        reader.load("Job.80")
    rows = {r.id: r.state for r in reader.query()}
    assert rows == {str(kept): "UNKNOWN", "Job.80": "UNKNOWN"}
    assert [i for i, _ in reader.unreadable()] == ["Job.80"]


def test_a_backup_standing_for_its_record_is_queried(tmp_path: Path) -> None:
    """GC3Pie died between its two renames: ``Job.66.OLD`` alone stands for Job.66,
    in queries as in ``list()`` and ``load``."""
    directory = tmp_path / "jobs"
    store = FilesystemStore(directory)
    id_ = store.save({"n": 66})
    os.rename(directory / str(id_), directory / f"{id_}.OLD")
    reader = FilesystemStore(directory)
    assert [str(i) for i in reader.list()] == [str(id_)]
    assert [r.id for r in reader.query()] == [str(id_)]
    assert reader.load(id_) == {"n": 66}
