"""``typedstore init`` and revisions kept per table, with the real ``alembic`` command.

A project directory outside the repository (``tmp_path``) gets ``typedstore init``;
its row models live in modules of that directory, imported by ``alembic`` and
``typedstore`` (``prepend_sys_path = .``) from child processes run there. Two
tables of one database each get their own revisions, which never run on the
other; both migrate and downgrade independently, and ``downgrade base`` leaves
nothing of a table behind. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import typedstore
from tests.migrations.models import M1, M2, make_jobs
from tests.migrations.support import REPO, TYPEDSTORE, Db, run_typedstore, unique_table
from typedstore import SchemaError, make_store
from typedstore.scaffold import FILES, init, table_directory
from typedstore.schema import code_head
from typedstore.tables import version_table

JOB_MODULE = '''\
from typedstore import GET, Persistable, StoreRow, extracted


class Job(Persistable):
    def __init__(self, jobname, requested_cores):
        self.jobname = jobname
        self.requested_cores = requested_cores


class JobRow(StoreRow, table=True):
    __tablename__ = {table!r}
    jobname: str | None = extracted(GET.jobname)
'''
CORES_FIELD = "    cores: int | None = extracted(GET.requested_cores)\n"
TASK_MODULE = '''\
from typedstore import GET, StoreRow, extracted


class TaskRow(StoreRow, table=True):
    __tablename__ = {table!r}
    owner: str | None = extracted(GET.owner)
'''
SAVE_JOBS = '''\
import sys
from typedstore import make_store
from jobs import Job, JobRow

with make_store(sys.argv[1], row_model=JobRow) as store:
    store.save_many([Job(f"job-{n}", n % 3 + 1) for n in range(12)])
'''
QUERY_JOBS = '''\
import sys
from typedstore import make_store
from jobs import JobRow

with make_store(sys.argv[1], row_model=JobRow) as store:
    print(store.query(JobRow.cores == 2).count(), store.query(JobRow.cores.is_(None)).count())
'''


def project_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "TYPEDSTORE_URL")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def run(project: Path, *argv: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    """``argv`` (``alembic``, ``typedstore``, ``python``) run in ``project``."""
    program = {"alembic": [sys.executable, "-m", "alembic"], "typedstore": [TYPEDSTORE],
               "python": [sys.executable]}[argv[0]]
    done = subprocess.run([*program, *argv[1:]], cwd=project, env=project_env(),
                          capture_output=True, text=True, timeout=180, check=False)
    if done.returncode != expect:
        raise AssertionError(f"{argv} exited {done.returncode}, expected {expect}\n"
                             f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}")
    return done


def test_init_writes_the_repositorys_own_files(tmp_path: Path) -> None:
    written = init(tmp_path / "project")
    assert sorted(str(p.relative_to(tmp_path / "project")) for p in written) == sorted(FILES)
    for name, text in FILES.items():
        # The repository's example is made by the same code.
        assert (REPO / name).read_text() == text, name
        assert (tmp_path / "project" / name).read_text() == text
    assert "prepend_sys_path = ." in FILES["alembic.ini"]
    assert init(tmp_path / "project") == []  # twice: nothing to do

    (tmp_path / "project" / "alembic.ini").write_text("[alembic]\n")
    with pytest.raises(typedstore.StoreError, match=r"alembic\.ini already exist"):
        init(tmp_path / "project")
    assert (tmp_path / "project" / "alembic.ini").read_text() == "[alembic]\n"
    assert [p.name for p in init(tmp_path / "project", force=True)] == ["alembic.ini"]


def test_table_directories_are_distinct_file_names() -> None:
    assert table_directory("jobs") == "jobs"
    assert table_directory("Jobs-2.b") == "Jobs-2.b"
    odd = [table_directory(name) for name in ("a/b", "a b", "ab~x", ".ab", "..", "a%(b)s")]
    assert len(set(odd)) == len(odd)
    assert all("/" not in d and d not in (".", "..") and not d.startswith(".") for d in odd)
    assert table_directory("a/b") != table_directory("ab")


def test_two_tables_with_their_own_revisions(db_sqlite_pg: Db, tmp_path: Path) -> None:
    db = db_sqlite_pg
    project = tmp_path / "project"
    project.mkdir()
    jobs, tasks = unique_table(), unique_table()
    url = db.url
    head = code_head()

    run(project, "typedstore", "init")
    for name in FILES:
        assert (project / name).is_file()

    done = run(project, "alembic", "-x", f"url={url}", "-x", f"table={jobs}", "upgrade", "heads")
    assert "Running upgrade ts0001 -> ts0002" in done.stderr
    assert f" -> {head}, " in done.stderr  # each step logged, to the last
    assert db.revisions(jobs) == [head]

    (project / "jobs.py").write_text(JOB_MODULE.format(table=jobs))
    (project / "save.py").write_text(SAVE_JOBS)
    done = run(project, "typedstore", "upgrade", url, "--row-model", "jobs:JobRow")
    assert f"table {jobs!r}" in done.stdout and "added: jobname" in done.stdout
    run(project, "python", "save.py", url)
    assert {"jobname"} <= db.columns(jobs) and "cores" not in db.columns(jobs)

    (project / "jobs.py").write_text(JOB_MODULE.format(table=jobs) + CORES_FIELD)
    done = run(project, "typedstore", "check", url, "--row-model", "jobs:JobRow", expect=1)
    assert "ACTION column `cores` (BIGINT) is in JobRow but not in the database" in done.stdout

    # No -x table: the row model's __tablename__ names it.
    run(project, "alembic", "-x", f"url={url}", "-x", "row_model=jobs:JobRow", "revision",
        "--autogenerate", "-m", "cores")
    [generated] = (project / "migrations" / "versions" / jobs).glob("*.py")
    source = generated.read_text()
    assert f"Store table: {jobs}" in source
    assert "add_column(sa.Column('cores'" in source and "jobname" not in source
    assert f"down_revision: str | Sequence[str] | None = {head!r}" in source

    run(project, "alembic", "-x", f"url={url}", "-x", f"table={jobs}", "upgrade", "head")
    revision = generated.name.split("_")[1]
    assert db.revisions(jobs) == [revision]
    done = run(project, "typedstore", "backfill", url, "--row-model", "jobs:JobRow",
               "--column", "cores")
    assert "12 rows filled; 0 left NULL" in done.stdout
    (project / "query.py").write_text(QUERY_JOBS)
    assert run(project, "python", "query.py", url).stdout.split() == ["4", "0"]
    done = run(project, "typedstore", "check", url, "--row-model", "jobs:JobRow", "--json")
    report = json.loads(done.stdout)
    assert report["table"] == jobs and report["differences"] == []
    assert report["action_needed"] is False

    # A second table of the same database, with revisions of its own.
    run(project, "alembic", "-x", f"url={url}", "-x", f"table={tasks}", "upgrade", "heads")
    assert db.revisions(tasks) == [head]  # the jobs revision did not run here
    assert "cores" not in db.columns(tasks)
    (project / "tasks.py").write_text(TASK_MODULE.format(table=tasks))
    run(project, "alembic", "-x", f"url={url}", "-x", "row_model=tasks:TaskRow", "revision",
        "--autogenerate", "-m", "owner")
    [task_revision] = (project / "migrations" / "versions" / tasks).glob("*.py")
    assert jobs not in task_revision.read_text()
    run(project, "alembic", "-x", f"url={url}", "-x", f"table={tasks}", "upgrade", "heads")
    assert "owner" in db.columns(tasks) and "owner" not in db.columns(jobs)
    assert db.revisions(jobs) == [revision]
    # upgrade heads of jobs again: the tasks revision never runs on it.
    run(project, "alembic", "-x", f"url={url}", "-x", f"table={jobs}", "upgrade", "heads")
    assert "owner" not in db.columns(jobs) and db.revisions(jobs) == [revision]

    # Each downgrades alone.
    run(project, "alembic", "-x", f"url={url}", "-x", f"table={tasks}", "downgrade", "-1")
    assert "owner" not in db.columns(tasks) and db.revisions(tasks) == [head]
    assert "cores" in db.columns(jobs) and db.revisions(jobs) == [revision]
    run(project, "alembic", "-x", f"url={url}", "-x", f"table={jobs}", "downgrade", "base")
    assert not db.has_table(jobs) and not db.has_table(version_table(jobs, db.backend))
    assert db.counter(jobs) is None
    assert db.has_table(tasks) and db.revisions(tasks) == [head]

    # The table made again from nothing, with its own revision, by the same command.
    run(project, "alembic", "-x", f"url={url}", "-x", f"table={jobs}", "upgrade", "heads")
    assert "cores" in db.columns(jobs) and db.revisions(jobs) == [revision]
    # jobname came from code (typedstore upgrade), not from a revision: named as missing.
    done = run(project, "typedstore", "check", url, "--row-model", "jobs:JobRow", expect=1)
    assert "column `jobname`" in done.stdout and "`cores`" not in done.stdout


def test_one_rule_for_the_table_name(sqlite_db: Db) -> None:
    db = sqlite_db
    # No #table= and no table=: the row model's __tablename__, never "store".
    assert typedstore.upgrade(db.url, row_model=M1) == ["jobname"]
    assert db.has_table(M1.__tablename__) and not db.has_table("store")
    with make_store(db.url, row_model=M1) as store:
        assert store.table_name == M1.__tablename__  # type: ignore[attr-defined]
    assert typedstore.drift(db.url, row_model=M1) == []
    done = run_typedstore("check", db.url, "--row-model", "tests.migrations.models:M1")
    assert f"table {M1.__tablename__!r}" in done.stdout
    typedstore.downgrade(db.url, "base", row_model=M1)
    assert not db.has_table(M1.__tablename__)
    # explicit > #table= > __tablename__
    typedstore.upgrade(db.at("fromurl"), row_model=M1)
    typedstore.upgrade(db.at("fromurl"), "explicit", row_model=M1)
    assert db.has_table("fromurl") and db.has_table("explicit")


def test_the_errors_command_fixes_that_table(db_sqlite_pg: Db) -> None:
    db = db_sqlite_pg
    table = unique_table()
    url = db.at(table)
    with make_store(url, row_model=M1) as store:
        store.save_many(make_jobs(0, 3))
    with pytest.raises(SchemaError) as info:
        make_store(url, row_model=M2)
    command = info.value.command
    assert command is not None and command in str(info.value)
    assert command == (f"typedstore upgrade {shlex.quote(url)} --table {table} "
                       "--row-model tests.migrations.models:M2")
    run_typedstore(*shlex.split(command)[1:])
    assert "cores" in db.columns(table)
    with make_store(url, row_model=M2) as store:
        assert len(store.list()) == 3


def test_check_reads_as_sentences(sqlite_db: Db) -> None:
    db = sqlite_db
    table = unique_table()
    url = db.at(table)
    typedstore.upgrade(url, row_model=M2)
    # Without the row model the typed columns are extra: kept, nothing to do.
    done = run_typedstore("check", url)
    assert "note   column `cores` (BIGINT) is in the database but not in the row model" in \
        done.stdout
    assert "extra columns are kept" in done.stdout and "remove_column" not in done.stdout
    assert done.stdout.rstrip().endswith("in step (nothing to do)")
    done = run_typedstore("check", url, "--json")
    report = json.loads(done.stdout)
    assert report["action_needed"] is False
    assert {d["name"]: d["kind"] for d in report["differences"]} == {
        "cores": "extra_column", "jobname": "extra_column"}
    # A missing table needs action: exit 1, and the command that makes it.
    done = run_typedstore("check", db.at("nosuch"), "--json", expect=1)
    [missing] = json.loads(done.stdout)["differences"]
    assert missing["kind"] == "missing_table" and "upgrade heads" in missing["message"]
    # A row model that cannot be imported: a clear error, exit 2, no traceback.
    done = run_typedstore("check", url, "--row-model", "nosuch_module:Row", expect=2)
    assert "row model 'nosuch_module:Row' cannot be imported" in done.stderr
    assert "Traceback" not in done.stderr


def test_downgrade_base_leaves_nothing(db: Db) -> None:
    table = unique_table()
    url = db.at(table)
    with make_store(url, row_model=M1) as store:
        store.save_many(make_jobs(0, 5))
    typedstore.upgrade(url, row_model=M2)
    with make_store(url, row_model=M2) as store:
        typedstore.backfill(store, ["cores"], progress=False)
    # A checkpoint an interrupted back-fill left behind.
    db.execute("INSERT INTO typedstore_backfill (table_name, columns, last_id) "
               "VALUES (:t, 'cores', 3)", t=table)
    typedstore.downgrade(url, "base")
    for name in (table, version_table(table, db.backend)):
        assert not db.has_table(name), name
    assert db.counter(table) is None
    if db.has_table("typedstore_backfill"):
        assert not db.rows("SELECT * FROM typedstore_backfill WHERE table_name = :t", t=table)


def test_a_revision_never_goes_into_the_installed_package(sqlite_db: Db, tmp_path: Path) -> None:
    """An alembic.ini whose only version location is typedstore's own (an old or
    hand-edited copy) would file a user's revision among the packaged ones, where
    every table runs it and an upgrade of typedstore loses it: refused, nothing written."""
    project = tmp_path / "project"
    init(project)
    ini = project / "alembic.ini"
    ini.write_text(ini.read_text().replace(
        "version_locations = typedstore:migrations/versions %(here)s/migrations/versions",
        "version_locations = typedstore:migrations/versions"))
    packaged = Path(typedstore.__file__).parent / "migrations" / "versions"
    before = sorted(packaged.rglob("*.py"))
    done = run(project, "alembic", "-x", f"url={sqlite_db.url}", "-x", "table=jobs",
               "revision", "-m", "cores", expect=255)  # alembic's exit code for a FAILED:
    assert "would be written into the installed typedstore package" in done.stderr
    assert "version_locations" in done.stderr
    assert sorted(packaged.rglob("*.py")) == before


def test_check_never_advises_an_upgrade_that_would_refuse(sqlite_db: Db) -> None:
    """Beside a type change, `typedstore upgrade` refuses the table: a missing
    column's advice is then the migration, never that command."""
    from tests.migrations.models import MRetyped
    from typedstore.differences import differences

    table = unique_table()
    url = sqlite_db.at(table)
    typedstore.upgrade(url, row_model=M1)
    found = {d.name: d for d in differences(url, table, MRetyped)}
    assert found["jobname"].kind == "type" and found["jobname"].action_needed
    assert found["cores"].kind == "missing_column"
    assert "typedstore upgrade" not in found["cores"].message
    assert "revision --autogenerate" in found["cores"].message
    # Without the type change the cheap command is the advice.
    plain = {d.name: d for d in differences(url, table, M2)}
    assert "typedstore upgrade" in plain["cores"].message


def test_init_refuses_revisions_every_table_would_run(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """An older Alembic project's revisions directly in migrations/versions would
    run on every store table: named, nothing written; --force writes and warns."""
    project = tmp_path / "project"
    (project / "migrations" / "versions").mkdir(parents=True)
    old = project / "migrations" / "versions" / "ce58486ea7d6_create_users.py"
    old.write_text("revision = 'ce58486ea7d6'\ndown_revision = None\n")
    with pytest.raises(typedstore.StoreError, match="run on every store table"):
        init(project)
    assert not (project / "alembic.ini").exists()
    assert init(project, force=True)
    assert "ce58486ea7d6_create_users.py" in caplog.text
