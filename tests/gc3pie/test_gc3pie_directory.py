"""A jobs directory written by the real GC3Pie 2.6.8, in the states GC3Pie leaves it.

GC3Pie's ``FilesystemStore`` replaces a record by renaming it to ``ID.OLD``,
writing ``ID`` and deleting the backup; a GC3Pie process killed in between
leaves only ``ID.OLD``, or a torn ``ID`` beside ``ID.OLD``. The records here
are GC3Pie's own output; only the file system steps of its crash are replayed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from gc3env import Gc3Side

from typedstore import FilesystemStore, Id, NotFoundError


@pytest.fixture
def backend() -> str:
    return "file"


@pytest.fixture
def written(gc3: Gc3Side) -> dict[str, object]:
    result = gc3.write()
    assert isinstance(result, dict)
    return result


def jobs_dir(gc3: Gc3Side) -> Path:
    return Path(gc3.store_url)


def some_leaf(written: dict[str, object]) -> str:
    """An id of a record that references no other record (a Child)."""
    ids = [i for i in written["ids"] if str(i).startswith("Child.")]  # type: ignore[attr-defined]
    assert ids, written["ids"]
    return str(ids[0])


def test_backup_stands_for_a_missing_record(gc3: Gc3Side, written: dict[str, object],
                                            gc3_id_file: Path) -> None:
    directory = jobs_dir(gc3)
    leaf = some_leaf(written)
    os.rename(directory / leaf, directory / f"{leaf}.OLD")  # GC3Pie killed after its 1st rename
    store = FilesystemStore(directory)
    try:
        assert leaf in store.list()
        assert store.list().count(leaf) == 1
        obj = store.load(leaf)
        assert obj.persistent_id == leaf and isinstance(obj.persistent_id, Id)
        store.replace(leaf, obj)
        assert sorted(os.listdir(directory)).count(f"{leaf}.OLD") == 0
        assert (directory / leaf).exists()
    finally:
        store.close()
    dump = gc3.dump()
    assert dump["errors"] == {}, dump["errors"]


def test_torn_record_falls_back_to_its_backup(gc3: Gc3Side, written: dict[str, object],
                                              gc3_id_file: Path) -> None:
    directory = jobs_dir(gc3)
    leaf = some_leaf(written)
    whole = (directory / leaf).read_bytes()
    os.rename(directory / leaf, directory / f"{leaf}.OLD")
    (directory / leaf).write_bytes(whole[: len(whole) // 2])  # killed while writing ID
    store = FilesystemStore(directory)
    try:
        assert store.load(leaf).persistent_id == leaf
    finally:
        store.close()


def test_removing_a_backup_only_record(gc3: Gc3Side, written: dict[str, object],
                                       gc3_id_file: Path) -> None:
    directory = jobs_dir(gc3)
    leaf = some_leaf(written)
    os.rename(directory / leaf, directory / f"{leaf}.OLD")
    store = FilesystemStore(directory)
    try:
        # A container GC3Pie wrote holds it: removed by force (as GC3Pie removes).
        store.remove(leaf, force=True)
        assert leaf not in store.list()
        with pytest.raises(NotFoundError):
            store.load(leaf)
    finally:
        store.close()
    assert not (directory / f"{leaf}.OLD").exists()


def test_new_ids_come_after_gc3pies(gc3: Gc3Side, written: dict[str, object],
                                    gc3_id_file: Path) -> None:
    from gc3objects import Child

    directory = jobs_dir(gc3)
    largest = max(Id.parse(str(i))._seqno for i in written["ids"])  # type: ignore[attr-defined]
    gc3_id_file.unlink()  # even with GC3Pie's counter gone, no GC3Pie id is reissued
    store = FilesystemStore(directory)
    try:
        new = store.save(Child("late", 1))
        assert new._seqno > largest
        assert int(gc3_id_file.read_text()[:8], 16) >= new._seqno  # GC3Pie will not reissue it
    finally:
        store.close()
    assert sorted(os.listdir(directory)) == sorted(
        [str(i) for i in written["ids"]] + [str(new)])  # type: ignore[attr-defined]
