"""``typedstore ls``, ``show`` and ``stats``: looking inside a store without loading it.

Every command runs through typer's runner on every backend (the ``store_url``
fixture), ``ls --json`` is read back from a real ``python -m typedstore``
process, and a planted record whose payload would run a command (or import a
module that does) is shown without either happening.
"""

from __future__ import annotations

import enum
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from typedstore import make_store
from typedstore.cli import app
from typedstore.demo import DemoJob, DemoJobRow, Sweep
from typedstore.errors import QueryError
from typedstore.pickleview import read_payload, render
from typedstore.schema import code_head
from typedstore.urls import parse_store_url
from typedstore.where import parse_where

ROOT = Path(__file__).resolve().parents[1]
#: A wide terminal, so that no table cell is wrapped in the middle of a value.
WIDE = {"COLUMNS": "250"}
MODEL = "typedstore.demo:DemoJobRow"
#: (cores, state) of the jobs every test stores.
JOBS = [(1, "NEW"), (16, "RUNNING"), (4, "RUNNING"), (32, "TERMINATED")]

runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), env=WIDE)


def run_json(*args: str) -> Any:
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one_line_error(result: Any, code: int) -> str:
    """The error a failed command printed: exit status ``code``, nothing on
    stdout, one line on stderr starting with ``error: ``."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return str(lines[0])


@pytest.fixture
def filled(store_url: str) -> tuple[str, list[str]]:
    """The test's store with four demo jobs; their ids as text."""
    jobs = []
    for number, (cores, state) in enumerate(JOBS):
        job = DemoJob(f"job-{number}", cores, [f"--seed={number}"])
        job.execution.state = state
        jobs.append(job)
    with make_store(store_url, row_model=DemoJobRow) as store:
        ids = store.save_many(jobs)
    return store_url, [str(id_) for id_ in ids]


def plant(url: str, backend: str, payload: bytes) -> str:
    """Store ``payload`` as a record's bytes, as someone with write access to the
    table or directory could; return its id."""
    if backend == "file":
        name = f"Planted.{900 + len(os.listdir(url))}"
        Path(url, name).write_bytes(payload)
        return name
    with make_store(url, row_model=DemoJobRow) as store:
        id_ = store.save(DemoJob("cover", 2, []))
    parsed = parse_store_url(url)
    assert parsed.table is not None
    table = sa.table(parsed.table, sa.column("id"), sa.column("data"), sa.column("_checksum"))
    engine = sa.create_engine(parsed.target)
    try:
        with engine.begin() as conn:
            conn.execute(table.update().where(table.c.id == int(id_))
                         .values(data=payload, _checksum=None))
    finally:
        engine.dispose()
    return str(id_)


# ---------------------------------------------------------------- ls


def test_ls_lists_ids_with_their_columns(filled: tuple[str, list[str]]) -> None:
    url, ids = filled
    listing = run_json("ls", url)
    assert listing["store"] == parse_store_url(url).redacted
    assert listing["columns"][:2] == ["id", "state"]
    assert {"jobname", "cores", "returncode"} <= set(listing["columns"])
    assert [str(row["id"]) for row in listing["rows"]] == ids
    assert [(row["cores"], row["state"]) for row in listing["rows"]] == JOBS
    assert listing["unindexed"] == []
    typed = run_json("ls", url, "--model", MODEL)
    assert [row["jobname"] for row in typed["rows"]] == [f"job-{n}" for n in range(4)]

    human = invoke("ls", url)
    assert human.exit_code == 0, human.output
    for id_ in ids:
        assert id_ in human.stdout
    assert "job-3" in human.stdout and "TERMINATED" in human.stdout
    assert "4 record(s)" in human.stdout


def test_ls_filters_by_state_condition_and_limit(filled: tuple[str, list[str]]) -> None:
    url, ids = filled

    def listed(*options: str) -> list[str]:
        return [str(row["id"]) for row in run_json("ls", url, *options)["rows"]]

    assert listed("--state", "RUNNING") == [ids[1], ids[2]]
    assert listed("--where", "cores > 8 and state == 'RUNNING'") == [ids[1]]
    assert listed("--where", "8 < cores") == [ids[1], ids[3]]
    assert listed("--where", "state in ('NEW', 'TERMINATED') or cores == 4") == \
        [ids[0], ids[2], ids[3]]
    assert listed("--where", "not (cores >= 4) ") == [ids[0]]
    assert listed("--where", "1 < cores <= 16", "--model", MODEL) == [ids[1], ids[2]]
    assert listed("--where", "returncode is None", "--state", "NEW") == [ids[0]]
    assert listed("--limit", "2") == ids[:2]
    assert listed("--state", "GONE") == []


def test_ls_json_is_read_back_by_a_script(filled: tuple[str, list[str]]) -> None:
    url, ids = filled
    done = subprocess.run([sys.executable, "-m", "typedstore", "ls", url, "--json",
                           "--where", "cores >= 4"],
                          capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)  # stdout holds the JSON and nothing else
    assert {str(row["id"]): row["cores"] for row in listing["rows"]} == \
        {ids[1]: 16, ids[2]: 4, ids[3]: 32}


# ---------------------------------------------------------------- show


def test_show_gives_columns_and_a_readable_payload(filled: tuple[str, list[str]]) -> None:
    url, ids = filled
    view = run_json("show", url, ids[1])
    assert view["id"] == ids[1]
    assert view["columns"]["cores"] == 16 and view["columns"]["state"] == "RUNNING"
    assert view["integrity"] == "verified"
    value = view["payload"]["value"]
    assert value["$new"] == "typedstore.demo.DemoJob"
    assert value["$state"]["jobname"] == "job-1"
    assert value["$state"]["execution"]["$state"]["state"] == "RUNNING"
    assert {"typedstore.demo.DemoJob", "typedstore.demo.Execution"} <= \
        set(view["payload"]["names"])

    human = invoke("show", url, ids[1], "--model", MODEL)
    assert human.exit_code == 0, human.output
    assert "typedstore.demo.DemoJob" in human.stdout
    assert "jobname: 'job-1'" in human.stdout
    assert "state: 'RUNNING'" in human.stdout
    assert "integrity: verified" in human.stdout

    # References to other records are shown as their ids.
    with make_store(url) as store:
        sweep = Sweep([DemoJob("a", 1, []), DemoJob("b", 2, [])])
        sweep_id = store.save(sweep)
        parts = [str(job.persistent_id) for job in sweep.jobs]
    view = run_json("show", url, str(sweep_id))
    assert view["payload"]["references"] == parts
    assert view["payload"]["value"]["$state"]["jobs"] == [{"$ref": part} for part in parts]
    assert f"<record {parts[0]}>" in invoke("show", url, str(sweep_id)).stdout


def test_show_of_a_planted_record_runs_none_of_its_code(
        filled: tuple[str, list[str]], backend: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = filled
    ran = tmp_path / "command-ran"
    imported = tmp_path / "module-imported"

    class Planted:
        def __reduce__(self) -> Any:
            return (os.system, (f"touch {ran}",))

    command_id = plant(url, backend, pickle.dumps(Planted(), protocol=2))
    # A record naming a class of a module whose import alone does harm: the
    # module is importable (on sys.path) and would leave a file if imported.
    module_dir = tmp_path / "modules"
    module_dir.mkdir()
    (module_dir / "plantedmod.py").write_text(
        f"open({str(imported)!r}, 'w').close()\nclass Evil:\n    pass\n")
    monkeypatch.syspath_prepend(str(module_dir))
    stand_in = pickle.dumps(_StandIn(), protocol=2)
    marker = f"{_StandIn.__module__}\n{_StandIn.__qualname__}\n".encode()
    assert marker in stand_in
    import_id = plant(url, backend, stand_in.replace(marker, b"plantedmod\nEvil\n"))

    shown = invoke("show", url, command_id)
    assert shown.exit_code == 0, shown.output
    assert f"{os.system.__module__}.system(" in shown.stdout
    assert f"'touch {ran}'" in shown.stdout
    view = run_json("show", url, command_id)
    assert view["payload"]["value"] == {"$call": f"{os.system.__module__}.system",
                                        "$args": [f"touch {ran}"]}
    assert view["payload"]["names"] == [f"{os.system.__module__}.system"]

    shown = invoke("show", url, import_id)
    assert shown.exit_code == 0, shown.output
    assert "plantedmod.Evil" in shown.stdout and "secret: 'kept'" in shown.stdout
    assert run_json("show", url, import_id)["payload"]["names"] == ["plantedmod.Evil"]

    listing = run_json("ls", url)  # ls reads columns only: nothing of them runs either
    ids = [str(row["id"]) for row in listing["rows"]] + listing["unindexed"]
    assert command_id in ids and import_id in ids
    assert not ran.exists()
    assert not imported.exists()
    assert "plantedmod" not in sys.modules


class _StandIn:
    """Pickled, then renamed in the bytes to ``plantedmod.Evil``."""

    def __init__(self) -> None:
        self.secret = "kept"


# ---------------------------------------------------------------- stats


def test_stats_counts_sizes_and_settings(filled: tuple[str, list[str]], backend: str) -> None:
    url, ids = filled
    report = run_json("stats", url)
    assert report["records"] == 4
    assert report["by_state"] == {"NEW": 1, "RUNNING": 2, "TERMINATED": 1}
    settings = report["settings"]
    assert settings["signing"] is False and settings["gc3pie_compatible"] is False
    if backend == "file":
        directory = Path(url)
        assert report["backend"] == "file" and settings["durable"] is True
        assert report["size_bytes"] == sum(p.stat().st_size for p in directory.iterdir())
        assert report["revision"] is None
    else:
        with make_store(url) as store:
            payloads = sum(len(store._read(store._coerce_id(id_)).payload) for id_ in ids)
        assert report["backend"] == "sql" and report["size_bytes"] == payloads
        assert settings["dialect"] in backend or backend in settings["dialect"]
        assert settings["table"] == parse_store_url(url).table
        assert report["revision"] == [code_head()] == [report["code_revision"]]

    human = invoke("stats", url)
    assert human.exit_code == 0, human.output
    assert "TERMINATED" in human.stdout and f"{report['size_bytes']} bytes" in human.stdout


# ---------------------------------------------------------------- bad input


def test_bad_conditions_are_one_line_errors(filled: tuple[str, list[str]]) -> None:
    url, _ = filled
    error = one_line_error(invoke("ls", url, "--where", "corez > 8"), 2)
    assert "unknown column 'corez'" in error
    assert "known columns: id, state, jobname, cores" in error
    for expression, what in [("__import__('os')", "a function call"),
                             ("os.system('id') == 0", "a function call"),
                             ("cores.real > 1", "an attribute"),
                             ("cores + 1 > 2", "arithmetic"),
                             ("cores > (lambda: 1)", "a lambda")]:
        error = one_line_error(invoke("ls", url, "--where", expression), 2)
        assert what in error, error
    error = one_line_error(invoke("ls", url, "--where", "cores >"), 2)
    assert "not a valid condition" in error
    error = one_line_error(invoke("ls", url, "--where", "cores > 'many'"), 2)
    assert "holds numbers" in error
    assert invoke("ls", url, "--limit", "-1").exit_code == 2


def test_what_is_not_there_is_exit_status_1(filled: tuple[str, list[str]], backend: str,
                                            tmp_path: Path) -> None:
    url, _ = filled
    missing = "Nope.12345" if backend == "file" else "12345"
    error = one_line_error(invoke("show", url, missing), 1)
    assert "no record" in error and missing in error
    gone = str(tmp_path / "no-such-store") if backend == "file" else \
        url.replace("#table=", "#table=absent_")
    error = one_line_error(invoke("stats", gone), 1)
    assert "there is no store" in error
    # Looking created nothing.
    if backend == "file":
        assert not os.path.exists(gone)
    else:
        parsed = parse_store_url(gone)
        engine = sa.create_engine(parsed.target)
        try:
            assert not sa.inspect(engine).has_table(str(parsed.table))
        finally:
            engine.dispose()


def test_bad_urls_are_one_line_errors_without_passwords(tmp_path: Path) -> None:
    error = one_line_error(invoke("ls", "foo://user:hunter2@host/db"), 2)
    assert "no store for URL scheme 'foo'" in error and "hunter2" not in error
    error = one_line_error(invoke("stats", f"sqlite:///{tmp_path / 'none.db'}"), 1)
    assert "no SQLite database file" in error
    assert not (tmp_path / "none.db").exists()
    done = subprocess.run([sys.executable, "-m", "typedstore", "show",
                           "postgresql+psycopg://u:hunter2@127.0.0.1:1/x#table=t", "1"],
                          capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: ") and "hunter2" not in done.stderr


def test_every_command_has_help() -> None:
    for command in ("ls", "show", "stats"):
        result = invoke(command, "--help")
        assert result.exit_code == 0 and "--json" in result.stdout


# ---------------------------------------------------------------- the parts


def test_conditions_are_parsed_never_evaluated() -> None:
    class Color(enum.Enum):
        RED = 1

    table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer),
                     sa.Column("cores", sa.Integer), sa.Column("state", sa.String(20)),
                     sa.Column("color", sa.Enum(Color)))

    def sql(text: str) -> str:
        return str(parse_where(text, table).compile(compile_kwargs={"literal_binds": True}))

    assert sql("8 < cores") == "t.cores > 8"
    assert sql("1 < cores <= -2") == "t.cores > 1 AND t.cores <= -2"
    assert sql("state is not None") == "t.state IS NOT NULL"
    assert sql("state == None or not cores in [1, 2]") == \
        "t.state IS NULL OR (t.cores NOT IN (1, 2))"
    assert parse_where("color == 'RED'", table).right.value is Color.RED
    with pytest.raises(QueryError, match="'GREEN' is not a member of Color"):
        parse_where("color != 'GREEN'", table)
    with pytest.raises(QueryError, match="column 'state' holds text"):
        parse_where("state == 3", table)
    with pytest.raises(QueryError, match="unknown column 'id'"):
        parse_where("id == 3", table, ["cores", "state"])
    with pytest.raises(QueryError, match="a column alone"):
        parse_where("cores", table)


def test_payload_view_marks_what_a_loader_would_refuse() -> None:
    # A BUILD on a global (what would change a class for the whole process).
    payload = b"\x80\x02cos\nenviron\n}U\x04PATHU\x02/xsb."
    view = read_payload(payload)
    assert view.names == ["os.environ"]
    assert any("BUILD on the global os.environ" in note for note in view.notes)
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    assert render(read_payload(pickle.dumps(cyclic)).value) == \
        ["[1, <cycle: a list, inside itself>]"]
    cut = read_payload(pickle.dumps({"a": 1})[:-2])
    assert cut.error is not None and cut.value is None
