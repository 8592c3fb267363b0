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
