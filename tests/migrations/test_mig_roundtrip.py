"""Upgrade, downgrade and upgrade again a table holding records: the rows survive."""

from __future__ import annotations

import pytest

import typedstore
from tests.migrations.models import make_jobs
from tests.migrations.support import Db, version_table
from typedstore import SchemaError, make_store
from typedstore.demo import DemoJob
from typedstore.schema import code_head

#: typedstore's head revision, which tables reach on open.
HEAD = code_head()

BASE = {"id", "data", "state"}
BOOKKEEPING = {"version", "updated_at", "_checksum", "_mac", "_root"}


def test_upgrade_downgrade_round_trip_keeps_rows(db: Db, table: str) -> None:
    url = db.at(table)
    assert typedstore.upgrade(url) == []
    with make_store(url) as store:
        ids = store.save_many(make_jobs(0, 5))
        extra = store.save({"plain": "dict"})
    names = {int(i): f"job-{n}" for n, i in enumerate(ids)}
    largest = max(int(i) for i in [*ids, extra])
    assert db.counter(table) is not None and db.counter(table) > largest

    typedstore.downgrade(url, "ts0001", table)

    assert db.revisions(table) == ["ts0001"]
    assert db.columns(table) == BASE
    assert f"ix_{table}_state" not in db.indexes(table)
    assert db.counter(table) is None
    payloads = db.payloads(table)
    assert set(payloads) == {*names, int(extra)}
    assert {i: p.jobname for i, p in payloads.items() if isinstance(p, DemoJob)} == names
    assert payloads[int(extra)] == {"plain": "dict"}
    # A table behind the code's revision is refused, with or without create.
    for create in (False, True):
        with pytest.raises(SchemaError) as info:
            make_store(url, create=create)
        assert info.value.current == "ts0001"
    assert db.columns(table) == BASE  # opening did not change it

    typedstore.upgrade(url)

    assert db.revisions(table) == [HEAD]
    assert db.columns(table) == BASE | BOOKKEEPING
    assert f"ix_{table}_state" in db.indexes(table)
    assert db.counter(table) == largest + 1
    assert [r[0] for r in db.rows(f"SELECT DISTINCT version FROM {table}")] == [1]
    with make_store(url, create=False) as store:
        assert {int(i): store.load(i).jobname for i in ids} == names
        assert store.load(extra) == {"plain": "dict"}
        job = store.load(ids[0])
        job.jobname = "renamed"
        store.save(job)
        new = store.save({"after": "round trip"})
        assert int(new) > largest
    with make_store(url, create=False) as store:
        assert store.load(ids[0]).jobname == "renamed"
    assert dict(db.rows(f"SELECT id, version FROM {table}"))[int(ids[0])] == 2

    typedstore.downgrade(url, "base", table)

    assert not db.has_table(table)
    assert not db.has_table(version_table(table))  # downgrade to base removes it too
    assert db.counter(table) is None
