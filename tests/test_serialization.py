"""Loading side of serialization: class aliases, the allow-list, corrupt payloads.

File-store specific: records are written by a FilesystemStore and, for the
corrupt-payload tests, overwritten by hand.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
import types
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from typedstore import (
    FilesystemStore,
    LoadError,
    NotFoundError,
    Persistable,
    UnsafeLoadError,
    register_class_alias,
)


class Renamed(Persistable):
    """The new home of a class that records name by an old path."""


class Allowed(Persistable):
    pass


class Refused(Persistable):
    pass


class Evaluates:
    """Unpickles by calling builtins.eval: what an attacker would plant."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (eval, ("6 * 7",))


@contextmanager
def throwaway_class(module_name: str, class_name: str) -> Iterator[type]:
    """A class importable as ``module_name.class_name`` only inside the block."""
    parts = module_name.split(".")
    names = [".".join(parts[: i + 1]) for i in range(len(parts))]
    assert not any(name in sys.modules for name in names)
    for name in names:
        sys.modules[name] = types.ModuleType(name)
    cls = type(class_name, (), {"__module__": module_name})
    setattr(sys.modules[module_name], class_name, cls)
    try:
        yield cls
    finally:
        for name in names:
            del sys.modules[name]


def write_pickle(path: Path, obj: Any) -> None:
    buffer = io.BytesIO()
    pickle.Pickler(buffer, 4).dump(obj)
    path.write_bytes(buffer.getvalue())


# ---------------------------------------------------------------- class aliases


@pytest.mark.parametrize("target", ["class", "dotted", "colon"])
def test_register_class_alias_loads_old_records_as_new_class(tmp_path: Path, target: str) -> None:
    old_module = f"legacy_{uuid.uuid4().hex[:8]}.models"
    store = FilesystemStore(tmp_path / "jobs")
    with throwaway_class(old_module, "OldJob") as old_cls:
        obj = old_cls()
        obj.name = "from the old days"
        id_ = store.save(obj)
    assert old_module.encode() in (tmp_path / "jobs" / str(id_)).read_bytes()

    with pytest.raises(LoadError, match=old_module.split(".")[0]):
        FilesystemStore(tmp_path / "jobs").load(id_)  # the old class is gone

    new: Any = {
        "class": Renamed,
        "dotted": f"{__name__}.Renamed",
        "colon": f"{__name__}:Renamed",
    }[target]
    register_class_alias(f"{old_module}.OldJob", new)
    loaded = FilesystemStore(tmp_path / "jobs").load(id_)
    assert type(loaded) is Renamed
    assert loaded.name == "from the old days"
    assert loaded.persistent_id == id_


def test_alias_applies_to_referenced_records(tmp_path: Path) -> None:
    old_module = f"legacy_{uuid.uuid4().hex[:8]}"
    store = FilesystemStore(tmp_path / "jobs")
    with throwaway_class(old_module, "Part") as part_cls:
        part = part_cls()
        part.persistent_id = None  # makes it an external reference once saved
        part.label = "part"
        part_id = store.save(part)
        holder_id = store.save({"part": part, "again": part})
    register_class_alias(f"{old_module}.Part", Renamed)
    fresh = FilesystemStore(tmp_path / "jobs")
    holder = fresh.load(holder_id)
    assert type(holder["part"]) is Renamed
    assert holder["part"] is holder["again"] is fresh.load(part_id)


def test_alias_needs_a_dotted_name() -> None:
    with pytest.raises(ValueError):
        register_class_alias("NoModule", Renamed)


# ---------------------------------------------------------------- allow-list


def test_allow_list_refuses_unlisted_class(tmp_path: Path) -> None:
    writer = FilesystemStore(tmp_path / "jobs")
    refused_id = writer.save(Refused())
    allowed_id = writer.save(Allowed())
    plain_id = writer.save({"numbers": [1, 2.5], "when": (None, True)})

    reader = FilesystemStore(tmp_path / "jobs", allowed_classes=[f"{__name__}.Allowed"])
    assert type(reader.load(allowed_id)) is Allowed
    assert reader.load(plain_id) == {"numbers": [1, 2.5], "when": (None, True)}
    with pytest.raises(UnsafeLoadError) as info:
        reader.load(refused_id)
    error = info.value
    assert isinstance(error, LoadError)
    assert error.global_name == f"{__name__}.Refused"
    assert error.id == refused_id
    assert f"{__name__}.Refused" in str(error)
    assert str(refused_id) in str(error)


def test_allow_list_by_module(tmp_path: Path) -> None:
    writer = FilesystemStore(tmp_path / "jobs")
    ids = [writer.save(Allowed()), writer.save(Refused())]
    reader = FilesystemStore(tmp_path / "jobs", allowed_classes=[f"{__name__}.*"])
    assert [type(reader.load(id_)) for id_ in ids] == [Allowed, Refused]


def test_allow_list_checks_referenced_records(tmp_path: Path) -> None:
    writer = FilesystemStore(tmp_path / "jobs")
    container = Allowed()
    container.child = Refused()
    container_id = writer.save(container)
    reader = FilesystemStore(tmp_path / "jobs", allowed_classes=[f"{__name__}.Allowed"])
    with pytest.raises(UnsafeLoadError) as info:
        reader.load(container_id)
    assert info.value.global_name == f"{__name__}.Refused"


def test_allow_list_refuses_dangerous_builtins(tmp_path: Path) -> None:
    writer = FilesystemStore(tmp_path / "jobs")
    id_ = writer.save(Evaluates())
    assert FilesystemStore(tmp_path / "jobs").load(id_) == 42  # no allow-list: anything goes
    reader = FilesystemStore(tmp_path / "jobs", allowed_classes=[f"{__name__}.*"])
    with pytest.raises(UnsafeLoadError) as info:
        reader.load(id_)
    assert info.value.global_name == "builtins.eval"
    assert info.value.id == id_


def test_allow_list_refuses_os_system(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "jobs")
    id_ = store.save({"placeholder": True})
    marker = tmp_path / "pwned"
    # What an attacker with write access to the directory would plant.
    payload = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    (tmp_path / "jobs" / str(id_)).write_bytes(payload)
    reader = FilesystemStore(tmp_path / "jobs", allowed_classes=[f"{__name__}.Allowed"])
    with pytest.raises(UnsafeLoadError) as info:
        reader.load(id_)
    assert info.value.global_name in {"os.system", "posix.system"}
    assert not marker.exists()


def test_allow_list_accepts_a_callable(tmp_path: Path) -> None:
    writer = FilesystemStore(tmp_path / "jobs")
    ids = [writer.save(Allowed()), writer.save(Refused())]
    asked: list[tuple[str, str]] = []

    def allow(module: str, name: str) -> bool:
        asked.append((module, name))
        return name != "Refused"

    reader = FilesystemStore(tmp_path / "jobs", allowed_classes=allow)
    assert type(reader.load(ids[0])) is Allowed
    with pytest.raises(UnsafeLoadError):
        reader.load(ids[1])
    assert (__name__, "Refused") in asked


# ---------------------------------------------------------------- corrupt payloads


def _garbage() -> bytes:
    return b"\x93\x00 this is not a pickle \xff" + os.urandom(16)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda good: b"",
        lambda good: good[: len(good) // 2],
        lambda good: _garbage(),
        lambda good: b"garbage",
        lambda good: b"\x80\x04\x95" + b"\x00" * 12,
    ],
    ids=["empty", "truncated", "random", "text", "header-only"],
)
def test_corrupt_payload_raises_load_error_naming_id(tmp_path: Path, corrupt: Any) -> None:
    store = FilesystemStore(tmp_path / "jobs")
    good = Allowed()
    good.values = list(range(50))
    id_ = store.save(good)
    other_id = store.save(Allowed())
    path = tmp_path / "jobs" / str(id_)
    path.write_bytes(corrupt(path.read_bytes()))

    fresh = FilesystemStore(tmp_path / "jobs")
    with pytest.raises(LoadError) as info:
        fresh.load(id_)
    assert not isinstance(info.value, NotFoundError)
    assert info.value.id == id_
    assert str(id_) in str(info.value)
    assert set(fresh.list()) == {id_, other_id}  # still listed: it is there, just broken
    assert type(fresh.load(other_id)) is Allowed  # the rest of the store is fine


def test_corrupt_child_is_reported_when_loading_container(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "jobs")
    container = Allowed()
    container.child = Allowed()
    container_id = store.save(container)
    child_id = container.child.persistent_id
    (tmp_path / "jobs" / str(child_id)).write_bytes(b"not a pickle")
    with pytest.raises(LoadError) as info:
        FilesystemStore(tmp_path / "jobs").load(container_id)
    assert str(child_id) in str(info.value)


def test_payload_naming_missing_class_raises_load_error(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "jobs")
    id_ = store.save({"placeholder": True})
    module = f"gone_{uuid.uuid4().hex[:8]}"
    with throwaway_class(module, "Vanished") as cls:
        write_pickle(tmp_path / "jobs" / str(id_), cls())
    with pytest.raises(LoadError) as info:
        FilesystemStore(tmp_path / "jobs").load(id_)
    assert not isinstance(info.value, NotFoundError)
    assert info.value.id == id_
    assert module in str(info.value)


# ---------------------------------------------------------------- Persistable equality


def test_persistables_without_id_are_equal_only_to_themselves() -> None:
    a, b = Allowed(), Allowed()
    a.persistent_id = None  # GC3Pie code sometimes initialises it so
    b.persistent_id = None
    assert a == a
    assert a != b
    assert [a].count(b) == 0
