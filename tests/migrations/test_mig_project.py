"""A project's own revisions seen by every entry point, and errors a user can read.

Found by the attack campaign on issue 13 (typedstore init, per-table revisions):
``typedstore.upgrade``/``downgrade`` and ``typedstore upgrade`` find the table's own
revisions through the project's ``alembic.ini`` (``--config``, else
``./alembic.ini``), so the command a ``SchemaError`` prints works; every error of
the ``typedstore`` command is one line and exit status 2, every error in the
Alembic environment one ``FAILED:`` line; autogenerate never drops a column;
``alembic upgrade`` takes typedstore's schema lock. Real commands in child
processes, run in a project directory outside the repository.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import typedstore
from tests.migrations.models import M1, make_jobs
from tests.migrations.support import Db, gc3pie_create_table, run_typedstore, unique_table
from tests.migrations.test_mig_init import CORES_FIELD, JOB_MODULE, project_env, run
from typedstore import SchemaError
from typedstore.differences import differences
from typedstore.scaffold import NEXT_STEP, table_directory
from typedstore.schema import command_url, password_note, project_config


def project_with_own_revision(tmp_path: Path, url: str, table: str) -> tuple[Path, str]:
    """A project (``typedstore init``) whose table ``table`` is at a revision of its
    own (``jobname``) and whose row model then gained a nullable field ``cores``;
    returns the project and that revision."""
    project = tmp_path / "project"
    project.mkdir()
    run(project, "typedstore", "init")
    (project / "jobs.py").write_text(JOB_MODULE.format(table=table))
    run(project, "alembic", "-x", f"url={url}", "-x", f"table={table}", "upgrade", "heads")
    run(project, "alembic", "-x", f"url={url}", "-x", "row_model=jobs:JobRow", "revision",
        "--autogenerate", "-m", "jobname")
    run(project, "alembic", "-x", f"url={url}", "-x", f"table={table}", "upgrade", "heads")
    [own] = (project / "migrations" / "versions" / table).glob("*.py")
    (project / "jobs.py").write_text(JOB_MODULE.format(table=table) + CORES_FIELD)
    return project, own.name.split("_")[1]


OPEN_STORE = '''\
import sys
from typedstore import SchemaError, make_store
from jobs import JobRow

try:
    make_store(sys.argv[1], row_model=JobRow).close()
except SchemaError as exc:
    print(exc.command)
else:
    print("opened")
'''


def test_the_command_works_on_a_table_with_its_own_revisions(sqlite_db: Db,
                                                              tmp_path: Path) -> None:
    table = unique_table()
    url = sqlite_db.url
    project, own = project_with_own_revision(tmp_path, url, table)
    (project / "open.py").write_text(OPEN_STORE)
    command = run(project, "python", "open.py", url).stdout.strip()
    assert command.startswith("typedstore upgrade ") and "--row-model jobs:JobRow" in command
    # Run as printed, in the project: it finds the table's revision through ./alembic.ini.
    done = run(project, *shlex.split(command))
    assert "added: cores" in done.stdout
    assert run(project, "python", "open.py", url).stdout.strip() == "opened"
    assert sqlite_db.revisions(table) == [own]

    # From code, in another directory: the revision is named, and so is the way out.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run(elsewhere, "typedstore", "downgrade", url, "base", "--table", table, expect=2)
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert f"is at revision {own}" in done.stderr and "--config PATH/alembic.ini" in done.stderr
    assert f"typedstore downgrade {shlex.quote(url)} base --table {table}" in done.stderr
    assert sqlite_db.revisions(table) == [own]
    # ... which works with --config, and from the project as printed.
    run(elsewhere, "typedstore", "downgrade", url, "--table", table,
        "--config", str(project / "alembic.ini"), "--", "-1")
    assert "cores" in sqlite_db.columns(table) and sqlite_db.revisions(table) != [own]
    run(project, "typedstore", "upgrade", url, "--table", table, "--row-model", "jobs:JobRow")
    assert sqlite_db.revisions(table) == [own]
    typedstore.downgrade(url, "base", table, config=project / "alembic.ini")
    assert not sqlite_db.has_table(table)


def test_a_table_at_an_unknown_revision_names_it(sqlite_db: Db, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    table = unique_table()
    url = sqlite_db.url
    project, own = project_with_own_revision(tmp_path, url, table)
    monkeypatch.chdir(tmp_path)  # no alembic.ini here
    with pytest.raises(SchemaError) as info:
        typedstore.upgrade(url, table)
    assert info.value.current == own and own in str(info.value)
    assert info.value.command == f"typedstore upgrade {shlex.quote(url)} --table {table}"
    monkeypatch.chdir(project)  # ./alembic.ini, as alembic reads it
    assert typedstore.upgrade(url, table) == []
    assert project_config() == project / "alembic.ini"
    with pytest.raises(SchemaError, match="does not exist"):
        project_config(tmp_path / "nosuch.ini")
    other = tmp_path / "other.ini"
    other.write_text("[alembic]\nscript_location = somewhere\n")
    with pytest.raises(SchemaError, match="not a typedstore project's"):
        typedstore.upgrade(url, table, config=other)


BAD_ROWS = '''\
from typedstore import StoreRow

NOT_A_MODEL = 5


def func():
    return 1


class Plain:
    pass


class NoTable(StoreRow):
    pass
'''


def test_cli_errors_are_one_line_and_exit_2(sqlite_db: Db, tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "mypkg").mkdir(parents=True)
    (project / "mypkg" / "__init__.py").write_text("")
    (project / "mypkg" / "rows.py").write_text(BAD_ROWS)
    (project / "mypkg" / "broken.py").write_text("class JobRow(:\n")
    (project / "mypkg" / "raises.py").write_text("raise RuntimeError('boom at import')\n")
    (project / "afile").write_text("")
    url = sqlite_db.url
    cases = {
        ("check", url, "--row-model", "mypkg.rows:NOT_A_MODEL"): "is int 5, not a row model",
        ("check", url, "--row-model", "mypkg.rows:func"): "is function",
        ("upgrade", url, "--row-model", "mypkg.rows:Plain"): "the class mypkg.rows.Plain",
        ("check", url, "--row-model", "mypkg.rows:NoTable"): "not a row model",
        ("check", url, "--row-model", "mypkg.broken:JobRow"): "SyntaxError at ",
        ("check", url, "--row-model", "mypkg.raises:X"): "RuntimeError: boom at import",
        ("check", url, "--row-model", "mypkg.rows:"): "not of the form package.module:Class",
        ("check", "postgresql://postgres:S3cretPW@127.0.0.1:1/x"): "cannot connect",
        ("upgrade", "mysql+pymysql://root:S3cretPW@127.0.0.1:1/x"): "cannot connect",
        ("check", "foo://bar"): "foo://bar",
        ("init", str(project / "afile" / "sub")): "cannot write",
    }
    for argv, expected in cases.items():
        done = run(project, "typedstore", *argv, expect=2)
        assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, (argv, done)
        assert expected in done.stderr, (argv, done.stderr)
        assert "S3cretPW" not in done.stderr + done.stdout


def test_alembic_errors_are_one_failed_line(sqlite_db: Db, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    run(project, "typedstore", "init")
    url = sqlite_db.url
    cases = {
        ("-x", f"url={url}", "-x", "row_model=nosuch:X", "upgrade", "heads"):
            "row model 'nosuch:X' cannot be imported",
        ("-x", f"url={url}", "-x", "row_model=:X", "upgrade", "heads"): "not of the form",
        ("-x", "table=jobs", "upgrade", "heads"): "no database URL",
        ("-x", f"url={url}", "-x", "table=jobs", "upgrade", "heads", "--sql"):
            "offline mode (--sql) is not supported",
        ("-x", "url=postgresql://postgres:S3cretPW@127.0.0.1:1/x", "upgrade", "heads"):
            "cannot connect",
    }
    for argv, expected in cases.items():
        done = run(project, "alembic", *argv, expect=255)
        assert "Traceback" not in done.stderr, (argv, done.stderr)
        # alembic prints "FAILED: ..." on stdout, and logs the message on stderr.
        failed = [line for line in done.stdout.splitlines() if line.startswith("FAILED:")]
        assert len(failed) == 1 and expected in failed[0], (argv, done.stdout, done.stderr)
        assert "S3cretPW" not in done.stderr + done.stdout


def test_autogenerate_never_drops_a_column(sqlite_db: Db, tmp_path: Path) -> None:
    table = unique_table()
    url = sqlite_db.url
    project = tmp_path / "project"
    project.mkdir()
    run(project, "typedstore", "init")
    (project / "jobs.py").write_text(JOB_MODULE.format(table=table) + CORES_FIELD)
    run(project, "typedstore", "upgrade", url, "--row-model", "jobs:JobRow")
    assert {"jobname", "cores"} <= sqlite_db.columns(table)
    # No row model: refused, nothing written.
    done = run(project, "alembic", "-x", f"url={url}", "-x", f"table={table}", "revision",
               "--autogenerate", "-m", "oops", expect=255)
    assert "autogenerate needs the row model: -x row_model=pkg.mod:Class" in done.stderr
    assert not list((project / "migrations" / "versions").rglob("*.py"))
    # alembic check writes nothing: without a row model the typed columns are kept.
    done = run(project, "alembic", "-x", f"url={url}", "-x", f"table={table}", "check")
    assert "No new upgrade operations detected" in done.stdout + done.stderr
    assert "column cores kept" in done.stderr
    # A field removed from the row model: its column is kept.
    (project / "jobs.py").write_text(JOB_MODULE.format(table=table))
    done = run(project, "alembic", "-x", f"url={url}", "-x", "row_model=jobs:JobRow",
               "revision", "--autogenerate", "-m", "removed")
    assert "column cores kept: typedstore never drops columns" in done.stderr
    [revision] = (project / "migrations" / "versions" / table).glob("*.py")
    assert "drop_column" not in revision.read_text()
    run(project, "alembic", "-x", f"url={url}", "-x", f"table={table}", "upgrade", "heads")
    assert "cores" in sqlite_db.columns(table)
    run(project, "alembic", "-x", f"url={url}", "-x", "row_model=jobs:JobRow", "check")


def test_init_suggests_a_database_in_the_project(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    done = run(project, "typedstore", "init")
    assert f"next: {NEXT_STEP}" in done.stdout and "sqlite:///" not in done.stdout
    assert "sqlite:///jobs.db -x" not in (project / "alembic.ini").read_text()
    run(project, *shlex.split(NEXT_STEP))
    assert (project / "jobs.db").is_file()


MAIN_MODEL = '''\
import sys
from typedstore import GET, SchemaError, StoreRow, extracted, make_store


class JobRow(StoreRow, table=True):
    __tablename__ = sys.argv[2]
    jobname: str | None = extracted(GET.jobname)


try:
    make_store(sys.argv[1], row_model=JobRow)
except SchemaError as exc:
    print(exc.command)
    print(exc)
'''


def test_a_row_model_of_the_script_is_not_named_main(sqlite_db: Db, tmp_path: Path) -> None:
    table = unique_table()
    url = f"{sqlite_db.url}#table={table}"
    typedstore.upgrade(url)
    (tmp_path / "inline.py").write_text(MAIN_MODEL)
    done = run(tmp_path, "python", "inline.py", url, table)
    command, message = done.stdout.splitlines()[:2]
    assert "__main__" not in done.stdout
    assert command.endswith("--row-model MODULE:JobRow")
    assert "JobRow is defined in the script being run" in message


def test_commands_say_where_the_password_goes() -> None:
    url = "postgresql://postgres:S3cretPW@127.0.0.1:5432/db"
    assert command_url(url) == "postgresql://postgres:PASSWORD@127.0.0.1:5432/db"
    assert "in place of PASSWORD" in password_note(url)
    assert password_note("postgresql://postgres@127.0.0.1:5432/db") == ""
    assert password_note("sqlite:jobs.db") == ""


def test_table_folders_never_collide_with_files() -> None:
    for name in ("README.md", "readme.MD", "__pycache__", "__init__.py"):
        folder = table_directory(name)
        assert folder != name and folder.lower() != "readme.md"
        assert folder not in ("__pycache__",)


RACE = '''\
import subprocess, sys
procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
         for cmd in (sys.argv[1].split("|"), sys.argv[2].split("|"))]
results = [p.communicate(timeout=300) for p in procs]
for p, (out, err) in zip(procs, results):
    print(p.returncode, err.replace("\\n", " // ")[-600:])
'''


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_alembic_upgrades_take_the_schema_lock(backend: str, request: pytest.FixtureRequest,
                                               tmp_path: Path) -> None:
    url = request.getfixturevalue("pg_base_url" if backend == "postgresql"
                                  else "mysql_base_url")
    project = tmp_path / "project"
    project.mkdir()
    run(project, "typedstore", "init")
    (project / "race.py").write_text(RACE)
    alembic = [sys.executable, "-m", "alembic"]
    typedstore_cmd = [str(Path(sys.executable).with_name("typedstore"))]
    for trial in range(3):
        table = unique_table()
        upgrade = [*alembic, "-x", f"url={url}", "-x", f"table={table}", "upgrade", "heads"]
        other = upgrade if trial < 2 else [*typedstore_cmd, "upgrade", url, "--table", table]
        done = subprocess.run([sys.executable, "race.py", "|".join(upgrade), "|".join(other)],
                              cwd=project, env=project_env(), capture_output=True, text=True,
                              timeout=600, check=True)
        codes = [line.split(" ", 1)[0] for line in done.stdout.splitlines()]
        assert codes == ["0", "0"], done.stdout
        assert typedstore.drift(url, table) == []


def test_check_of_an_adopted_gc3pie_table_needs_no_action(db: Db) -> None:
    """GC3Pie's ``id INTEGER`` and nullable ``state`` are notes: the store opens and
    saves on such a table as it is."""
    table = unique_table()
    db.execute(gc3pie_create_table(db.backend, table))
    url = db.at(table)
    typedstore.upgrade(url, row_model=M1)
    with typedstore.make_store(url, row_model=M1) as store:
        store.save_many(make_jobs(0, 2))
    found = differences(url, row_model=M1)
    assert not [d for d in found if d.action_needed], found
    notes = {d.name: d.message for d in found}
    assert "a table GC3Pie made" in notes["state"]
    if db.backend != "sqlite":
        assert "a table GC3Pie made" in notes["id"]
    done = run_typedstore("check", url, "--row-model", "tests.migrations.models:M1")
    assert "ACTION" not in done.stdout and "in step" in done.stdout


def test_a_missing_tables_json_names_the_row_model(sqlite_db: Db) -> None:
    done = run_typedstore("check", sqlite_db.at("nosuch"), "--row-model",
                          "tests.migrations.models:M1", "--json", expect=1)
    [missing] = [d for d in json.loads(done.stdout)["differences"] if d["name"] == "nosuch"]
    assert missing["kind"] == "missing_table" and missing["row_model"] == "M1"
