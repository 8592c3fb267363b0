"""Job classes, the row model and subprocess workers shared by the SQL store tests.

Pickles name classes by module, so everything a child process loads or saves lives
here, in a module the child can import by the same name (``sql_jobs``): pytest puts
this directory on ``sys.path`` (rootdir-based "prepend" import mode, no
``__init__.py``), and :func:`child_env` puts it on a child's ``PYTHONPATH``.

The row model's table name is unique in the test suite: SQLModel table classes share
one global ``MetaData``; a store copies the columns into its own table anyway.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from typedstore import GET, Persistable, StoreRow, extracted, make_store

HERE = Path(__file__).resolve().parent

#: Backends with a SQL table (no file store).
SQL_BACKENDS = ["sqlite", "postgresql", "mysql"]


class Execution:
    """Where a job is in its life (GC3Pie keeps it in ``job.execution``)."""

    def __init__(self, state: str) -> None:
        self.state = state


class Job(Persistable):
    """A Persistable with arbitrary public attributes."""

    def __init__(self, jobname: str | None = None, **attrs: Any) -> None:
        if jobname is not None:
            self.jobname = jobname
        for key, value in attrs.items():
            setattr(self, key, value)


def make_job(jobname: str, cores: Any = None, state: str | None = None, **attrs: Any) -> Job:
    """A job with GC3Pie's attribute names; ``None`` leaves the attribute out.

    ``cores`` is usually an int; tests pass other types to provoke validation errors.
    """
    job = Job(jobname, **attrs)
    if cores is not None:
        job.requested_cores = cores
    if state is not None:
        job.execution = Execution(state)
    return job


class SqlTestJobRow(StoreRow, table=True):
    """The typed row of the SQL tests."""

    __tablename__ = "sqltests_jobs"

    jobname: str | None = extracted(GET.jobname)
    cores: int = extracted(GET.requested_cores, default=1, index=True)


# ---------------------------------------------------------------- subprocess workers


def child_env() -> dict[str, str]:
    """Environment of a child process that must import this module as ``sql_jobs``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE), env.get("PYTHONPATH", "")) if p
    )
    return env


#: ``python -c`` program of a saving child:
#: ``sql_jobs.save_worker(url, tag, count[, create[, gc3pie]])``.
SAVE_WORKER = "import sys, sql_jobs; sql_jobs.save_worker(*sys.argv[1:])"

#: ``gc3pie_compatible`` values as :func:`save_worker` takes them on its command line.
GC3PIE_MODES: dict[str, bool | None] = {"auto": None, "on": True, "off": False}


def save_worker(url: str, tag: str, count: int | str, create: str = "create",
                gc3pie: str = "auto") -> None:
    """Child process: wait for ``go`` on stdin, save ``count`` jobs, print their ids.

    Prints ``ready`` once imported, then (after the parent's ``go``) opens the store
    and saves: single saves, then one ``save_many`` of a handful, so both id paths
    run concurrently with the other children. The last line is a JSON list of
    ``[id, jobname]`` pairs. ``create="nocreate"`` opens the store with ``create=False``;
    ``gc3pie`` (``auto``, ``on``, ``off``) gives its ``gc3pie_compatible``.
    """
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("no go")
    count = int(count)
    store = make_store(url, create=create == "create", gc3pie_compatible=GC3PIE_MODES[gc3pie])
    saved: list[tuple[int, str]] = []
    singles = count - count // 10
    for i in range(singles):
        name = f"{tag}-{i}"
        saved.append((int(store.save(Job(name))), name))
    batch = [Job(f"{tag}-{i}") for i in range(singles, count)]
    for id_, job in zip(store.save_many(batch), batch, strict=True):
        saved.append((int(id_), job.jobname))
    store.close()
    print(json.dumps(saved), flush=True)


def last_error(stderr: str) -> str:
    """The last ``SomeError: message`` line of a traceback (SQLAlchemy adds lines after it)."""
    lines = [line for line in stderr.splitlines() if line and not line[0].isspace()]
    errors = [line for line in lines if re.match(r"^(?:\w+\.)*[A-Z][a-z]\w*: ", line)]
    return (errors or lines or [""])[-1]


class Savers:
    """Child processes running :func:`save_worker` on one store URL.

    ``Savers(url, n, saves)`` starts the children and waits until each is ready;
    :meth:`go` lets them all save at once; :meth:`finish` waits for them and
    returns every ``(id, jobname)`` saved, raising ``AssertionError`` with the
    children's last error lines if any failed. Use it as a context manager so
    children are killed if the test fails early.
    """

    def __init__(self, url: str, processes: int, saves: int, create: bool = True,
                 gc3pie_compatible: bool | None = None) -> None:
        mode = {v: k for k, v in GC3PIE_MODES.items()}[gc3pie_compatible]
        self.children = [
            subprocess.Popen(
                [sys.executable, "-c", SAVE_WORKER, url, f"p{k}", str(saves),
                 "create" if create else "nocreate", mode],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, env=child_env(),
            )
            for k in range(processes)
        ]
        for child in self.children:
            assert child.stdout is not None
            line = child.stdout.readline()
            if line.strip() != "ready":
                _, err = child.communicate(timeout=60)
                raise AssertionError(f"saver did not start: {line!r}\n{err}")

    @property
    def pids(self) -> list[int]:
        return [child.pid for child in self.children]

    def go(self) -> None:
        for child in self.children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()

    def finish(self, timeout: float = 240) -> list[tuple[int, str]]:
        saved: list[tuple[int, str]] = []
        failures = []
        for child in self.children:
            out, err = child.communicate(timeout=timeout)
            if child.returncode != 0:
                failures.append(last_error(err) or f"exit code {child.returncode}")
                continue
            saved += [(int(i), name) for i, name in json.loads(out.strip().splitlines()[-1])]
        assert not failures, f"{len(failures)} saver(s) failed: {failures}"
        return saved

    def __enter__(self) -> Savers:
        return self

    def __exit__(self, *exc: object) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
                child.wait()
            for stream in (child.stdin, child.stdout, child.stderr):
                if stream is not None:
                    stream.close()


def check_saved(store: Any, saved: list[tuple[int, str]], processes: int, saves: int) -> None:
    """Every save of :class:`Savers` is listed, counted and loads; no id was issued twice."""
    ids = [i for i, _ in saved]
    assert len(ids) == processes * saves
    assert len(set(ids)) == len(ids), "two saves got the same id"
    assert sorted(name for _, name in saved) == sorted(
        f"p{k}-{i}" for k in range(processes) for i in range(saves)
    )
    assert store.list() == sorted(ids)
    assert store.query().count() == len(ids)
    for id_, name in saved:
        assert store.load(id_).jobname == name


def pg_backend_pid(conn: Any) -> int:
    return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def pg_wait_for_blocked(engine: Any, holder: int, depth: int = 1, at_least: int = 1,
                        deadline_s: float = 120) -> None:
    """Wait until PostgreSQL sessions wait, directly or not, on session ``holder``'s locks.

    ``depth=1``: ``at_least`` sessions are blocked by ``holder``; ``depth=2``:
    ``at_least`` sessions are blocked by sessions blocked by ``holder``. Polls
    ``pg_blocking_pids`` from a connection of ``engine`` (outside any transaction,
    so ``pg_stat_activity`` is fresh each time); raises ``AssertionError`` after
    ``deadline_s``. A synchronisation, not a timing check.
    """
    import time

    end = time.monotonic() + deadline_s
    seen: list[Any] = []
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        while time.monotonic() < end:
            seen = [tuple(r) for r in conn.exec_driver_sql(
                "SELECT pid, pg_blocking_pids(pid) FROM pg_stat_activity "
                "WHERE cardinality(pg_blocking_pids(pid)) > 0"
            )]
            level = {holder}
            for _ in range(depth):
                level = {pid for pid, blockers in seen if level & set(blockers)}
            if len(level) >= at_least:
                return
            time.sleep(0.05)
    raise AssertionError(f"not {at_least} session(s) {depth} deep behind {holder}: {seen}")
