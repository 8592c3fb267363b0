"""The allow-list holds against planted records (issue 12, item 1).

Each planted record of :mod:`tests.security.planted` runs a command when
unpickled freely. Written into a real store (a record file of the file store,
a row of each SQL backend), it must be refused by ``load`` and by a query that
returns objects, with an UnsafeLoadError naming the record and the global,
and the marker file the command would create must stay absent.
"""

from __future__ import annotations

import pickle
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from typedstore import FilesystemStore, LoadError, SqlStore, Store, UnsafeLoadError
from typedstore.allowlist import SAFE_GLOBALS, AllowList, allowed_classes
from typedstore.integrity import CHECKSUM_COLUMN

from .planted import _text, planted, planted_global, tampering
from .victim import Job

VICTIM = Job.__module__  # tests.security.victim, or security.victim (pytest's rootdir)
ALLOWED = [f"{VICTIM}.*"]


def _text_pid(id_: Any) -> bytes:
    return _text(str(id_))


def plant(store: Store, id_: Any, payload: bytes) -> None:
    """Overwrite record ``id_``'s payload with ``payload``, as a hostile
    writer with access to the storage would: its checksum too (anyone can
    compute a CRC-32), but not its MAC (that needs the signing key)."""
    if isinstance(store, FilesystemStore):
        Path(store.directory, str(id_)).write_bytes(payload)
        with store.index.engine.begin() as conn:
            conn.execute(sa.update(store.index.table)
                         .where(store.index.table.c.id == str(id_))
                         .values({CHECKSUM_COLUMN: zlib.crc32(payload)}))
    else:
        assert isinstance(store, SqlStore)
        with store.engine.begin() as conn:
            conn.execute(sa.update(store.table).where(store.table.c.id == int(id_))
                         .values({"data": payload, CHECKSUM_COLUMN: zlib.crc32(payload)}))


@pytest.mark.parametrize("name", sorted(planted("M")))
def test_planted_record_is_refused(name: str, open_store: Callable[..., Store],
                                   tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    payload = planted(str(marker), VICTIM)[name]
    writer = open_store()
    good = writer.save(Job("good"))
    bad = writer.save(Job("to be replaced by the planted payload"))
    plant(writer, bad, payload)
    reader = open_store(allowed_classes=ALLOWED)
    with pytest.raises(UnsafeLoadError) as info:
        reader.load(bad)
    assert str(info.value.id) == str(bad) and f"record {bad}" in str(info.value)
    assert info.value.global_name and info.value.global_name in str(info.value)
    with pytest.raises(UnsafeLoadError):
        list(open_store(allowed_classes=ALLOWED).query().objects())
    assert not marker.exists(), f"{name}: the planted command ran"
    loaded = reader.load(good)  # the rest of the store is unharmed
    assert loaded.name == "good" and isinstance(loaded.state, Job.State)


def test_listing_classes_or_deriving_them() -> None:
    """Classes, exact names, nested classes and derived lists admit exactly them."""
    class Base:
        pass

    class Child(Base):
        pass

    derived = allowed_classes(Base)
    for allow in (derived, AllowList([Base, Child])):
        assert allow(Child.__module__, Child.__qualname__)
    assert not AllowList([Base])(Child.__module__, Child.__qualname__)
    assert AllowList([f"{VICTIM}:Job.State"])(VICTIM, "Job.State")
    package = AllowList(ALLOWED)
    assert package(VICTIM, "Job") and package(VICTIM,
                                                               "Job.State")
    assert not package(VICTIM, "os.system")
    assert not package(VICTIM, "Job.__init__.__globals__")
    assert not package(VICTIM + "x", "Job") and not package("os", "system")
    assert not package.admits(VICTIM, "run_command", print)
    for bad in ("nodots", ".*", "a b.*"):
        with pytest.raises(ValueError):
            AllowList([bad])
    with pytest.raises(TypeError):
        AllowList([42])  # type: ignore[list-item]


def test_safe_globals_are_values_or_exceptions() -> None:
    """No function in the vetted set but the reconstruction helpers pickle
    itself uses; no module-level wildcard at all."""
    import importlib

    helpers = {("copyreg", "_reconstructor"), ("copyreg", "__newobj__"),
               ("copyreg", "__newobj_ex__"), ("_codecs", "encode")}
    for module, name in SAFE_GLOBALS - helpers:
        obj = getattr(importlib.import_module(module), name)
        assert isinstance(obj, type), f"{module}.{name} is not a class"
        assert "." not in name
    for dangerous in [("builtins", "eval"), ("builtins", "getattr"), ("builtins", "type"),
                      ("builtins", "__import__"), ("os", "system"), ("builtins", "open")]:
        assert dangerous not in SAFE_GLOBALS


@pytest.mark.parametrize("name", sorted(tampering("M", b"")))
def test_planted_record_changes_nothing_it_did_not_make(
        name: str, open_store: Callable[..., Store]) -> None:
    """Under an allow-list a record only makes objects: BUILD (setattr) on a
    class it names would change that class for the whole process (a planted
    ``Job.command`` runs later, from the program's own code; a planted
    ``Persistable.persistent_id`` makes every new object overwrite a victim),
    and on another record's object it would change that record in memory."""
    import sys

    from typedstore.serialization import Persistable

    from .victim import Color

    codec_imported = "encodings.uu_codec" in sys.modules
    writer = open_store()
    good = writer.save(Job("good"))
    bad = writer.save(Job("to be replaced by the planted payload"))
    reference = (_text_pid(good) if isinstance(writer, FilesystemStore)
                 else pickle.BININT + struct.pack("<i", int(good)))
    plant(writer, bad, tampering(VICTIM, reference)[name])
    reader = open_store(allowed_classes=ALLOWED)
    target = reader.load(good)
    with pytest.raises(LoadError) as info:
        reader.load(bad)
    assert f"record {bad}" in str(info.value)
    assert "name" not in vars(Job) and "persistent_id" not in vars(Persistable)
    assert target.name == "good" and reader.load(good) is target
    assert str(target.persistent_id) == str(good) and not target.changed
    assert getattr(Job("new"), "persistent_id", None) is None
    assert Color(1).name == "RED"
    assert codec_imported or "encodings.uu_codec" not in sys.modules


def test_a_wildcard_imports_no_module(open_store: Callable[..., Store], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """``pkg.*`` admits classes of pkg's modules the program imported; a record
    naming another module of the package (``pkg.__main__``, a script) is refused
    before it is imported, since importing it runs its code."""
    package = tmp_path / "wildpkg"
    package.mkdir()
    marker = tmp_path / "imported"
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Job:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    writer = open_store()
    bad = writer.save(Job("to be replaced by the planted payload"))
    plant(writer, bad, planted_global("wildpkg.__main__", "Job"))
    reader = open_store(allowed_classes=["wildpkg.*"])
    with pytest.raises(UnsafeLoadError, match="not imported") as info:
        reader.load(bad)
    assert info.value.global_name == "wildpkg.__main__.Job"
    assert not marker.exists()


def test_allowed_classes_argument_forms(open_store: Callable[..., Store],
                                        tmp_path: Path) -> None:
    """One class is a list of one (it used to pass for an allow function and
    admit everything); a module, a number, and entries that are not classes
    are refused when the store is made."""
    import os

    marker = tmp_path / "marker"
    writer = open_store()
    bad = writer.save(Job("to be replaced by the planted payload"))
    plant(writer, bad, planted(str(marker), VICTIM)["os.system"])
    with pytest.raises(UnsafeLoadError):
        open_store(allowed_classes=Job).load(bad)
    # A policy function admits a global only by answering True itself.
    with pytest.raises(UnsafeLoadError, match="answered 'no'"):
        open_store(allowed_classes=lambda module, name: "no").load(bad)
    assert not marker.exists()
    for wrong in (os, 42, b"mypkg.*"):
        with pytest.raises(TypeError, match="allowed_classes"):
            open_store(allowed_classes=wrong)
    with pytest.raises(ValueError, match="not a class"):
        AllowList(["os.system"])
    with pytest.raises(ValueError, match="not a class"):
        AllowList([f"{VICTIM}.run_command"])


def test_rewrite_skips_and_names_a_planted_record(open_store: Callable[..., Store],
                                                  tmp_path: Path) -> None:
    """``rewrite_all`` (``typedstore rewrite --allow``) under an allow-list: the
    planted record is refused, skipped and named; the others are rewritten."""
    from typedstore import rewrite_all

    marker = tmp_path / "marker"
    writer = open_store()
    good = writer.save(Job("good"))
    bad = writer.save(Job("to be replaced by the planted payload"))
    plant(writer, bad, planted(str(marker), VICTIM)["os.system"])
    skipped = rewrite_all(open_store(allowed_classes=ALLOWED), progress=False)
    assert [str(id_) for id_, _ in skipped] == [str(bad)] and "os.system" in skipped[0][1]
    assert not marker.exists()
    assert open_store(allowed_classes=ALLOWED).load(good).name == "good"
