"""Where a file store keeps its own files: beside the jobs directory, never in it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from typedstore import FilesystemStore, Id, NotFoundError, StoreError


def test_jobs_directory_holds_only_records(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "jobs")
    try:
        ids = [store.save({"n": n}) for n in range(3)]
        with store.transaction():
            store.save({"n": 3})
            store.save({"n": 4})
    finally:
        store.close()
    expected = sorted(str(i) for i in [*ids, "dict.4", "dict.5"])
    assert sorted(os.listdir(tmp_path / "jobs")) == expected
    assert (tmp_path / ".jobs.typedstore").is_dir()


def test_a_symlink_to_the_directory_shares_its_metadata(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    one, two = FilesystemStore(tmp_path / "real"), FilesystemStore(tmp_path / "link")
    try:
        ids = {one.save({"a": 1}), two.save({"a": 2}), one.save({"a": 3}), two.save({"a": 4})}
        assert len(ids) == 4
    finally:
        one.close()
        two.close()
    assert not (tmp_path / ".link.typedstore").exists()


def test_metadata_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / ".jobs.typedstore").write_text("in the way")
    with pytest.raises(StoreError, match="metadata_dir="):
        FilesystemStore(tmp_path / "jobs")


def test_metadata_dir_can_be_given(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "jobs", metadata_dir=tmp_path / "meta")
    try:
        id_ = store.save({"a": 1})
    finally:
        store.close()
    assert os.listdir(tmp_path / "jobs") == [str(id_)]
    assert (tmp_path / "meta" / "index.db").exists()


def test_ids_are_not_renumbered(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "jobs")
    try:
        store.save({"a": 1})  # dict.1
        with pytest.raises(NotFoundError):
            store.remove("dict.01")
        assert [str(i) for i in store.list()] == ["dict.1"]
        with pytest.raises(ValueError):
            Id.parse("dict.01")
    finally:
        store.close()


def test_gc3pie_compatible_takes_booleans_only(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="gc3pie_compatible"):
        FilesystemStore(tmp_path / "jobs", gc3pie_compatible="no")  # type: ignore[arg-type]
