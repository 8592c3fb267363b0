"""Queries never depend on the reader's classes (issue 12, item 4).

A writer saves jobs whose class the reader cannot import. The reader's queries
still find them, with the state their writer indexed, and only loading one
raises. A record no writer indexed (GC3Pie's) that the reader cannot read
keeps a row too, state UNKNOWN and flagged; a later reader that has the class
indexes it properly.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from typedstore import FilesystemStore, LoadError

MODULE = '''
from typedstore import Persistable


class Execution:
    def __init__(self, state):
        self.state = state


class VanishingJob(Persistable):
    def __init__(self, name, state):
        self.name = name
        self.execution = Execution(state)
'''


@pytest.fixture
def vanishing(tmp_path: Path) -> object:
    """A module the writer imports and the reader then lacks."""
    folder = tmp_path / "modules"
    folder.mkdir()
    (folder / "vanishing_jobs.py").write_text(MODULE)
    sys.path.insert(0, str(folder))
    import vanishing_jobs  # type: ignore[import-not-found]

    yield vanishing_jobs
    sys.modules.pop("vanishing_jobs", None)
    if str(folder) in sys.path:
        sys.path.remove(str(folder))


def forget(module: object, tmp_path: Path) -> None:
    sys.modules.pop("vanishing_jobs", None)
    sys.path.remove(str(tmp_path / "modules"))


@pytest.mark.parametrize("writer_open", [True, False], ids=["writer-running", "writer-closed"])
def test_a_reader_without_the_class_still_finds_the_records(
        vanishing: object, tmp_path: Path, writer_open: bool) -> None:
    job = vanishing.VanishingJob  # type: ignore[attr-defined]
    writer = FilesystemStore(tmp_path / "jobs")
    running = sorted(str(writer.save(job(f"r{i}", "RUNNING"))) for i in range(3))
    new = str(writer.save(job("n", "NEW")))
    if not writer_open:
        writer.close()
    forget(vanishing, tmp_path)

    with FilesystemStore(tmp_path / "jobs") as reader:
        assert sorted(map(str, reader.query(state="RUNNING").ids())) == running
        assert [str(i) for i in reader.query(state="NEW").ids()] == [new]
        with pytest.raises(LoadError) as info:
            reader.load(running[0])
        assert running[0] in str(info.value)
        assert reader.unreadable() == []  # the writer's rows needed no reading
    with FilesystemStore(tmp_path / "jobs") as again:  # and they stay
        assert sorted(map(str, again.query(state="RUNNING").ids())) == running
    if writer_open:
        writer.close()


def test_an_unindexed_record_the_reader_cannot_read_keeps_a_flagged_row(
        vanishing: object, tmp_path: Path) -> None:
    job = vanishing.VanishingJob  # type: ignore[attr-defined]
    with FilesystemStore(tmp_path / "jobs") as writer:
        first = str(writer.save(job("a", "RUNNING")))
    # A record no typedstore indexed (as GC3Pie writes them): a copy under a new id.
    stranger = "VanishingJob.900"
    shutil.copy(tmp_path / "jobs" / first, tmp_path / "jobs" / stranger)
    forget(vanishing, tmp_path)

    with FilesystemStore(tmp_path / "jobs") as reader:
        assert [str(i) for i in reader.query(state="RUNNING").ids()] == [first]
        assert [str(i) for i in reader.query(state="UNKNOWN").ids()] == [stranger]
        flagged = reader.unreadable()
        assert [i for i, _ in flagged] == [stranger] and "vanishing_jobs" in flagged[0][1]
        with pytest.raises(LoadError):
            list(reader.query(state="UNKNOWN").objects())

    sys.path.insert(0, str(tmp_path / "modules"))  # a reader that has the class
    with FilesystemStore(tmp_path / "jobs") as reader:
        assert sorted(str(i) for i in reader.query(state="RUNNING").ids()) == [
            first, stranger]
        assert reader.unreadable() == []
        assert reader.load(stranger).name == "a"
