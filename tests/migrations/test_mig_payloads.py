"""Payload evolution: renamed classes, classes that are gone, upgrade hooks, rewrite_all.

Records of an "old" class are written with a throwaway class living in a module made
up for the test (registered in ``sys.modules`` while saving, removed before loading),
so the pickles name a class that no longer exists. SQLite only: this is about the
pickles, not the database.
"""

from __future__ import annotations

import pickle
import sys
import types
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

import typedstore.serialization as serialization
from tests.migrations.models import NewThing, Upgradable
from tests.migrations.support import Db
from typedstore import (
    LoadError,
    MissingClass,
    NotFoundError,
    SaveError,
    make_store,
    register_class_alias,
    register_upgrade,
    rewrite_all,
)


@pytest.fixture(autouse=True)
def isolated_upgrade_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Upgrade hooks registered by a test vanish after it. (Class aliases stay: each test
    aliases made-up module names of its own, which nothing else uses.)"""
    monkeypatch.setattr(serialization, "_UPGRADES", {})


@pytest.fixture
def url(sqlite_db: Db, table: str) -> str:
    return sqlite_db.at(table)


class OldModule:
    """A made-up module ``<package>.jobs`` holding one class, importable until removed."""

    def __init__(self, class_name: str) -> None:
        self.package = f"gone_{uuid.uuid4().hex[:8]}"
        self.name = f"{self.package}.jobs"
        self.class_name = class_name
        self.dotted = f"{self.name}.{class_name}"
        self.cls = type(class_name, (), {"__module__": self.name, "__qualname__": class_name})
        self.modules = {self.package: types.ModuleType(self.package),
                        self.name: types.ModuleType(self.name)}
        setattr(self.modules[self.name], class_name, self.cls)

    def make(self, **attrs: Any) -> Any:
        obj = self.cls()
        obj.__dict__.update(attrs)
        return obj

    def __enter__(self) -> OldModule:
        sys.modules.update(self.modules)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self.modules:
            sys.modules.pop(name, None)


def save_old(url: str, old: OldModule, *others: Any, **attrs: Any) -> tuple[Any, list[Any]]:
    """Save an object of the old class (and ``others``); return (its id, the others' ids)."""
    with old, make_store(url) as store:
        old_id = store.save(old.make(**attrs))
        ids = [store.save(o) for o in others]
    return old_id, ids


def raw_payloads(url: str) -> dict[int, bytes]:
    """``id -> data`` bytes as stored."""
    with make_store(url) as store, store.engine.connect() as conn:
        table = store.table
        return {int(id_): bytes(data)
                for id_, data in conn.execute(sa.select(table.c.id, table.c.data))}


def test_class_alias_loads_records_of_a_renamed_class(url: str) -> None:
    old = OldModule("Thing")
    thing_id, [other] = save_old(url, old, {"plain": 1}, value=41)
    assert old.name not in sys.modules

    with make_store(url) as store:
        with pytest.raises(LoadError) as info:
            store.load(thing_id)
        assert info.value.id == thing_id

    register_class_alias(old.dotted, NewThing)
    with make_store(url) as store:
        thing = store.load(thing_id)
        assert type(thing) is NewThing
        assert thing.value == 41
        assert store.load(other) == {"plain": 1}


def test_class_alias_by_dotted_name(url: str) -> None:
    old = OldModule("Thing")
    thing_id, _ = save_old(url, old, value="x")
    register_class_alias(old.dotted, "tests.migrations.models.NewThing")
    with make_store(url) as store:
        assert type(store.load(thing_id)) is NewThing


def test_records_of_a_missing_class_load_as_placeholders(url: str) -> None:
    old = OldModule("Vanished")
    gone_id, [plain, thing] = save_old(url, old, {"plain": 1}, NewThing("kept"), value=3)

    with make_store(url) as store:  # default: missing_classes="error"
        with pytest.raises(LoadError) as info:
            store.load(gone_id)
        assert info.value.id == gone_id
        assert str(gone_id) in str(info.value)
        assert store.load(plain) == {"plain": 1}

    with make_store(url, missing_classes="placeholder") as store:
        gone = store.load(gone_id)
        assert isinstance(gone, MissingClass)
        assert gone.missing_class == old.dotted
        # The pickled __dict__ (the store had set persistent_id on the object it saved).
        assert gone.state == {"value": 3, "persistent_id": gone_id}
        assert old.dotted in repr(gone)
        # The rest of the store stays usable.
        assert store.load(plain) == {"plain": 1}
        assert store.load(thing).value == "kept"
        assert sorted(store.list()) == sorted([gone_id, plain, thing])
        with pytest.raises(SaveError):
            store.save(gone)
        store.remove(gone_id)
        assert sorted(store.list()) == sorted([plain, thing])
        with pytest.raises(NotFoundError):
            store.load(gone_id)
    with make_store(url) as store:
        assert sorted(store.list()) == sorted([plain, thing])


def test_placeholder_has_its_documented_args(url: str) -> None:
    old = OldModule("Vanished")
    gone_id, _ = save_old(url, old, value=3)
    with make_store(url, missing_classes="placeholder") as store:
        gone = store.load(gone_id)
        assert gone.args == ()


def test_upgrade_hooks_receive_loaded_objects(url: str) -> None:
    with make_store(url) as store:
        ids = store.save_many([Upgradable(1), Upgradable(2)])
        other = store.save(NewThing("untouched"))

    seen: list[Any] = []

    def add_priority(obj: Any) -> None:
        seen.append(obj)
        if not hasattr(obj, "priority"):
            obj.priority = obj.value * 10

    register_upgrade(Upgradable, add_priority)
    with make_store(url) as store:
        loaded = [store.load(i) for i in ids]
        assert [o.priority for o in loaded] == [10, 20]
        assert all(isinstance(o, Upgradable) for o in seen)
        assert [o.value for o in seen] == [1, 2]
        assert seen == loaded
        assert not hasattr(store.load(other), "priority")

        # rewrite_all stores the upgraded form.
        assert rewrite_all(store, progress=False) == []
    stored = {i: pickle.loads(data) for i, data in raw_payloads(url).items()}
    assert [stored[int(i)].priority for i in ids] == [10, 20]


def test_upgrade_hook_may_return_a_replacement(url: str) -> None:
    with make_store(url) as store:
        id_ = store.save(Upgradable("old"))
    register_upgrade(Upgradable, lambda obj: NewThing(f"from {obj.value}"))
    with make_store(url) as store:
        obj = store.load(id_)
    assert type(obj) is NewThing and obj.value == "from old"


def test_rewrite_all_writes_current_names_and_skips_placeholders(url: str) -> None:
    old = OldModule("Thing")
    gone = OldModule("Vanished")
    thing_id, [plain] = save_old(url, old, {"plain": 1}, value=7)
    gone_id, _ = save_old(url, gone, value=8)
    before = raw_payloads(url)
    assert old.name.encode() in before[int(thing_id)]

    register_class_alias(old.dotted, NewThing)
    with make_store(url, missing_classes="placeholder") as store:
        skipped = rewrite_all(store, batch_size=2, progress=False)
        assert [id_ for id_, _ in skipped] == [gone_id]
        assert gone.dotted in skipped[0][1]

    after = raw_payloads(url)
    assert old.package.encode() not in after[int(thing_id)]
    assert b"tests.migrations.models" in after[int(thing_id)]
    rewritten = pickle.loads(after[int(thing_id)])  # plain pickle: no alias needed now
    assert type(rewritten) is NewThing and rewritten.value == 7
    assert after[int(gone_id)] == before[int(gone_id)]  # the placeholder was not written
    assert pickle.loads(after[int(plain)]) == {"plain": 1}
