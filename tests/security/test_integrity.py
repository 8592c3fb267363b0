"""Checksums and signatures (issue 12, items 2 and 3), on every backend.

Damage: a payload whose bytes changed after it was written is a
DamagedRecordError naming the record and saying "damaged"; nothing of it is
loaded, the other records load as they were. Signing: a record planted,
modified or copied under another id without the key is refused before
unpickling; keys rotate with ``resign``; unsigned stores are unaffected.
"""

from __future__ import annotations

import pickle
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from typedstore import (
    DamagedRecordError,
    FilesystemStore,
    SignatureError,
    Store,
    UnsafeLoadError,
)
from typedstore.integrity import MAC_LENGTH, SIGNING_KEYS_ENV, resign

from .planted import planted
from .samples import Sample, samples
from .storage import insert_raw, read_raw, write_raw

KEY1 = "first key: 32 bytes of secret.."
KEY2 = "second key: also long enough..."

OpenStore = Callable[..., Store]


def fill(store: Store) -> list[Any]:
    """Save the samples (the second references the first); their ids in order."""
    objs = samples()
    return [store.save(obj) for obj in objs]


def planted_id(store: Store) -> Any:
    return "Sample.999999" if isinstance(store, FilesystemStore) else 999999


# ---------------------------------------------------------------- damage


def flip_in_float(data: bytes, value: float) -> bytes:
    """``data`` with the lowest bit of the pickled ``value`` flipped: still a valid
    pickle, of another float."""
    packed = struct.pack(">d", value)
    at = data.index(packed) + len(packed) - 1
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1:]


def test_damaged_payload_is_a_load_error_naming_it(open_store: OpenStore) -> None:
    writer = open_store()
    leaf, target, other = fill(writer)
    writer.close()
    probe = open_store()
    data, stored, _ = read_raw(probe, target)
    assert stored == zlib.crc32(data)
    damaged = flip_in_float(data, 3.141592653589793)
    # Without its checksum (a record written before checksums) the damage loads
    # silently as another number: what the checksum is there to catch.
    write_raw(probe, target, data=damaged, checksum=None)
    assert open_store().load(target).value != 3.141592653589793
    write_raw(probe, target, checksum=stored)

    reader = open_store()
    with pytest.raises(DamagedRecordError) as info:
        reader.load(target)
    assert info.value.id == target
    assert "damaged" in str(info.value) and f"record {target} " in str(info.value)
    with pytest.raises(DamagedRecordError):
        list(open_store().query().objects())
    expected = samples()
    assert reader.load(leaf).content() == expected[0].content()
    assert reader.load(other).content() == expected[2].content()
    # Truncated, the same.
    write_raw(probe, target, data=data[: len(data) // 2])
    with pytest.raises(DamagedRecordError):
        open_store().load(target)
    # Put back, it loads as it was.
    write_raw(probe, target, data=data)
    assert open_store().load(target).content() == expected[1].content()


def test_file_store_loads_the_backup_of_a_damaged_record(tmp_path: Path) -> None:
    with FilesystemStore(tmp_path / "jobs") as writer:
        _, target, _ = fill(writer)
    with FilesystemStore(tmp_path / "jobs") as probe:
        data, _, _ = read_raw(probe, target)
        write_raw(probe, target, data=flip_in_float(data, 3.141592653589793))
        Path(probe.directory, f"{target}.OLD").write_bytes(data)
    with FilesystemStore(tmp_path / "jobs") as reader:
        assert reader.load(target).content() == samples()[1].content()


def test_checksum_is_written_by_every_save(open_store: OpenStore) -> None:
    store = open_store()
    ids = fill(store)
    obj = store.load(ids[2])
    obj.value = 1.5
    store.save(obj)
    for id_ in ids:
        data, stored, mac = read_raw(store, id_)
        assert stored == zlib.crc32(data) and mac is None


# ---------------------------------------------------------------- signing


def test_signed_store_refuses_what_was_written_without_the_key(open_store: OpenStore,
                                                               tmp_path: Path) -> None:
    writer = open_store(signing_keys=[KEY1])
    a, b, c = fill(writer)
    writer.close()
    probe = open_store(signing_keys=[])
    for id_ in (a, b, c):
        _, _, mac = read_raw(probe, id_)
        assert mac is not None and len(mac) == MAC_LENGTH
    expected = samples()
    assert open_store(signing_keys=[KEY1]).load(b).content() == expected[1].content()
    assert open_store(signing_keys=[]).load(b).content() == expected[1].content()

    # Modified without the key (checksum made to match: anyone can compute it).
    original = read_raw(probe, c)
    forged = pickle.dumps(Sample("forged", 0.0, []))
    write_raw(probe, c, data=forged, checksum=zlib.crc32(forged))
    with pytest.raises(SignatureError) as info:
        open_store(signing_keys=[KEY1]).load(c)
    assert info.value.id == c and info.value.reason == "wrong" and f"record {c} " in str(
        info.value)
    write_raw(probe, c, data=original[0], checksum=original[1])

    # A valid record (payload, checksum, MAC) copied under another id.
    a_data, a_checksum, a_mac = read_raw(probe, a)
    write_raw(probe, c, data=a_data, checksum=a_checksum, mac=a_mac)
    with pytest.raises(SignatureError):
        open_store(signing_keys=[KEY1]).load(c)
    write_raw(probe, c, data=original[0], checksum=original[1], mac=original[2])
    assert open_store(signing_keys=[KEY1]).load(c).content() == expected[2].content()

    # Planted as a new record: no MAC at all; found by queries, refused on load.
    marker = tmp_path / "marker"
    new = planted_id(probe)
    insert_raw(probe, new, planted(str(marker), Sample.__module__)["os.system"])
    reader = open_store(signing_keys=[KEY1])
    with pytest.raises(SignatureError) as info:
        reader.load(new)
    assert info.value.reason == "missing"
    with pytest.raises(SignatureError):
        list(open_store(signing_keys=[KEY1]).query().objects())
    assert not marker.exists()
    assert reader.load(a).content() == expected[0].content()


@pytest.mark.parametrize("name", sorted(planted("M")))
def test_planted_records_are_refused_under_signing(name: str, open_store: OpenStore,
                                                    tmp_path: Path) -> None:
    """No allow-list here: the signature alone keeps the payload from running."""
    marker = tmp_path / "marker"
    writer = open_store(signing_keys=[KEY1])
    target = writer.save(Sample("to be replaced", 1.0, []))
    writer.close()
    payload = planted(str(marker), Sample.__module__)[name]
    write_raw(open_store(signing_keys=[]), target, data=payload,
              checksum=zlib.crc32(payload))
    with pytest.raises(SignatureError):
        open_store(signing_keys=[KEY1]).load(target)
    with pytest.raises(UnsafeLoadError):
        list(open_store(signing_keys=[KEY1]).query().objects())
    assert not marker.exists(), f"{name}: the planted command ran"


def test_key_rotation_resigns_the_store(open_store: OpenStore) -> None:
    writer = open_store(signing_keys=[KEY1])
    ids = fill(writer)
    writer.close()
    with pytest.raises(SignatureError):
        open_store(signing_keys=[KEY2]).load(ids[0])
    # A record tampered with meanwhile is never re-signed.
    probe = open_store(signing_keys=[])
    forged = pickle.dumps(Sample("forged", 0.0, []))
    write_raw(probe, ids[2], data=forged, checksum=zlib.crc32(forged))

    rotating = open_store(signing_keys=[KEY2, KEY1])
    assert rotating.load(ids[1]).content() == samples()[1].content()
    report = resign(rotating)
    assert report.signed == 2 and report.current == 0
    assert [id_ for id_, _ in report.refused] == [ids[2]]
    assert "none of the keys" in report.refused[0][1]
    assert resign(rotating).current == 2

    new_only = open_store(signing_keys=[KEY2])
    assert new_only.load(ids[1]).content() == samples()[1].content()
    with pytest.raises(SignatureError):
        new_only.load(ids[2])
    with pytest.raises(SignatureError):
        open_store(signing_keys=[KEY1]).load(ids[0])


def test_turning_signing_on_for_an_unsigned_store(open_store: OpenStore) -> None:
    writer = open_store(signing_keys=[])
    ids = fill(writer)
    writer.close()
    signed = open_store(signing_keys=[KEY1])
    with pytest.raises(SignatureError) as info:
        signed.load(ids[0])
    assert info.value.reason == "missing"
    report = resign(signed)
    assert report.signed == 0 and len(report.refused) == 3
    report = resign(signed, sign_unsigned=True)
    assert report.signed == 3 and not report.refused
    again = open_store(signing_keys=[KEY1])
    assert [again.load(i).content() for i in ids] == [s.content() for s in samples()]


def test_keys_from_the_environment(open_store: OpenStore,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SIGNING_KEYS_ENV, f"{KEY1}, {KEY2}")
    store = open_store()
    ids = fill(store)
    assert read_raw(store, ids[0])[2] is not None
    assert open_store(signing_keys=[KEY1]).load(ids[0]).name == "leaf"
    unsigned = open_store(signing_keys=[])  # [] turns signing off, whatever the environment
    new = unsigned.save(Sample("unsigned", 0.5, []))
    assert read_raw(unsigned, new)[2] is None
    with pytest.raises(SignatureError):
        open_store().load(new)


def test_keys_are_checked() -> None:
    from typedstore.integrity import Signer, make_signer

    with pytest.raises(ValueError, match="at least 16"):
        Signer(["short"])
    with pytest.raises(TypeError):
        make_signer(KEY1)  # type: ignore[arg-type]
    assert make_signer([]) is None


def test_a_store_shared_with_gc3pie_keeps_no_checksum_gc3pie_would_leave_stale(
        open_store: OpenStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GC3Pie rewrites a record (a row's data, a file) without knowing its checksum:
    in a store shared with it, the rewrite loads, never as damaged."""
    monkeypatch.setenv("GC3PIE_ID_FILE", str(tmp_path / "gc3pie-next-id.txt"))
    store = open_store(gc3pie_compatible=True)
    target = store.save(Sample("typedstore's", 1.0, []))
    store.close()
    probe = open_store(gc3pie_compatible=True)
    if not isinstance(probe, FilesystemStore):
        assert read_raw(probe, target)[1] is None
    rewritten = pickle.dumps(Sample("gc3pie's", 2.0, []), protocol=2)
    write_raw(probe, target, data=rewritten)  # checksum and MAC columns untouched
    assert open_store(gc3pie_compatible=True).load(target).name == "gc3pie's"


def test_a_key_that_is_not_unicode_is_a_clear_error() -> None:
    from typedstore.integrity import Signer

    with pytest.raises(ValueError, match="signing key 2 is not valid Unicode"):
        Signer(["k" * 32, "\udc80" * 32])


def test_resign_a_file_whose_stamp_changed_but_not_its_bytes(tmp_path: Path) -> None:
    """A record file touched, or copied back, keeps its bytes and its checksum
    but not its stamp: it still verifies, and re-signing moves it to the new key
    (it was refused as "changed by other writers", then unreadable once the old
    key was dropped)."""
    import os

    from typedstore import FilesystemStore

    old, new = "an old signing key, 32 bytes....", "the new signing key, 32 bytes..."
    store = FilesystemStore(tmp_path / "jobs", signing_keys=[old])
    id_ = store.save({"n": 1})
    store.close()
    path = tmp_path / "jobs" / str(id_)
    os.utime(path, ns=(1, 1))
    rotating = FilesystemStore(tmp_path / "jobs", signing_keys=[new, old])
    report = resign(rotating)
    assert (report.signed, report.refused) == (1, [])
    assert FilesystemStore(tmp_path / "jobs", signing_keys=[new]).load(id_) == {"n": 1}
    # A file whose bytes changed is not re-signed.
    path.write_bytes(path.read_bytes().replace(b"\x01", b"\x02"))
    report = resign(FilesystemStore(tmp_path / "jobs", signing_keys=[new, old]))
    assert report.signed == 0 and len(report.refused) == 1
