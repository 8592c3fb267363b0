"""A row model gains a field: the whole path with public commands and functions only.

Store with ``M1`` -> opening with ``M2`` names the missing column -> ``alembic
revision --autogenerate`` writes the migration -> ``alembic upgrade heads`` ->
``typedstore.backfill`` -> queries on the new column. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config

import typedstore
from tests.migrations.models import M1, M2, cores_of, index_of, make_jobs
from tests.migrations.support import REPO, Db, run_alembic
from tests.security.planted import planted
from typedstore import SchemaError, make_store
from typedstore.schema import code_head

#: typedstore's head revision, which tables reach on open.
HEAD = code_head()

ROWS = 60


def write_alembic_ini(directory: Path) -> tuple[Path, Path]:
    """An alembic.ini using the repository's environment, with a version directory of
    its own for generated revisions; return (ini, versions directory)."""
    versions = directory / "versions"
    versions.mkdir()
    ini = directory / "alembic.ini"
    ini.write_text(
        "[alembic]\n"
        f"script_location = {REPO / 'migrations'}\n"
        f"version_locations = typedstore:migrations/versions {versions}\n"
        "path_separator = space\n"
        f"prepend_sys_path = {REPO}\n"
    )
    return ini, versions


def test_add_a_field_generate_migrate_backfill_query(
        db_sqlite_pg: Db, table: str, tmp_path: Path) -> None:
    db = db_sqlite_pg
    url = db.at(table)
    with make_store(url, row_model=M1) as store:
        ids = store.save_many(make_jobs(0, ROWS))
    names = {int(i): f"job-{n}" for n, i in enumerate(ids)}

    with pytest.raises(SchemaError) as info:
        make_store(url, row_model=M2)
    assert info.value.missing_columns == ("cores",)

    ini, versions = write_alembic_ini(tmp_path)
    x = ["-x", f"url={db.url}", "-x", f"table={table}"]
    run_alembic(*x, "-x", "row_model=tests.migrations.models:M2", "revision", "--autogenerate",
                "-m", "add cores", "--version-path", str(versions), "--head", "typedstore@head",
                config=ini)

    [generated] = list(versions.glob("*.py"))
    source = generated.read_text()
    assert "batch_alter_table" in source
    assert "add_column(sa.Column('cores'" in source
    assert "'jobname'" not in source  # only what differs
    spec = importlib.util.spec_from_file_location("generated_add_cores", generated)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    assert migration.down_revision == HEAD
    assert callable(migration.upgrade) and callable(migration.downgrade)

    run_alembic(*x, "upgrade", "heads", config=ini)

    assert db.revisions(table) == [migration.revision]
    assert "cores" in db.columns(table)
    assert typedstore.drift(url, row_model=M2) == []
    assert [r[0] for r in db.rows(f"SELECT DISTINCT cores FROM {table}")] == [None]

    with make_store(url, row_model=M2) as store:
        report = typedstore.backfill(store, ["cores"], batch_size=25, progress=False)
        assert report.rows == ROWS
        assert report.resumed_after is None
        assert report.left_null == []

        five = store.query(M2.cores == 5).rows()
        assert {row.jobname for row in five} == {
            name for name in names.values() if cores_of(index_of(name)) == 5}
        assert all(row.cores == 5 for row in five)
        big = store.query(M2.cores > 10).ids()
        assert {int(i) for i in big} == {
            i for i, name in names.items() if cores_of(index_of(name)) > 10}
        assert [job.requested_cores for job in store.query(M2.cores == 5).objects()] == [5] * len(
            five)
        # New saves fill the column themselves.
        [new] = store.save_many(make_jobs(1000, 1))
        assert store.query(M2.cores == cores_of(1000), M2.jobname == "job-1000").ids() == [new]
    assert not db.rows(f"SELECT id FROM {table} WHERE cores IS NULL")


def test_upgrade_from_code_after_a_users_migration(sqlite_db: Db, table: str,
                                                   tmp_path: Path) -> None:
    db = sqlite_db
    url = db.at(table)
    with make_store(url, row_model=M1) as store:
        store.save_many(make_jobs(0, 3))
    ini, versions = write_alembic_ini(tmp_path)
    (versions / "user0001_add_cores.py").write_text(
        '"""add cores"""\n'
        "import sqlalchemy as sa\n"
        "from alembic import op\n\n"
        "from typedstore.migrations import store_table\n\n"
        "revision = 'user0001'\n"
        f"down_revision = '{HEAD}'\n"
        "branch_labels = None\n"
        "depends_on = None\n\n\n"
        "def upgrade():\n"
        "    with op.batch_alter_table(store_table()) as batch:\n"
        "        batch.add_column(sa.Column('cores', sa.Integer(), nullable=True))\n\n\n"
        "def downgrade():\n"
        "    with op.batch_alter_table(store_table()) as batch:\n"
        "        batch.drop_column('cores')\n"
    )
    config = Config(str(ini))
    config.attributes.update(typedstore_url=db.url, typedstore_table=table)
    command.upgrade(config, "heads")
    assert db.revisions(table) == ["user0001"]
    with make_store(url, row_model=M2) as store:  # the store opens fine
        assert len(store.list()) == 3

    # Bringing the table up to date from code should be a no-op here (or at most a
    # SchemaError saying what to run), not an Alembic error.
    try:
        added = typedstore.upgrade(url, row_model=M2)
    except SchemaError:
        return
    assert added == []


BACKFILL_MIGRATION = '''"""add cores and fill it"""
import sqlalchemy as sa
from alembic import op

from typedstore.migrations import store_table
from tests.migrations.models import M2

revision = "user0002"
down_revision = "HEAD_REVISION"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table(store_table()) as batch:
        batch.add_column(sa.Column("cores", sa.Integer(), nullable=True))
    op.backfill_column(["cores"], row_model=M2, batch_size=7)


def downgrade():
    with op.batch_alter_table(store_table()) as batch:
        batch.drop_column("cores")
'''.replace("HEAD_REVISION", HEAD)


def apply_backfill_migration(db: Db, table: str, tmp_path: Path,
                             migration: str = BACKFILL_MIGRATION) -> None:
    """Run ``migration`` with Alembic's command API and the repository's environment."""
    tmp_path.mkdir(exist_ok=True)
    ini, versions = write_alembic_ini(tmp_path)
    (versions / "user0002_add_cores.py").write_text(migration)
    config = Config(str(ini))
    config.attributes.update(typedstore_url=db.url, typedstore_table=table)
    command.upgrade(config, "heads")


def test_backfill_column_operation_inside_a_migration(db: Db, table: str,
                                                      tmp_path: Path) -> None:
    url = db.at(table)
    with make_store(url, row_model=M1) as store:
        ids = [int(i) for i in store.save_many(make_jobs(0, 30))]

    apply_backfill_migration(db, table, tmp_path)

    assert db.revisions(table) == ["user0002"]
    rows = db.rows(f"SELECT id, jobname, cores FROM {table}")
    assert sorted(r[0] for r in rows) == sorted(ids)
    assert all(cores == cores_of(index_of(name)) for _, name, cores in rows)
    with make_store(url, row_model=M2, create=False) as store:
        assert store.query(M2.cores == 1).count() == sum(
            1 for n in range(30) if cores_of(n) == 1)


def test_failing_backfill_operation_rolls_the_migration_back(
        db_sqlite_pg: Db, table: str, tmp_path: Path) -> None:
    db = db_sqlite_pg
    url = db.at(table)
    jobs = make_jobs(0, 10)
    jobs[9].requested_cores = "many"
    with make_store(url, row_model=M1) as store:
        ids = [int(i) for i in store.save_many(jobs)]

    with pytest.raises(typedstore.BackfillError) as info:
        apply_backfill_migration(db, table, tmp_path)
    assert [id_ for id_, _ in info.value.failures] == [ids[9]]

    # Transactional DDL: the column and the revision are rolled back with the fill.
    assert db.revisions(table) == [HEAD]
    assert "cores" not in db.columns(table)
    with make_store(url, row_model=M1, create=False) as store:
        assert len(store.list()) == 10


def test_backfill_operation_reads_records_as_a_store_does(db_sqlite_pg: Db, table: str,
                                                         tmp_path: Path) -> None:
    """The operation unpickles nothing a store would refuse: a damaged payload
    (checksum), and under ``allowed_classes=`` a planted record, stop it by id
    before any of their bytes run; the migration rolls back."""
    db = db_sqlite_pg
    url = db.at(table)
    marker = tmp_path / "ran"
    with make_store(url, row_model=M1) as store:
        ids = [int(i) for i in store.save_many(make_jobs(0, 4))]
    data = bytes(db.rows(f"SELECT data FROM {table} WHERE id = {ids[1]}")[0][0])
    damaged = data.replace(b"job-1", b"job-7")
    assert damaged != data
    db.execute(f"UPDATE {table} SET data = :data WHERE id = :id", data=damaged, id=ids[1])
    with pytest.raises(typedstore.BackfillError) as info:
        apply_backfill_migration(db, table, tmp_path / "damaged")
    assert [(id_, "damaged" in why) for id_, why in info.value.failures] == [(ids[1], True)]
    assert db.revisions(table) == [HEAD]

    db.execute(f"UPDATE {table} SET data = :data, _checksum = NULL WHERE id = :id",
               data=planted(str(marker))["os.system, protocol 0"], id=ids[1])
    allowing = BACKFILL_MIGRATION.replace(
        "row_model=M2, batch_size=7",
        "row_model=M2, batch_size=7, allowed_classes=['typedstore.demo.*']")
    with pytest.raises(typedstore.BackfillError) as info:
        apply_backfill_migration(db, table, tmp_path / "planted", allowing)
    assert [id_ for id_, _ in info.value.failures] == [ids[1]]
    assert "os" in info.value.failures[0][1] and not marker.exists()
    assert db.revisions(table) == [HEAD]
