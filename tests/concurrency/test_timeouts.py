"""Timeouts on every backend (issue 10, items 6 and 7).

Each wait has a configured end and ends in one typedstore error naming the
store, what it waited for and how long: a row lock another client holds
(PostgreSQL, MariaDB), SQLite's write lock, the file store's commit and id
locks held by another process, and a server that accepts connections and
never answers. The tests' own bound is pytest's timeout: a wait that did not
end would fail them.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from typedstore import (
    ConnectError,
    ConnectTimeout,
    FilesystemStore,
    LockTimeout,
    Persistable,
    ServerTimeout,
    SqlStore,
    Store,
    StoreError,
    make_store,
)
from typedstore.connections import Timeouts


class Job(Persistable):
    def __init__(self, name: str) -> None:
        self.name = name


@pytest.fixture
def opened() -> Iterator[Callable[..., Store]]:
    stores: list[Store] = []

    def _open(url: str, **kwargs: Any) -> Store:
        store = make_store(url, **kwargs)
        stores.append(store)
        return store

    yield _open
    for store in stores:
        store.close()


# ---------------------------------------------------------------- server row locks


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_row_lock_held_by_another_client(backend: str, store_url: str,
                                         opened: Callable[..., Store]) -> None:
    store = opened(store_url, lock_timeout=1)
    assert isinstance(store, SqlStore)
    job = Job("job")
    job_id = store.save(job)
    table = store_url.partition("table=")[2]
    engine = sa.create_engine(store_url.partition("#")[0], poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as holder, holder.begin():
            holder.execute(sa.text(f"SELECT id FROM {table} WHERE id = :id FOR UPDATE"),
                           {"id": int(job_id)})
            job.name = "changed"
            with pytest.raises(LockTimeout) as info:
                store.save(job)
            error = info.value
            assert f"record {job_id}" in error.lock
            assert error.waited > 0
            assert error.store == store._describe()
            assert f"table={table}" in str(error) and "lock_timeout=1 s" in str(error)
            assert "nothing was written" in str(error)
            # A transaction waiting for the lock ends the same way, all of it undone.
            other = Job("other")
            with pytest.raises(LockTimeout), store.transaction():
                store.save(other)
                store.save(job)
            assert getattr(other, "persistent_id", None) is None
        # The lock released, the same save goes through.
        store.save(job)
        assert make_store(store_url).load(job_id).name == "changed"
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_timeouts_are_set_on_every_connection(backend: str, store_url: str,
                                              opened: Callable[..., Store]) -> None:
    store = opened(store_url, lock_timeout=7, statement_timeout=30)
    assert isinstance(store, SqlStore)
    store.list()
    cursor = store._link.cursor
    with store.engine.connect() as pooled:
        if backend == "postgresql":
            for conn in (cursor, pooled.connection.driver_connection.cursor()):
                assert conn.execute("SHOW lock_timeout").fetchone()[0] == "7s"
                assert conn.execute("SHOW statement_timeout").fetchone()[0] == "30s"
            # The URL's own options (the test schema's search_path) are kept.
            assert "ts_" in cursor.execute("SHOW search_path").fetchone()[0]
        else:
            for conn in (cursor, pooled.connection.driver_connection.cursor()):
                conn.execute("SELECT @@innodb_lock_wait_timeout, @@lock_wait_timeout, "
                             "@@max_statement_time")
                assert tuple(conn.fetchone()) == (7, 7, 30)
    assert store.timeouts == Timeouts(10.0, 7.0, 30.0, 600.0)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["postgresql"])
def test_statement_timeout_on_postgresql(store_url: str, opened: Callable[..., Store]) -> None:
    store = opened(store_url, statement_timeout=1, lock_timeout=30)
    assert isinstance(store, SqlStore)
    job_id = store.save(Job("job"))
    store.invalidate_cache()
    table = store_url.partition("table=")[2]
    engine = sa.create_engine(store_url.partition("#")[0], poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as holder, holder.begin():
            holder.exec_driver_sql(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(ServerTimeout) as info:
                store.load(job_id)
            assert not isinstance(info.value, ConnectTimeout)
            assert "statement_timeout=1 s" in str(info.value)
            assert f"record {job_id}" in info.value.what
            with pytest.raises(ServerTimeout):
                store.query().count()
        assert store.load(job_id).name == "job"
    finally:
        engine.dispose()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["postgresql"])
def test_cancelled_by_another_client_is_not_a_timeout(store_url: str,
                                                      opened: Callable[..., Store]) -> None:
    """pg_cancel_backend() gives the same SQLSTATE as statement_timeout: the
    error must say the statement was cancelled, not that a timeout expired."""
    store = opened(store_url, lock_timeout=30)
    assert isinstance(store, SqlStore)
    job = Job("job")
    job_id = store.save(job)
    pid = store._link.backend_id()
    table = store_url.partition("table=")[2]
    engine = sa.create_engine(store_url.partition("#")[0], poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as holder, holder.begin():
            holder.execute(sa.text(f"SELECT id FROM {table} WHERE id = :id FOR UPDATE"),
                           {"id": int(job_id)})
            with engine.connect() as canceller:
                timer = threading.Timer(1.0, lambda: canceller.execute(
                    sa.text("SELECT pg_cancel_backend(:pid)"), {"pid": pid}))
                timer.start()
                job.name = "changed"
                with pytest.raises(StoreError) as info:
                    store.save(job)
                timer.join()
        error = info.value
        assert not isinstance(error, ServerTimeout), error
        assert "user request" in str(error) and "statement_timeout" not in str(error)
        store.invalidate_cache()
        assert store.load(job_id).name == "job"
    finally:
        engine.dispose()


# ---------------------------------------------------------------- SQLite


@pytest.mark.timeout(60)
def test_sqlite_write_lock_held_by_another_connection(tmp_path: Path,
                                                      opened: Callable[..., Store]) -> None:
    path = tmp_path / "jobs.db"
    store = opened(f"sqlite:///{path}", lock_timeout=0.5)
    job = Job("job")
    job_id = store.save(job)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        job.name = "changed"
        for attempt in (lambda: store.save(job), lambda: store.save(Job("new"))):
            with pytest.raises(LockTimeout) as info:
                attempt()
            error = info.value
            assert str(path) in error.lock and str(path) in str(error)
            assert error.waited > 0
            assert "lock_timeout=0.5 s" in str(error)
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    store.save(job)
    store.invalidate_cache()
    assert store.load(job_id).name == "changed"


# ---------------------------------------------------------------- file store

_HOLD = """
import fcntl, sys
f = open(sys.argv[1], "a")
fcntl.flock(f, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


class HeldLock:
    """Another process holding ``flock`` on a file until released."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.mark.timeout(60)
def test_file_store_commit_lock_held_by_another_process(tmp_path: Path,
                                                        opened: Callable[..., Store]) -> None:
    store = opened(str(tmp_path / "jobs"), lock_timeout=0.5)
    assert isinstance(store, FilesystemStore)
    job = Job("job")
    job_id = store.save(job)
    lock = store._commit_lock.path
    held = HeldLock(lock)
    try:
        job.name = "changed"
        with pytest.raises(LockTimeout) as info:
            store.save(job)
        error = info.value
        assert error.lock == str(lock) and str(lock) in str(error)
        assert error.store == store._describe() and str(tmp_path / "jobs") in str(error)
        assert error.waited >= 0.5
        assert "commit lock" in str(error)
    finally:
        held.release()
    store.save(job)
    assert make_store(str(tmp_path / "jobs")).load(job_id).name == "changed"


@pytest.mark.timeout(60)
def test_file_store_id_lock_held_by_another_process(tmp_path: Path,
                                                    opened: Callable[..., Store]) -> None:
    store = opened(str(tmp_path / "jobs"), lock_timeout=0.5)
    assert isinstance(store, FilesystemStore)
    counter_lock = Path(str(store._counter.path) + ".lock")  # type: ignore[union-attr]
    held = HeldLock(counter_lock)
    try:
        with pytest.raises(LockTimeout) as info:
            store.save(Job("first"))  # a fresh store takes its first block of ids
        error = info.value
        assert error.lock == str(counter_lock) and "id counter lock" in str(error)
        assert str(tmp_path / "jobs") in str(error)
    finally:
        held.release()
    assert store.load(store.save(Job("first"))).name == "first"


# ---------------------------------------------------------------- servers that do not answer


class SilentServer:
    """A loopback TCP server that accepts connections and never says a word."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)  # to see the stop flag
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted.append(conn)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "mysql+pymysql"])
def test_server_that_never_answers(scheme: str, silent: SilentServer) -> None:
    url = f"{scheme}://user:secret@127.0.0.1:{silent.port}/jobs#table=jobs"
    with pytest.raises(ConnectTimeout) as info:
        make_store(url, connect_timeout=2)
    error = info.value
    assert isinstance(error, ConnectError) and isinstance(error, ServerTimeout)
    assert error.waited == 2 and "connect_timeout=2 s" in str(error)
    assert f"127.0.0.1:{silent.port}" in str(error) and "secret" not in str(error)
    assert silent.accepted, "the store never connected"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "mysql+pymysql"])
def test_connect_timeout_in_the_url_is_the_one_reported(scheme: str,
                                                        silent: SilentServer) -> None:
    url = f"{scheme}://user:secret@127.0.0.1:{silent.port}/jobs?connect_timeout=3"
    with pytest.raises(ConnectTimeout) as info:
        make_store(url, connect_timeout=20)  # the URL's wins, as the driver sees it
    assert info.value.waited == 3 and "connect_timeout=3 s" in str(info.value)


@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "mysql+pymysql"])
def test_nothing_listening(scheme: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectError) as info:
        make_store(f"{scheme}://user:secret@127.0.0.1:{port}/jobs")
    assert not isinstance(info.value, ConnectTimeout)
    assert f"127.0.0.1:{port}" in str(info.value) and "secret" not in str(info.value)
    # A password given as a query parameter (both drivers take one) is hidden too.
    other = "passwd=secret" if "mysql" in scheme else "application_name=x&password=secret"
    for query in ("password=secret", other):
        with pytest.raises(ConnectError) as info:
            make_store(f"{scheme}://user@127.0.0.1:{port}/jobs?{query}")
        assert "secret" not in str(info.value) and "***" in str(info.value)


def test_a_url_parameter_the_driver_refuses() -> None:
    from typedstore import UrlError

    with pytest.raises(UrlError) as info:
        make_store("mysql+pymysql://user@127.0.0.1:1/jobs?bogus=1&password=secret")
    assert "bogus" in str(info.value) and "secret" not in str(info.value)


# ---------------------------------------------------------------- arguments


def test_timeout_arguments(tmp_path: Path) -> None:
    assert Timeouts.resolve(lock=5).read >= 600
    assert Timeouts.resolve(lock=1000).read == 1000 + 30
    for bad in ({"lock": 0}, {"connect": -1}, {"statement": float("nan")},
                {"lock": 10, "read": 5}, {"lock": True}):
        with pytest.raises(ValueError):
            Timeouts.resolve(**bad)
    with pytest.raises(ValueError):
        make_store(f"sqlite:///{tmp_path / 'x.db'}", lock_timeout=-1)
    # Each backend takes (or ignores) the other's timeouts.
    files = make_store(str(tmp_path / "jobs"), connect_timeout=3, lock_timeout=2)
    assert isinstance(files, FilesystemStore) and files._commit_lock.timeout == 2
    files.close()
    # ... and checks them: a wrong value is an error on every backend.
    for bad in ({"connect_timeout": "10"}, {"statement_timeout": -5},
                {"read_timeout": float("nan")}, {"lock_timeout": 2, "read_timeout": 1}):
        with pytest.raises(ValueError, match="timeout"):
            make_store(str(tmp_path / "bad"), **bad)
    assert not (tmp_path / "bad").exists()  # refused before anything was made
    sql = make_store(f"sqlite:///{tmp_path / 'y.db'}", lock_timeout=2, metadata_dir=None)
    with sql.engine.connect() as conn:  # type: ignore[attr-defined]
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 2000
    sql.close()
    assert issubclass(LockTimeout, StoreError) and issubclass(ServerTimeout, StoreError)


def test_driver_errors_are_classified() -> None:
    """What each driver's error means: the table behind the typedstore errors
    (the servers' own answers are exercised by the tests above)."""
    import psycopg
    import pymysql

    from typedstore import connections as c

    pg = sa.create_engine("postgresql+psycopg://u@127.0.0.1/x").dialect
    my = sa.create_engine("mysql+pymysql://u@127.0.0.1/x").dialect
    lite = sa.create_engine("sqlite://").dialect
    assert c.classify(psycopg.errors.LockNotAvailable("lock"), pg) == c.LOCK
    assert c.classify(psycopg.errors.QueryCanceled("statement timeout"), pg) == c.STATEMENT
    assert c.classify(psycopg.errors.AdminShutdown("terminating"), pg) == c.DISCONNECT
    assert c.classify(psycopg.errors.UniqueViolation("dup"), pg) == c.OTHER
    for code, kind in ((1205, c.LOCK), (1969, c.STATEMENT), (1153, c.PACKET),
                       (2006, c.DISCONNECT), (2013, c.DISCONNECT), (1927, c.DISCONNECT),
                       (1062, c.OTHER)):
        assert c.classify(pymysql.err.OperationalError(code, "x"), my) == kind, code
    assert c.classify(sqlite3.OperationalError("database is locked"), lite) == c.LOCK
    assert c.classify(sqlite3.OperationalError("disk I/O error"), lite) == c.OTHER
    refused = pymysql.err.OperationalError(2003, "Can't connect (timed out)")
    setattr(refused, c.CONNECTING, True)
    assert c.classify(refused, my) == c.CONNECT_TIMEOUT


def test_pool_exhausted_by_open_queries(backend: str, store_url: str,
                                        opened: Callable[..., Store]) -> None:
    """Every pooled connection held by an unfinished query: the next query
    waits lock_timeout for one, then a LockTimeout says so (not a connect
    timeout: the server is fine)."""
    if backend == "file":
        pytest.skip("no connection pool")
    store = opened(store_url, lock_timeout=1,
                   engine_options={"pool_size": 1, "max_overflow": 0})
    for n in range(3):
        store.save(Job(f"job {n}"))
    holding = iter(store.query().objects())
    next(holding)  # its connection stays checked out until the rest is read
    with pytest.raises(LockTimeout) as info:
        list(store.query().objects())
    error = info.value
    assert error.lock == "a pooled connection" and error.waited == 1
    assert "query results open" in str(error) and "pool_size" in str(error)
    assert not isinstance(error, ConnectError)
    assert len(list(holding)) == 2  # the held query finishes; its connection returns
    assert len(list(store.query().objects())) == 3
