"""What the benchmark measures: typedstore's backends, the floors beneath them, the peers.

Every contestant offers the same operations on job objects. The *floors* are the
least a store can do with the same durability: a bare ``sqlite3`` loop with
typedstore's SQLite pragmas, a bare psycopg loop, bare pickle + fsync'd atomic
file writes. The *peers* are other Python stores of pickled objects.
"""

from __future__ import annotations

import os
import pickle
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.workload import BenchJob, BenchRow
from typedstore import DEFAULT_PROTOCOL, make_store
from typedstore.defaults import SQLITE_BUSY_TIMEOUT, SQLITE_PRAGMAS


def dir_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class Contestant:
    """One store under test. ``where`` is a fresh directory for this round."""

    name = ""
    kind = ""  # "typedstore", "floor" or "peer"
    floor = ""  # the floor this contestant is compared with

    def __init__(self, where: Path, pg_url: str | None = None) -> None:
        self.where = where
        self.pg_url = pg_url

    def open(self) -> None: ...
    def close(self) -> None: ...
    def save(self, job: BenchJob) -> Any: raise NotImplementedError
    def load(self, id_: Any) -> Any: raise NotImplementedError
    def replace(self, id_: Any, job: Any) -> None: raise NotImplementedError
    def list(self) -> list[Any]: raise NotImplementedError
    def remove(self, id_: Any) -> None: raise NotImplementedError
    def batch_save(self, jobs: list[BenchJob]) -> list[Any]: raise NotImplementedError
    def query_objects(self, state: str) -> list[Any]: raise NotImplementedError
    def query_rows(self, state: str) -> list[Any]: raise NotImplementedError
    def stream_objects(self) -> Iterable[Any]: raise NotImplementedError
    def disk_bytes(self) -> int: return dir_bytes(self.where)


# ---------------------------------------------------------------- typedstore


class TypedstoreContestant(Contestant):
    kind = "typedstore"

    def url(self) -> str: raise NotImplementedError

    def open(self) -> None:
        self.store: Any = make_store(self.url(), row_model=BenchRow)

    def close(self) -> None:
        self.store.close()

    def save(self, job: BenchJob) -> Any:
        return self.store.save(job)

    def load(self, id_: Any) -> Any:
        return self.store.load(id_)

    def replace(self, id_: Any, job: Any) -> None:
        self.store.replace(id_, job)

    def list(self) -> list[Any]:
        return list(self.store.list())

    def remove(self, id_: Any) -> None:
        self.store.remove(id_)

    def batch_save(self, jobs: list[BenchJob]) -> list[Any]:
        return list(self.store.save_many(jobs))

    def query_objects(self, state: str) -> list[Any]:
        return list(self.store.query(BenchRow.state == state).objects())

    def query_rows(self, state: str) -> list[Any]:
        return list(self.store.query(BenchRow.state == state).tuples())

    def stream_objects(self) -> Iterable[Any]:
        return self.store.query().objects()


class TypedstoreSqlite(TypedstoreContestant):
    name = "typedstore-sqlite"
    floor = "floor-sqlite"

    def url(self) -> str:
        return f"sqlite:///{self.where / 'store.db'}"


class TypedstorePostgres(TypedstoreContestant):
    name = "typedstore-postgresql"
    floor = "floor-postgresql"

    def url(self) -> str:
        assert self.pg_url
        return f"{self.pg_url}#table=ts_{self.where.name}"

    def disk_bytes(self) -> int:
        import sqlalchemy as sa

        with self.store.engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT pg_total_relation_size(:t)"),
                                    {"t": self.store.table_name}).scalar_one())


class TypedstoreFiles(TypedstoreContestant):
    name = "typedstore-files"
    floor = "floor-files"

    def url(self) -> str:
        return str(self.where / "jobs")

    def query_rows(self, state: str) -> list[Any]:
        return list(self.store.query(BenchRow.state == state).tuples())


# ---------------------------------------------------------------- floors


def _dump(job: Any) -> bytes:
    return pickle.dumps(job, DEFAULT_PROTOCOL)


class SqliteFloor(Contestant):
    """A bare sqlite3 loop: typedstore's pragmas, one autocommit statement per write."""

    name = "floor-sqlite"
    kind = "floor"
    floor = "floor-sqlite"

    def open(self) -> None:
        self.db = sqlite3.connect(self.where / "floor.db", isolation_level=None,
                                  timeout=SQLITE_BUSY_TIMEOUT)
        for key, value in SQLITE_PRAGMAS.items():
            self.db.execute(f"PRAGMA {key}={value}")
        self.db.execute("CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY, data BLOB, "
                        "state VARCHAR(128), jobname VARCHAR(64), cores INTEGER)")
        self.db.execute("CREATE INDEX IF NOT EXISTS ix_state ON jobs (state)")
        self.db.execute("CREATE INDEX IF NOT EXISTS ix_cores ON jobs (cores)")
        self.next_id = (self.db.execute("SELECT MAX(id) FROM jobs").fetchone()[0] or 0) + 1

    def close(self) -> None:
        self.db.close()

    def _row(self, id_: int, job: Any) -> tuple[Any, ...]:
        return (id_, _dump(job), job.execution.state, job.jobname, job.requested_cores)

    def save(self, job: BenchJob) -> Any:
        id_ = self.next_id
        self.next_id += 1
        self.db.execute("INSERT INTO jobs VALUES (?, ?, ?, ?, ?)", self._row(id_, job))
        return id_

    def load(self, id_: Any) -> Any:
        return pickle.loads(self.db.execute("SELECT data FROM jobs WHERE id = ?",
                                            (id_,)).fetchone()[0])

    def replace(self, id_: Any, job: Any) -> None:
        self.db.execute("UPDATE jobs SET data = ?, state = ?, jobname = ?, cores = ? "
                        "WHERE id = ?", (*self._row(id_, job)[1:], id_))

    def list(self) -> list[Any]:
        return [r[0] for r in self.db.execute("SELECT id FROM jobs ORDER BY id")]

    def remove(self, id_: Any) -> None:
        self.db.execute("DELETE FROM jobs WHERE id = ?", (id_,))

    def batch_save(self, jobs: list[BenchJob]) -> list[Any]:
        first = self.next_id
        self.next_id += len(jobs)
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany("INSERT INTO jobs VALUES (?, ?, ?, ?, ?)",
                            [self._row(first + i, job) for i, job in enumerate(jobs)])
        self.db.execute("COMMIT")
        return list(range(first, first + len(jobs)))

    def query_objects(self, state: str) -> list[Any]:
        return [pickle.loads(r[0]) for r in
                self.db.execute("SELECT data FROM jobs WHERE state = ? ORDER BY id", (state,))]

    def query_rows(self, state: str) -> list[Any]:
        return self.db.execute("SELECT id, state, jobname, cores FROM jobs WHERE state = ? "
                               "ORDER BY id", (state,)).fetchall()

    def stream_objects(self) -> Iterable[Any]:
        for (data,) in self.db.execute("SELECT data FROM jobs ORDER BY id"):
            yield pickle.loads(data)


class PostgresFloor(SqliteFloor):
    """A bare psycopg loop in autocommit mode: one round trip per write."""

    name = "floor-postgresql"
    floor = "floor-postgresql"

    def open(self) -> None:
        import psycopg
        import sqlalchemy as sa

        url = sa.make_url(self.pg_url.split("#")[0] if self.pg_url else "")
        query = dict(url.query)
        self.db = psycopg.connect(
            host=url.host, port=url.port, user=url.username, password=url.password or None,
            dbname=url.database, autocommit=True, options=str(query.get("options", "")))
        self.table = f"floor_{self.where.name}"
        self.db.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (id BIGINT PRIMARY KEY, "
                        "data BYTEA, state VARCHAR(128), jobname VARCHAR(64), cores INTEGER)")
        self.db.execute(f"CREATE INDEX IF NOT EXISTS ix_{self.table}_state "
                        f"ON {self.table} (state)")
        self.db.execute(f"CREATE INDEX IF NOT EXISTS ix_{self.table}_cores "
                        f"ON {self.table} (cores)")
        row = self.db.execute(f"SELECT MAX(id) FROM {self.table}").fetchone()
        self.next_id = ((row[0] if row else 0) or 0) + 1

    def save(self, job: BenchJob) -> Any:
        id_ = self.next_id
        self.next_id += 1
        self.db.execute(f"INSERT INTO {self.table} VALUES (%s, %s, %s, %s, %s)",
                        self._row(id_, job))
        return id_

    def load(self, id_: Any) -> Any:
        row = self.db.execute(f"SELECT data FROM {self.table} WHERE id = %s", (id_,)).fetchone()
        assert row is not None
        return pickle.loads(row[0])

    def replace(self, id_: Any, job: Any) -> None:
        self.db.execute(f"UPDATE {self.table} SET data = %s, state = %s, jobname = %s, "
                        "cores = %s WHERE id = %s", (*self._row(id_, job)[1:], id_))

    def list(self) -> list[Any]:
        return [r[0] for r in self.db.execute(f"SELECT id FROM {self.table} ORDER BY id")]

    def remove(self, id_: Any) -> None:
        self.db.execute(f"DELETE FROM {self.table} WHERE id = %s", (id_,))

    def batch_save(self, jobs: list[BenchJob]) -> list[Any]:
        first = self.next_id
        self.next_id += len(jobs)
        with self.db.transaction(), self.db.cursor() as cur:
            cur.executemany(f"INSERT INTO {self.table} VALUES (%s, %s, %s, %s, %s)",
                            [self._row(first + i, job) for i, job in enumerate(jobs)])
        return list(range(first, first + len(jobs)))

    def query_objects(self, state: str) -> list[Any]:
        return [pickle.loads(r[0]) for r in self.db.execute(
            f"SELECT data FROM {self.table} WHERE state = %s ORDER BY id", (state,))]

    def query_rows(self, state: str) -> list[Any]:
        return self.db.execute(f"SELECT id, state, jobname, cores FROM {self.table} "
                               "WHERE state = %s ORDER BY id", (state,)).fetchall()

    def stream_objects(self) -> Iterable[Any]:
        for (data,) in self.db.execute(f"SELECT data FROM {self.table} ORDER BY id"):
            yield pickle.loads(data)

    def disk_bytes(self) -> int:
        row = self.db.execute(f"SELECT pg_total_relation_size('{self.table}')").fetchone()
        return int(row[0]) if row else 0


class FilesFloor(Contestant):
    """Bare pickle files: temp file, fsync, rename, directory fsync (typedstore's durability)."""

    name = "floor-files"
    kind = "floor"
    floor = "floor-files"

    def open(self) -> None:
        self.dir = self.where / "floor-files"
        self.dir.mkdir(exist_ok=True)
        self.next_id = len(os.listdir(self.dir)) + 1

    def _write(self, name: str, data: bytes) -> None:
        tmp = self.dir / f".{name}.tmp"
        with open(tmp, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, self.dir / name)
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def save(self, job: BenchJob) -> Any:
        name = f"job.{self.next_id}"
        self.next_id += 1
        self._write(name, _dump(job))
        return name

    def load(self, id_: Any) -> Any:
        return pickle.loads((self.dir / id_).read_bytes())

    def replace(self, id_: Any, job: Any) -> None:
        self._write(id_, _dump(job))

    def list(self) -> list[Any]:
        return [n for n in os.listdir(self.dir) if not n.startswith(".")]

    def remove(self, id_: Any) -> None:
        (self.dir / id_).unlink()

    def batch_save(self, jobs: list[BenchJob]) -> list[Any]:
        return [self.save(job) for job in jobs]

    def query_objects(self, state: str) -> list[Any]:
        objs = (self.load(n) for n in self.list())
        return [o for o in objs if o.execution.state == state]

    def query_rows(self, state: str) -> list[Any]:
        return [(o.jobname, o.requested_cores) for o in self.query_objects(state)]

    def stream_objects(self) -> Iterable[Any]:
        return (self.load(n) for n in self.list())


# ---------------------------------------------------------------- peers


class DiskcachePeer(Contestant):
    """diskcache.Cache: SQLite index, pickled values (no query API: scan and filter)."""

    name = "diskcache"
    kind = "peer"
    floor = "floor-sqlite"

    def open(self) -> None:
        import diskcache

        self.cache = diskcache.Cache(str(self.where / "diskcache"))
        self.next_id = len(self.cache) + 1

    def close(self) -> None:
        self.cache.close()

    def save(self, job: BenchJob) -> Any:
        id_ = self.next_id
        self.next_id += 1
        self.cache[id_] = job
        return id_

    def load(self, id_: Any) -> Any:
        return self.cache[id_]

    def replace(self, id_: Any, job: Any) -> None:
        self.cache[id_] = job

    def list(self) -> list[Any]:
        return list(self.cache.iterkeys())

    def remove(self, id_: Any) -> None:
        del self.cache[id_]

    def batch_save(self, jobs: list[BenchJob]) -> list[Any]:
        ids = []
        with self.cache.transact():
            for job in jobs:
                ids.append(self.save(job))
        return ids

    def query_objects(self, state: str) -> list[Any]:
        return [o for o in (self.cache[k] for k in self.cache.iterkeys())
                if o.execution.state == state]

    def query_rows(self, state: str) -> list[Any]:
        return [(o.jobname, o.requested_cores) for o in self.query_objects(state)]

    def stream_objects(self) -> Iterable[Any]:
        return (self.cache[k] for k in self.cache.iterkeys())


class SqlitedictPeer(Contestant):
    """sqlitedict.SqliteDict with autocommit (each write committed)."""

    name = "sqlitedict"
    kind = "peer"
    floor = "floor-sqlite"

    def open(self) -> None:
        from sqlitedict import SqliteDict

        self.db = SqliteDict(str(self.where / "sqlitedict.db"), autocommit=True)
        self.next_id = len(self.db) + 1

    def close(self) -> None:
        self.db.close()

    def save(self, job: BenchJob) -> Any:
        id_ = str(self.next_id)
        self.next_id += 1
        self.db[id_] = job
        return id_

    def load(self, id_: Any) -> Any:
        return self.db[id_]

    def replace(self, id_: Any, job: Any) -> None:
        self.db[id_] = job

    def list(self) -> list[Any]:
        return list(self.db.keys())

    def remove(self, id_: Any) -> None:
        del self.db[id_]

    def batch_save(self, jobs: list[BenchJob]) -> list[Any]:
        self.db.autocommit = False
        ids = [self.save(job) for job in jobs]
        self.db.commit()
        self.db.autocommit = True
        return ids

    def query_objects(self, state: str) -> list[Any]:
        return [o for o in self.db.values() if o.execution.state == state]

    def query_rows(self, state: str) -> list[Any]:
        return [(o.jobname, o.requested_cores) for o in self.query_objects(state)]

    def stream_objects(self) -> Iterable[Any]:
        return self.db.values()


ALL = [SqliteFloor, TypedstoreSqlite, PostgresFloor, TypedstorePostgres, FilesFloor,
       TypedstoreFiles, DiskcachePeer, SqlitedictPeer]
