"""Connections the server ends, on PostgreSQL and MariaDB (issue 10, item 2).

The store's connections are ended from another connection of the test, as an
administrator or a server restart would: ``pg_terminate_backend`` and
``KILL``. The store must carry on, reconnecting by itself; a transaction cut
off must be written entirely or not at all (checked with a connection of the
test's own); an error must be typedstore's and say whether anything may have
been committed.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from typedstore import (
    ConnectionLostError,
    OutcomeUnknownError,
    Persistable,
    SaveError,
    SqlStore,
    StoreError,
    make_store,
)

#: Kills per test (the issue asks 20 on each backend).
ROUNDS = 20
#: Longest wait for the server to show a connection gone or a session blocked.
WAIT_S = 60.0

SERVERS = ["postgresql", "mysql"]


class Execution:
    def __init__(self, state: str) -> None:
        self.state = state


class Job(Persistable):
    def __init__(self, name: str, size: int = 0) -> None:
        self.name = name
        self.blob = b"x" * size
        self.execution = Execution("NEW")


class Server:
    """The test's own administrator connection to the store's server."""

    def __init__(self, backend: str, store_url: str) -> None:
        self.backend = backend
        base, _, self.fragment = store_url.partition("#")
        self.tag = f"ts_kill_{uuid.uuid4().hex[:12]}"
        tagged = base
        if backend == "postgresql":
            # Every connection of the store carries this name: the test kills
            # them all (its own connection, the pool's), as a restart would.
            sep = "&" if "?" in base else "?"
            tagged = f"{base}{sep}application_name={self.tag}"
        self.url = f"{tagged}#{self.fragment}"
        self.database = sa.make_url(base).database
        self.engine = sa.create_engine(base, poolclass=sa.pool.NullPool,
                                       isolation_level="AUTOCOMMIT")
        self.table = self.fragment.partition("table=")[2]
        self.kills = 0

    def close(self) -> None:
        self.engine.dispose()

    def _sessions(self, conn: sa.Connection) -> list[int]:
        if self.backend == "postgresql":
            return [r[0] for r in conn.execute(sa.text(
                "SELECT pid FROM pg_stat_activity WHERE application_name = :tag"),
                {"tag": self.tag})]
        return [r[0] for r in conn.execute(sa.text(
            "SELECT id FROM information_schema.processlist "
            "WHERE db = :db AND id <> CONNECTION_ID()"), {"db": self.database})]

    def kill_all(self, store: SqlStore) -> None:
        """End every connection the store has open (its own one must be among
        them) and wait until the server shows them gone."""
        own = store._link.backend_id()
        assert own is not None, "the store has no connection of its own open"
        with self.engine.connect() as conn:
            victims = self._sessions(conn)
            assert own in victims, (own, victims)
            for pid in victims:
                self._kill(conn, pid)
            self._wait_gone(conn, victims)
        self.kills += 1

    def kill(self, pid: int) -> None:
        with self.engine.connect() as conn:
            self._kill(conn, pid)
            self._wait_gone(conn, [pid])
        self.kills += 1

    def _kill(self, conn: sa.Connection, pid: int) -> None:
        if self.backend == "postgresql":
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        else:
            try:
                conn.exec_driver_sql(f"KILL {int(pid)}")
            except sa.exc.DBAPIError as exc:  # 1094: it ended by itself meanwhile
                if "1094" not in str(exc):
                    raise

    def _wait_gone(self, conn: sa.Connection, pids: list[int]) -> None:
        end = time.monotonic() + WAIT_S
        while set(pids) & set(self._sessions(conn)):
            assert time.monotonic() < end, f"connections {pids} still alive"
            time.sleep(0.01)

    def wait_blocked(self, pid: int, by: int | None = None) -> None:
        """Wait until session ``pid`` waits for a lock (held by session ``by``)."""
        end = time.monotonic() + WAIT_S
        with self.engine.connect() as conn:
            while True:
                if self.backend == "postgresql":
                    blockers = conn.execute(sa.text("SELECT pg_blocking_pids(:pid)"),
                                            {"pid": pid}).scalar() or []
                    if blockers and (by is None or by in blockers):
                        return
                else:
                    state = conn.execute(sa.text(
                        "SELECT state FROM information_schema.processlist WHERE id = :pid "
                        "AND command = 'Query'"), {"pid": pid}).scalar()
                    if state and ("lock" in state.lower() or state in ("Updating",
                                                                       "Sending data")):
                        return
                assert time.monotonic() < end, f"session {pid} never blocked"
                time.sleep(0.01)

    def waiting_sessions(self) -> list[int]:
        """Sessions of the store that wait for a lock."""
        with self.engine.connect() as conn:
            if self.backend == "postgresql":
                return [r[0] for r in conn.execute(sa.text(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = :tag "
                    "AND cardinality(pg_blocking_pids(pid)) > 0"), {"tag": self.tag})]
            return [r[0] for r in conn.execute(sa.text(
                "SELECT id FROM information_schema.processlist WHERE db = :db "
                "AND command = 'Query' AND id <> CONNECTION_ID() AND state LIKE '%lock%'"),
                {"db": self.database})]

    def rows(self) -> dict[int, int]:
        """``{id: version}`` of every record, read on the test's own connection."""
        with self.engine.connect() as conn:
            return {int(r[0]): int(r[1]) for r in conn.execute(sa.text(
                f"SELECT id, version FROM {self.table}"))}

    def pid_of(self, conn: sa.Connection) -> int:
        sql = "SELECT pg_backend_pid()" if self.backend == "postgresql" \
            else "SELECT CONNECTION_ID()"
        return int(conn.exec_driver_sql(sql).scalar_one())


@pytest.fixture
def server(backend: str, store_url: str) -> Iterator[Server]:
    admin = Server(backend, store_url)
    yield admin
    print(f"{backend}: {admin.kills} kills of the store's connections survived")
    admin.close()


@pytest.fixture
def open_sql(server: Server) -> Iterator[Callable[..., SqlStore]]:
    opened: list[SqlStore] = []

    def _open(**kwargs: Any) -> SqlStore:
        store = make_store(server.url, **kwargs)
        assert isinstance(store, SqlStore)
        opened.append(store)
        return store

    yield _open
    for store in opened:
        store.close()


@pytest.mark.slow
@pytest.mark.parametrize("backend", SERVERS)
def test_kills_between_operations(server: Server, open_sql: Callable[..., SqlStore]) -> None:
    """Every connection of the store ended before each save, load, list and query:
    each operation works, on a new connection, without an error."""
    store = open_sql()
    saved: dict[Any, str] = {}
    first = Job("first")
    saved[store.save(first)] = "first"
    for round_ in range(ROUNDS):
        server.kill_all(store)
        job = Job(f"job-{round_}")
        saved[store.save(job)] = job.name  # a new record

        server.kill_all(store)
        first.name = f"first-{round_}"
        store.save(first)  # an update with its version check
        saved[first.persistent_id] = first.name

        server.kill_all(store)
        store.invalidate_cache()
        assert store.load(job.persistent_id).name == job.name

        server.kill_all(store)
        assert sorted(store.list()) == sorted(saved)

        server.kill_all(store)
        assert store.query().count() == len(saved)
        assert sorted(store.query().ids()) == sorted(saved)
        first = store.load(first.persistent_id)  # the object the store now knows

    rows = server.rows()
    assert sorted(rows) == sorted(saved)
    assert rows[first.persistent_id] == ROUNDS + 1  # every update written once
    fresh = open_sql()
    assert {id_: fresh.load(id_).name for id_ in saved} == saved


@pytest.mark.slow
@pytest.mark.parametrize("backend", SERVERS)
def test_kills_inside_transactions(server: Server, open_sql: Callable[..., SqlStore]) -> None:
    """Connections ended inside ``with store.transaction():`` after some of its
    writes reached the server: ConnectionLostError saying nothing was written
    (committed is False), none of the transaction's records in the database,
    the objects as before; the store carries on and the same transaction then
    commits."""
    store = open_sql()
    kept = Job("kept")
    store.save(kept)
    for round_ in range(ROUNDS):
        before = server.rows()
        a, b, c = Job(f"a{round_}"), Job(f"b{round_}"), Job(f"c{round_}")
        kept.name = f"kept-{round_}"
        written = []
        with pytest.raises(ConnectionLostError) as info, store.transaction():
            written.append(store.save(a))
            store.save(kept)  # the second write opens the database transaction
            written.append(store.save(b))
            server.kill_all(store)
            if round_ % 2:
                store.save(c)  # the next statement finds the connection gone
                # else: the COMMIT finds it gone
        lost = info.value
        assert not isinstance(lost, OutcomeUnknownError)
        assert lost.committed is False
        assert "nothing of the transaction" in str(lost)
        assert f"table={server.table}" in str(lost)
        assert {*written, kept.persistent_id} <= set(lost.ids), (written, lost.ids)
        # Nothing half-committed: the database is as before.
        assert server.rows() == before
        assert getattr(a, "persistent_id", None) is None
        # The store carries on: the same work commits now.
        with store.transaction():
            store.save(a)
            store.save(kept)
            store.save(b)
            store.save(c)
        rows = server.rows()
        assert set(rows) == set(before) | {a.persistent_id, b.persistent_id, c.persistent_id}
        assert rows[kept.persistent_id] == before[kept.persistent_id] + 1
    fresh = open_sql()
    assert fresh.load(kept.persistent_id).name == f"kept-{ROUNDS - 1}"
    assert len(fresh.list()) == 1 + 3 * ROUNDS


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # handed to the test
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


@pytest.mark.slow
@pytest.mark.parametrize("backend", SERVERS)
def test_write_cut_off_in_flight_is_outcome_unknown(
        server: Server, open_sql: Callable[..., SqlStore]) -> None:
    """A save whose statement is under way (waiting for a row lock the test
    holds) when its connection is ended: OutcomeUnknownError (committed is
    None) naming the record; here it was not committed, and the store goes on."""
    store = open_sql()
    checker = open_sql()
    job = Job("job")
    store.save(job)
    stored = "job"
    for round_ in range(3):
        with server.engine.connect() as holder:
            holder.exec_driver_sql("BEGIN")
            holder.execute(sa.text(f"SELECT id FROM {server.table} WHERE id = :id FOR UPDATE"),
                           {"id": int(job.persistent_id)})
            own = store._link.backend_id()
            assert own is not None
            job.name = f"changed-{round_}"
            thread, result = _in_thread(lambda: store.save(job))
            server.wait_blocked(own)
            server.kill(own)
            thread.join(WAIT_S)
            assert not thread.is_alive()
            holder.exec_driver_sql("ROLLBACK")
        error = result.get("error")
        assert isinstance(error, OutcomeUnknownError), repr(error)
        assert error.committed is None
        assert error.id == job.persistent_id
        assert f"record {job.persistent_id}" in str(error)
        # Not committed (the server ended it while it waited for the lock):
        checker.invalidate_cache()
        assert checker.load(job.persistent_id).name == stored
        # The store goes on; the version it knows is still the stored one.
        job.name = stored = f"again-{round_}"
        store.save(job)
    checker.invalidate_cache()
    assert checker.load(job.persistent_id).name == "again-2"
    assert server.rows()[job.persistent_id] == 4


@pytest.mark.slow
@pytest.mark.parametrize("backend", SERVERS)
def test_read_cut_off_in_flight_runs_again(server: Server,
                                           open_sql: Callable[..., SqlStore]) -> None:
    """A load whose SELECT waits (the test holds a table lock) when its
    connection is ended runs again on a new connection and returns the record."""
    store = open_sql()
    job_id = store.save(Job("job"))
    store.invalidate_cache()
    store.list()  # the store's own connection is open
    own = store._link.backend_id()
    assert own is not None
    with server.engine.connect() as holder:
        if server.backend == "postgresql":
            holder.exec_driver_sql("BEGIN")
            holder.exec_driver_sql(f"LOCK TABLE {server.table} IN ACCESS EXCLUSIVE MODE")
        else:
            holder.exec_driver_sql(f"LOCK TABLES {server.table} WRITE")
        thread, result = _in_thread(lambda: store.load(job_id))
        server.wait_blocked(own)
        server.kill(own)
        # The read runs again on a new connection, which waits for the lock too.
        end = time.monotonic() + WAIT_S
        while not [pid for pid in server.waiting_sessions() if pid != own]:
            assert time.monotonic() < end, "the read did not run again"
            time.sleep(0.01)
        holder.exec_driver_sql("ROLLBACK" if server.backend == "postgresql"
                               else "UNLOCK TABLES")
    thread.join(WAIT_S)
    assert not thread.is_alive()
    assert "error" not in result, repr(result.get("error"))
    assert result["value"].name == "job"
    assert store._link.backend_id() != own


@pytest.mark.parametrize("backend", ["mysql"])
def test_record_larger_than_max_allowed_packet(server: Server,
                                               open_sql: Callable[..., SqlStore]) -> None:
    """A ~20 MB record on MariaDB (max_allowed_packet 16 MiB here): SaveError
    naming the record, its size and the limit, before anything is sent; the
    connection stays open and the next saves work, alone and in transactions."""
    store = open_sql()
    small = Job("small")
    store.save(small)
    own = store._link.backend_id()
    with server.engine.connect() as conn:
        limit = int(conn.exec_driver_sql("SELECT @@max_allowed_packet").scalar_one())
    big = Job("big", size=20_000_000)
    with pytest.raises(SaveError) as info:
        store.save(big)
    error = info.value
    assert not isinstance(error, ConnectionLostError)
    assert error.id is not None and f"record {error.id}" in str(error)
    assert "max_allowed_packet" in str(error) and str(limit) in str(error)
    size = [int(w) for w in str(error).replace(",", " ").split() if w.isdigit()]
    assert any(n >= 20_000_000 for n in size), str(error)
    assert getattr(big, "persistent_id", None) is None
    assert store._link.backend_id() == own  # nothing was sent: the connection lives
    # Inside a transaction: nothing of it is written.
    other = Job("other")
    with pytest.raises(SaveError), store.transaction():
        store.save(other)
        store.save(Job("more"))
        store.save(big)
    assert sorted(server.rows()) == [small.persistent_id]
    # The store goes on.
    small.name = "small-2"
    store.save(small)
    next_id = store.save(Job("next"))
    fresh = open_sql()
    assert fresh.load(small.persistent_id).name == "small-2"
    assert fresh.load(next_id).name == "next"
    # A record that fits (half the limit: hexadecimal on the wire) is stored.
    fits = Job("fits", size=limit // 2 - 100_000)
    assert fresh.load(store.save(fits)).blob == fits.blob


@pytest.mark.parametrize("backend", SERVERS)
def test_errors_are_typedstore_errors(server: Server, open_sql: Callable[..., SqlStore]) -> None:
    """A statement the server rejects (its table dropped under the store)
    raises a StoreError naming the store, never the driver's exception."""
    store = open_sql()
    job_id = store.save(Job("job"))
    store.invalidate_cache()
    with server.engine.connect() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {server.table} RENAME TO {server.table}_x")
    try:
        with pytest.raises(StoreError) as info:
            store.load(job_id)
        assert server.table in str(info.value)
        with pytest.raises(StoreError):
            store.save(Job("new"))
    finally:
        with server.engine.connect() as conn:
            conn.exec_driver_sql(f"ALTER TABLE {server.table}_x RENAME TO {server.table}")
    assert store.load(job_id).name == "job"


def test_query_larger_than_max_allowed_packet(mysql_base_url: str) -> None:
    """A query the server would refuse by dropping the connection is refused
    before it is sent, once, with both sizes; the store goes on."""
    from typedstore import QueryError, make_store

    store = make_store(f"{mysql_base_url}#table=packet_{uuid.uuid4().hex[:8]}")
    try:
        kept = store.save(Job("kept"))
        with store.engine.connect() as conn:  # type: ignore[attr-defined]
            limit = conn.exec_driver_sql("SELECT @@max_allowed_packet").scalar()
        huge = b"x" * limit  # sent in hexadecimal: twice the limit
        with pytest.raises(QueryError) as info:
            list(store.query(store.table.c.data == huge).ids())  # type: ignore[attr-defined]
        message = str(info.value)
        assert f"max_allowed_packet ({limit} bytes)" in message and "nothing was sent" in message
        assert list(store.query().ids()) == [kept]
    finally:
        store.close()
