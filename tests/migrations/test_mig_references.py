"""ts0005: reference tracking on a table holding records written before it (at
ts0004): ``_root`` is added NULL (not known), the reference table is created
empty, and the first store that needs references reads them from the old
payloads; a downgrade drops both and keeps the records."""

from __future__ import annotations

import pytest

import typedstore
from tests.concurrency.graphs import Node
from tests.migrations.support import Db
from typedstore import ReferencedError, make_store
from typedstore.schema import code_head
from typedstore.tables import refs_table_name

HEAD = code_head()


def test_ts0005_on_records_written_before_it(db: Db, table: str) -> None:
    url = db.at(table)
    shared = Node("shared")
    top = Node("top", [Node("a", [shared]), Node("b", [shared])])
    with make_store(url) as store:
        store.save(top)
    refs = refs_table_name(table, db.backend)
    typedstore.downgrade(url, "ts0004", table)
    assert db.revisions(table) == ["ts0004"]
    assert "_root" not in db.columns(table) and not db.has_table(refs)

    typedstore.upgrade(url)
    assert db.revisions(table) == [HEAD]
    assert db.has_table(refs)
    assert [r[0] for r in db.rows(f"SELECT DISTINCT _root FROM {table}")] == [None]
    with make_store(url, create=False) as store:
        holders = sorted(int(k.persistent_id) for k in top.kids)
        assert sorted(int(i) for i in store.referrers(shared.persistent_id)) == holders
        with pytest.raises(ReferencedError):
            store.remove(shared.persistent_id)
        # Not known whether they were saved directly: pack keeps them all.
        assert store.pack().removed == 0
    assert {r[0] for r in db.rows(f"SELECT DISTINCT _root FROM {table}")} == {2}
    assert len(db.rows(f"SELECT source FROM {refs}")) == 4

    typedstore.downgrade(url, "ts0004", table)
    assert "_root" not in db.columns(table) and not db.has_table(refs)
    typedstore.upgrade(url)
    with make_store(url, create=False) as store:
        assert store.load(top.persistent_id).kids[0].kids[0].name == "shared"
