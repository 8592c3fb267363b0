"""The file store's sidecar index: validation parity and several row models on one directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from typedstore import GET, Persistable, SaveError, StoreRow, extracted, make_store


class IndexedJob(Persistable):
    def __init__(self, name: str, cores: int | None = None) -> None:
        self.jobname = name
        if cores is not None:
            self.requested_cores = cores


class RequiredCoresRow(StoreRow, table=True):
    __tablename__ = "fileindex_required_cores"
    jobname: str | None = extracted(GET.jobname)
    cores: int = extracted(GET.requested_cores)


def test_missing_required_field_is_refused_like_in_sql(tmp_path: Path) -> None:
    store = make_store(str(tmp_path / "jobs"), row_model=RequiredCoresRow)
    with pytest.raises(SaveError) as info:
        store.save(IndexedJob("no cores"))
    assert info.value.field == "cores"
    assert store.list() == []
    store.close()


def test_plain_writer_does_not_spoil_the_typed_index(tmp_path: Path) -> None:
    directory = str(tmp_path / "jobs")
    typed = make_store(directory, row_model=RequiredCoresRow)
    typed.save(IndexedJob("typed", cores=4))
    plain = make_store(directory)  # no row model: writes base columns only
    plain.save(IndexedJob("plain", cores=16))
    plain.close()
    names = sorted(r.jobname for r in typed.query(RequiredCoresRow.cores > 2))
    assert names == ["plain", "typed"]
    assert [r.jobname for r in typed.query(RequiredCoresRow.cores == 16)] == ["plain"]
    typed.close()


def test_rows_of_the_last_commit_are_settled_on_close(tmp_path: Path) -> None:
    directory = str(tmp_path / "jobs")
    store = make_store(directory, row_model=RequiredCoresRow)
    store.save(IndexedJob("a", cores=1))
    store.close()
    reopened = make_store(directory, row_model=RequiredCoresRow)
    with reopened.index.engine.connect() as conn:
        pending = conn.exec_driver_sql("SELECT COUNT(*) FROM records WHERE _pending != 0")
        assert pending.scalar_one() == 0
    assert [r.cores for r in reopened.query()] == [1]
    reopened.close()


def test_damage_to_a_file_whose_row_is_not_settled_yet_is_not_indexed(tmp_path: Path) -> None:
    """A writer's rows stay staged until its next commit (or close): a reader
    that finds such a file changed must tell damage from a commit that died
    before its rename, and never index the damage as the record."""
    from typedstore import DamagedRecordError, FilesystemStore
    from typedstore.demo import DemoJob, DemoJobRow

    directory = tmp_path / "jobs"
    writer = FilesystemStore(directory, row_model=DemoJobRow)
    jobs = [DemoJob(f"job-{n}", 2, []) for n in range(3)]
    for job in jobs:
        job.execution.state = "RUNNING"
    ids = writer.save_many(jobs)  # the writer stays open: its rows are staged
    path = directory / str(ids[1])
    data = bytearray(path.read_bytes())
    data[data.index(b"job-1") + 4] ^= 0x01  # job-1 -> job-0: still a valid pickle
    path.write_bytes(bytes(data))

    reader = FilesystemStore(directory, row_model=DemoJobRow)
    rows = {r.id: (r.state, r.jobname) for r in reader.query()}
    assert rows[str(ids[1])] == ("RUNNING", "job-1")  # the writer's row, not the damage
    with pytest.raises(DamagedRecordError):
        reader.load(ids[1])
    assert [i for i, why in reader.unreadable() if "damaged" in why] == [str(ids[1])]
    assert reader.load(ids[0]).jobname == "job-0"


def test_an_index_row_describes_the_file_not_the_object_in_memory(tmp_path: Path) -> None:
    """A GC3Pie process rewrites a record this process holds (and has changed in
    memory without saving): the index, shared by every process, gets what the
    file holds."""
    import pickle

    from typedstore import FilesystemStore
    from typedstore.demo import DemoJob, DemoJobRow

    directory = tmp_path / "jobs"
    store = FilesystemStore(directory, row_model=DemoJobRow, gc3pie_compatible=True)
    job = DemoJob("job", 1, [])
    id_ = store.save(job)
    job.execution.state = "TERMINATED"  # in memory only
    rewritten = DemoJob("job", 1, [])
    rewritten.execution.state = "RUNNING"
    (directory / str(id_)).write_bytes(pickle.dumps(rewritten, protocol=2))  # as GC3Pie

    assert [(r.id, r.state) for r in store.query()] == [(str(id_), "RUNNING")]
    other = FilesystemStore(directory, row_model=DemoJobRow)
    assert [r.state for r in other.query()] == ["RUNNING"]
    assert store.load(id_) is job  # the map keeps the object this process holds
