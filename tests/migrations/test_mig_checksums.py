"""ts0004: the integrity columns (``_checksum``, ``_mac``) on a table holding records
written before them (at ts0003): they are added nullable, the old rows load
unchecked, new writes carry a checksum (and a MAC in a signed store), and a
downgrade drops the columns and keeps the records."""

from __future__ import annotations

import pickle
import zlib

import pytest

import typedstore
from tests.migrations.models import make_jobs
from tests.migrations.support import Db, run_typedstore
from typedstore import SchemaError, SignatureError, make_store, resign
from typedstore.schema import code_head

#: typedstore's head revision, which tables reach on open.
HEAD = code_head()

KEY = "a signing key of 32 bytes: test"


def test_ts0004_on_rows_written_before_it(db: Db, table: str) -> None:
    url = db.at(table)
    typedstore.upgrade(url, revision="ts0003")
    assert db.revisions(table) == ["ts0003"]
    assert not {"_checksum", "_mac"} & db.columns(table)
    with pytest.raises(SchemaError) as info:
        make_store(url, create=False)
    assert (info.value.current, info.value.required) == ("ts0003", HEAD)
    # Rows as the code of ts0003 wrote them: id, data, state, version, updated_at.
    payloads = {n + 101: job for n, job in enumerate(make_jobs(0, 3))}
    for id_, job in payloads.items():
        db.execute(f"INSERT INTO {table} (id, data, state, version) "
                   "VALUES (:id, :data, 'NEW', 1)", id=id_, data=pickle.dumps(job))

    typedstore.upgrade(url)
    assert db.revisions(table) == [HEAD]
    assert {"_checksum", "_mac"} <= db.columns(table)
    with make_store(url, create=False) as store:
        assert [store.load(i).jobname for i in payloads] == [j.jobname for j in
                                                             payloads.values()]
        new = store.save(make_jobs(3, 1)[0])
    row = db.rows(f"SELECT data, _checksum, _mac FROM {table} WHERE id = {int(new)}")[0]
    assert row[1] == zlib.crc32(bytes(row[0])) and row[2] is None
    assert [r[0] for r in db.rows(f"SELECT _checksum FROM {table} WHERE id > 100")] \
        == [None, None, None]

    # A signed store refuses them until they are signed.
    with make_store(url, create=False, signing_keys=[KEY]) as signed:
        with pytest.raises(SignatureError):
            signed.load(101)
        assert resign(signed, sign_unsigned=True).signed == 4
    with make_store(url, create=False, signing_keys=[KEY]) as signed:
        assert signed.load(101).jobname == payloads[101].jobname

    typedstore.downgrade(url, "ts0003", table)
    assert not {"_checksum", "_mac"} & db.columns(table)
    typedstore.upgrade(url)
    with make_store(url, create=False) as store:
        assert store.load(new).jobname == "job-3"


def test_cli_resign_rotates_the_key(db: Db, table: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    url = db.at(table)
    old, new = KEY, "the new key: 32 bytes for tests.."
    with make_store(url, signing_keys=[old]) as store:
        ids = store.save_many(make_jobs(0, 3))
    monkeypatch.setenv("TYPEDSTORE_SIGNING_KEYS", f"{new},{old}")
    result = run_typedstore("resign", url)
    assert "3 re-signed, 0 already signed with the first key, 0 refused" in result.stdout
    with make_store(url, signing_keys=[new]) as store:
        assert [store.load(i).jobname for i in ids] == ["job-0", "job-1", "job-2"]
    db.execute(f"UPDATE {table} SET _mac = NULL WHERE id = :id", id=int(ids[1]))
    result = run_typedstore("resign", url, expect=1)
    assert f"{int(ids[1])}: unsigned" in result.stdout
    result = run_typedstore("resign", url, "--sign-unsigned")
    assert "1 re-signed, 2 already" in result.stdout
