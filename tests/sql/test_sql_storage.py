"""Large payloads, the in-memory SQLite store, and the SQLite engine settings."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest
from sql_jobs import Job, SqlTestJobRow, make_job

from typedstore import NotFoundError, SqlStore, make_store

OpenStore = Callable[..., Any]
Row = SqlTestJobRow

MB = 1024 * 1024


# ---------------------------------------------------------------- large payloads


def test_two_megabyte_payload_round_trips(open_store: OpenStore) -> None:
    payload = os.urandom(2 * MB)  # incompressible
    store = open_store()
    job = Job("big", payload=payload)
    id_ = store.save(job)
    loaded = open_store().load(id_)
    assert loaded.payload == payload
    assert loaded is not job

    job.payload = payload[::-1] + b"!"  # an update rewrites the large row
    store.save(job)
    assert open_store().load(id_).payload == payload[::-1] + b"!"


def test_large_payloads_in_one_transaction(open_store: OpenStore) -> None:
    blobs = [os.urandom(2 * MB) for _ in range(2)]
    store = open_store()
    ids = store.save_many([Job(f"big{i}", payload=b) for i, b in enumerate(blobs)])
    fresh = open_store()
    assert [fresh.load(i).payload for i in ids] == blobs


# ---------------------------------------------------------------- in-memory SQLite


def test_in_memory_store_saves_loads_lists_and_queries() -> None:
    store = make_store("sqlite://", row_model=Row)
    try:
        assert isinstance(store, SqlStore)
        jobs = [make_job(f"m{i}", cores=i + 1, state="RUNNING" if i % 2 else "NEW")
                for i in range(6)]
        ids = [store.save(job) for job in jobs]
        box_id = store.save(Job("box", child=jobs[0]))
        assert store.list() == sorted([*ids, box_id])
        store.invalidate_cache()
        assert store.load(box_id).child is store.load(ids[0])
        assert [r.jobname for r in store.query(Row.cores > 3)] == ["m3", "m4", "m5"]
        assert store.query(state="RUNNING").ids() == ids[1::2]
        assert store.query(Row.cores > 1).order_by(Row.cores.desc()).first().jobname == "m5"
        assert [o.jobname for o in store.query(state="NEW").objects()] == ["m0", "m2", "m4"]
        store.remove(ids[1])
        with pytest.raises(NotFoundError):
            store.load(ids[1])
        assert store.query().count() == 6
        with pytest.raises(RuntimeError), store.transaction():
            store.save(Job("rolled back"))
            store.remove(ids[2])
            raise RuntimeError
        assert store.list() == sorted([ids[0], *ids[2:], box_id])
    finally:
        store.close()


def test_in_memory_stores_are_separate() -> None:
    first = make_store("sqlite://#table=mem")
    second = make_store("sqlite://#table=mem")
    try:
        first.save(Job("only in the first"))
        assert second.list() == []
        assert len(first.list()) == 1
    finally:
        first.close()
        second.close()


def test_in_memory_query_inside_a_transaction_keeps_the_transaction() -> None:
    store = make_store("sqlite://", row_model=Row)
    try:
        with store.transaction():
            a = store.save(make_job("a", cores=1))
            b = store.save(make_job("b", cores=2))  # a second write: a real transaction
            store.query().count()
            c = store.save(make_job("c", cores=3))
        assert store.list() == [a, b, c]
        assert [r.jobname for r in store.query()] == ["a", "b", "c"]
    finally:
        store.close()


# ---------------------------------------------------------------- SQLite settings


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sqlite_store_file_is_in_wal_mode(open_store: OpenStore, store_url: str) -> None:
    store = open_store()
    store.save(Job("x"))
    path = store_url.removeprefix("sqlite:///").partition("#")[0]
    assert os.path.exists(path)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sqlite_connection_settings(open_store: OpenStore) -> None:
    store = open_store()
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
