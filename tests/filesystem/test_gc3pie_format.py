"""A jobs directory written the way GC3Pie writes it opens and loads without gc3libs.

The records are pickled here by hand: throwaway classes named
``gc3libs.persistence.idfactory.Id`` and ``gc3libs.persistence.serialization.Persistable``
live in ``sys.modules`` only while the files are written. References between
records are pickle persistent ids holding GC3Pie ``Id`` objects, as GC3Pie's
pickler writes them; files are named by id, and ``.OLD`` backups sit beside some.
"""

from __future__ import annotations

import io
import pickle
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from typedstore import FilesystemStore, Id, NotFoundError, Persistable, make_store

GC3_MODULES = (
    "gc3libs",
    "gc3libs.persistence",
    "gc3libs.persistence.idfactory",
    "gc3libs.persistence.serialization",
)


class Application(Persistable):
    """Stands for a user's job class (GC3Pie's would subclass gc3libs.Application)."""


@dataclass
class FakeGc3:
    Id: type
    Persistable: type


@contextmanager
def fake_gc3libs() -> Iterator[FakeGc3]:
    """Put stand-ins for GC3Pie's Id and Persistable in sys.modules, then take them out."""

    class GcId(str):
        _prefix: str
        _seqno: int

        def __new__(cls, obj: Any, prefix: str | None = None, seqno: int | None = None) -> Any:
            if prefix is None:
                prefix = type(obj).__name__
            instance = super().__new__(cls, f"{prefix}.{seqno}")
            instance._prefix = prefix
            instance._seqno = int(seqno) if seqno is not None else 0
            return instance

        def __getnewargs__(self) -> tuple[Any, ...]:  # type: ignore[override]
            return (None, self._prefix, self._seqno)

    class GcPersistable:
        pass

    for cls, module in ((GcId, GC3_MODULES[2]), (GcPersistable, GC3_MODULES[3])):
        cls.__module__ = module
    GcId.__name__ = GcId.__qualname__ = "Id"
    GcPersistable.__name__ = GcPersistable.__qualname__ = "Persistable"

    modules = {name: types.ModuleType(name) for name in GC3_MODULES}
    modules[GC3_MODULES[2]].Id = GcId  # type: ignore[attr-defined]
    modules[GC3_MODULES[3]].Persistable = GcPersistable  # type: ignore[attr-defined]
    assert not any(name in sys.modules for name in GC3_MODULES), "gc3libs is imported"
    sys.modules.update(modules)
    try:
        yield FakeGc3(GcId, GcPersistable)
    finally:
        for name in GC3_MODULES:
            sys.modules.pop(name, None)


class Gc3Pickler(pickle.Pickler):
    """Pickles like GC3Pie's FilesystemStore: other objects with an id become references."""

    def __init__(self, stream: io.BytesIO, protocol: int, root: Any) -> None:
        super().__init__(stream, protocol)
        self.root = root

    def persistent_id(self, obj: Any) -> Any:
        if obj is self.root or isinstance(obj, type):
            return None
        return getattr(obj, "persistent_id", None)


def write_record(directory: Path, name: str, obj: Any, protocol: int) -> None:
    buffer = io.BytesIO()
    Gc3Pickler(buffer, protocol, obj).dump(obj)
    (directory / name).write_bytes(buffer.getvalue())


def make(cls: type, persistent_id: Any, **state: Any) -> Any:
    obj = cls.__new__(cls)
    obj.__dict__.update(state, persistent_id=persistent_id)
    return obj


#: Every id the directory holds once (Application.2 only as a .OLD backup).
IDS = [
    "Application.1", "Application.2", "Application.4", "Application.10",
    "Persistable.3", "Persistable.5", "Persistable.6",
]
LARGEST_SEQNO = 10


@pytest.fixture(params=[2, 4], ids=["protocol2", "protocol4"])
def gc3_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    directory = tmp_path / "gc3jobs"
    directory.mkdir()
    protocol = request.param
    with fake_gc3libs() as gc3:
        def gid(prefix: str, seqno: int) -> Any:
            return gc3.Id(None, prefix, seqno)

        shared = make(gc3.Persistable, gid("Persistable", 3), data="shared input")
        first = make(Application, gid("Application", 1), jobname="first", input=shared,
                     inputs=[shared, shared])
        second = make(Application, gid("Application", 2), jobname="second", input=shared)
        fourth = make(Application, gid("Application", 4), jobname="fourth")
        fourth_old = make(Application, gid("Application", 4), jobname="fourth, older copy")
        left = make(gc3.Persistable, gid("Persistable", 5), side="left")
        right = make(gc3.Persistable, gid("Persistable", 6), side="right", peer=left)
        left.peer = right
        tenth = make(Application, gid("Application", 10), jobname="tenth", sibling=second)

        for name, obj in [
            ("Persistable.3", shared),
            ("Application.1", first),
            ("Application.2.OLD", second),  # GC3Pie died between its two renames
            ("Application.4", fourth),
            ("Application.4.OLD", fourth_old),  # a stale backup beside the record
            ("Persistable.5", left),
            ("Persistable.6", right),
            ("Application.10", tenth),
        ]:
            write_record(directory, name, obj, protocol)
    assert "gc3libs" not in sys.modules
    return directory


def test_fake_gc3_records_name_gc3libs_classes(gc3_dir: Path) -> None:
    data = (gc3_dir / "Persistable.3").read_bytes()
    assert b"gc3libs.persistence.serialization" in data
    assert b"gc3libs.persistence.idfactory" in data
    with pytest.raises(ModuleNotFoundError):
        pickle.loads(data)  # plain pickle cannot load it: gc3libs is absent


def test_list_gives_every_id_once(gc3_dir: Path) -> None:
    ids = FilesystemStore(gc3_dir).list()
    assert sorted(map(str, ids)) == sorted(IDS)
    assert len(ids) == len(IDS)
    assert all(isinstance(id_, Id) for id_ in ids)


def test_every_record_loads_with_its_file_name_as_id(gc3_dir: Path) -> None:
    store = make_store(str(gc3_dir))
    for name in IDS:
        obj = store.load(name)
        assert obj.persistent_id == name
        assert isinstance(obj.persistent_id, Id)
        assert isinstance(obj, Persistable)
    assert "gc3libs" not in sys.modules


def test_ids_from_list_load(gc3_dir: Path) -> None:
    store = make_store(f"file://{gc3_dir}")
    loaded = {str(id_): store.load(id_) for id_ in store.list()}
    assert loaded["Application.1"].jobname == "first"
    assert loaded["Persistable.3"].data == "shared input"


def test_gc3_persistable_loads_as_typedstore_persistable(gc3_dir: Path) -> None:
    shared = FilesystemStore(gc3_dir).load("Persistable.3")
    assert type(shared) is Persistable
    assert shared.data == "shared input"
    assert shared.changed is False


def test_backup_stands_for_missing_record(gc3_dir: Path) -> None:
    second = FilesystemStore(gc3_dir).load("Application.2")
    assert second.jobname == "second"
    assert second.persistent_id == "Application.2"


def test_backup_beside_record_is_ignored(gc3_dir: Path) -> None:
    assert FilesystemStore(gc3_dir).load("Application.4").jobname == "fourth"


def test_references_restore_shared_identity(gc3_dir: Path) -> None:
    store = FilesystemStore(gc3_dir)
    first = store.load("Application.1")
    assert first.input is first.inputs[0] is first.inputs[1]
    assert store.load("Persistable.3") is first.input
    assert store.load("Application.2").input is first.input
    tenth = store.load("Application.10")
    assert tenth.sibling is store.load("Application.2")


def test_reference_cycle_restores_identity(gc3_dir: Path) -> None:
    store = FilesystemStore(gc3_dir)
    left = store.load("Persistable.5")
    assert left.peer.side == "right"
    assert left.peer.peer is left
    assert store.load("Persistable.6") is left.peer


def test_new_ids_are_larger_than_existing_ones(gc3_dir: Path) -> None:
    store = FilesystemStore(gc3_dir)
    new_ids = [store.save(Application()), store.save({"plain": "dict"}), store.save(Application())]
    for id_ in new_ids:
        assert Id.parse(str(id_))._seqno > LARGEST_SEQNO
    assert len(set(new_ids)) == 3
    expected = sorted(IDS + [str(id_) for id_ in new_ids])
    assert sorted(map(str, FilesystemStore(gc3_dir).list())) == expected


def test_updating_old_records_keeps_them_loadable(gc3_dir: Path) -> None:
    store = FilesystemStore(gc3_dir)
    first = store.load("Application.1")
    first.jobname = "first, edited"
    assert store.save(first) == "Application.1"
    second = store.load("Application.2")
    second.jobname = "second, rewritten"
    assert store.save(second) == "Application.2"
    assert (gc3_dir / "Application.2").exists()

    fresh = FilesystemStore(gc3_dir)
    assert sorted(map(str, fresh.list())) == sorted(IDS)
    edited = fresh.load("Application.1")
    assert edited.jobname == "first, edited"
    assert edited.input is fresh.load("Persistable.3")
    assert fresh.load("Application.2").jobname == "second, rewritten"
    assert fresh.load("Application.2").input is edited.input


def test_removing_a_backup_only_record(gc3_dir: Path) -> None:
    store = FilesystemStore(gc3_dir)
    store.remove("Application.2")
    fresh = FilesystemStore(gc3_dir)
    assert "Application.2" not in fresh.list()
    with pytest.raises(NotFoundError):
        fresh.load("Application.2")
    assert not (gc3_dir / "Application.2.OLD").exists()


def test_removing_a_record_with_backup(gc3_dir: Path) -> None:
    FilesystemStore(gc3_dir).remove("Application.4")
    fresh = FilesystemStore(gc3_dir)
    assert "Application.4" not in fresh.list()
    with pytest.raises(NotFoundError):
        fresh.load("Application.4")  # the stale backup must not come back


def test_torn_record_falls_back_to_backup(gc3_dir: Path) -> None:
    with fake_gc3libs() as gc3:
        older = make(Application, gc3.Id(None, "Application", 7), jobname="seventh, saved")
        newer = make(Application, gc3.Id(None, "Application", 7), jobname="seventh, torn")
        write_record(gc3_dir, "Application.7.OLD", older, 4)
        write_record(gc3_dir, "Application.7", newer, 4)
    torn = gc3_dir / "Application.7"
    torn.write_bytes(torn.read_bytes()[:20])  # GC3Pie was killed while dumping
    store = FilesystemStore(gc3_dir)
    assert [str(id_) for id_ in store.list()].count("Application.7") == 1
    assert store.load("Application.7").jobname == "seventh, saved"
