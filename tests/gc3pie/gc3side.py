"""GC3Pie's side of the interoperability tests: run with the GC3Pie venv's python.

Everything here uses GC3Pie 2.6.8's own ``gc3libs.persistence`` (``make_store``,
``IdFactory``, ``JobIdFactory``, ``IntId``, its accessors); typedstore is not
importable in that venv. Results go, as JSON, to the file named by ``--out``;
gc3libs logs to stderr. Subcommands:

``write URL --kind {dir,sql}``
    write the initial graph (:func:`gc3objects.initial_graph`): jobs through a
    store whose id factory is ``--app-idfactory`` (``JobIdFactory`` on a
    directory, ``IntId`` on SQL), containers and their children through one with
    ``--idfactory`` (the store's default: ``IdFactory()`` / ``IntId``); then read
    the store back in a fresh store (as ``dump`` does). Output: the ids in save
    order, ``describe_all`` of the saved objects, the jobs' states and names, and
    the dump.
``dump URL --kind {dir,sql}``
    open the store afresh, ``list()`` it, load every id (one store, so shared
    objects stay shared) and describe them; a load error is reported per id.
    On SQL also every row's columns but ``data`` as stored, and the values GC3Pie's
    own extractors give for each loaded object (``expected_rows``); on a
    directory, its entries.
``save-more URL --kind {dir,sql} --tag T``
    add new objects (:func:`gc3objects.new_batch`) in ``--rounds`` rounds of
    ``--count``, optionally starting when ``--start-file`` exists (so that two
    writers start together). Output: ids and descriptions of what was saved.

Ids are numbered by GC3Pie's ``progressive_number``: the caller must set
``GC3PIE_ID_FILE``.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
import time
import traceback
from importlib.metadata import version
from typing import Any

if importlib.util.find_spec("typedstore") is not None:
    sys.exit("gc3side.py must run where typedstore is not importable (the GC3Pie venv)")
if "GC3PIE_ID_FILE" not in os.environ:
    sys.exit("gc3side.py: set GC3PIE_ID_FILE (GC3Pie's id counter file)")

import gc3libs
import gc3libs.persistence.accessors as accessors
import gc3objects
import sqlalchemy as sa
from gc3libs.persistence import IdFactory, JobIdFactory, make_store
from gc3libs.persistence.sql import IntId
from gc3objects import AppLike, Container

assert gc3objects.SIDE == "gc3pie", gc3objects.SIDE


class _QuietExtractors(logging.Filter):
    """Drop GC3Pie's warning for each extractor that does not apply (a container
    has no ``jobname``): expected here, and it would bury real errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Error saving DB column")


def _logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("gc3side %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_QuietExtractors())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


# ---------------------------------------------------------------- stores


def _idfactory(name: str) -> Any:
    if name == "default":
        return None
    if name == "job":
        return JobIdFactory()
    if name == "plain":
        return IdFactory()
    if name == "intid":
        return IdFactory(id_class=IntId)
    if name == "job-intid":
        return IdFactory(prefix="job", id_class=IntId)
    raise SystemExit(f"unknown id factory {name!r}")


def _extra_fields() -> dict[Any, Any]:
    return gc3objects.extra_fields(sa, accessors, AppLike, Container)


def open_store(args: argparse.Namespace, idfactory: str) -> Any:
    """A GC3Pie store on ``args.url``, as a GC3Pie program would open it."""
    kwargs: dict[str, Any] = {}
    factory = _idfactory(idfactory)
    if factory is not None:
        kwargs["idfactory"] = factory
    if args.kind == "sql":
        if args.table:
            kwargs["table_name"] = args.table
        if args.extra_fields:
            kwargs["extra_fields"] = _extra_fields()
    return make_store(args.url, **kwargs)


def _jsonable(value: Any) -> Any:
    """A column value as JSON: ints and strings as they are, floats and bytes tagged."""
    if value is None or type(value) in (bool, int, str):
        return value
    if isinstance(value, bytes):
        return ["bytes", value.hex()]
    if isinstance(value, float):
        return ["float", value.hex()]
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    return ["repr", repr(value)]


def _gc3pie_state(obj: Any) -> str:
    """The ``state`` column GC3Pie's SqlStore writes for ``obj``."""
    try:
        return str(obj.execution.state)
    except AttributeError:
        return str(gc3libs.Run.State.UNKNOWN)


def _expected_row(obj: Any, fields: dict[Any, Any]) -> dict[str, Any]:
    """The columns GC3Pie's SqlStore would write for ``obj`` (extractor errors: NULL)."""
    row: dict[str, Any] = {"state": _gc3pie_state(obj)}
    for column, extractor in fields.items():
        try:
            row[column.name] = _jsonable(extractor(obj))
        except Exception:
            row[column.name] = None
    return row


def _sql_rows(store: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Every row's columns but ``data``, read back with a SELECT; and the column types."""
    engine = store._engine  # GC3Pie's SQLAlchemy engine (1.3)
    table = sa.Table(store.table_name, sa.MetaData(), autoload=True, autoload_with=engine)
    columns = [c for c in table.columns if c.name != "data"]
    rows: dict[str, Any] = {}
    with engine.connect() as conn:
        for row in conn.execute(sa.select(columns)):
            values = dict(zip([c.name for c in columns], row, strict=True))
            rows[str(values["id"])] = {k: _jsonable(v) for k, v in values.items() if k != "id"}
    types = {c.name: str(c.type) for c in table.columns}
    return rows, types


def dump_store(args: argparse.Namespace) -> dict[str, Any]:
    store = open_store(args, args.idfactory)
    result: dict[str, Any] = {}
    try:
        ids = store.list()
    except Exception:
        result["list_error"] = traceback.format_exc()
        ids = []
    result["list"] = [str(i) for i in ids]
    loaded = []
    errors: dict[str, str] = {}
    for id_ in ids:
        try:
            loaded.append(store.load(id_))
        except Exception as exc:
            errors[str(id_)] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    result["errors"] = errors
    result.update(gc3objects.describe_all(loaded))
    if args.kind == "sql":
        result["rows"], result["column_types"] = _sql_rows(store)
        fields = _extra_fields()
        result["expected_rows"] = {str(obj.persistent_id): _expected_row(obj, fields)
                                   for obj in loaded}
    else:
        directory = store._directory
        result["entries"] = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
    return result


# ---------------------------------------------------------------- commands


def cmd_write(args: argparse.Namespace) -> dict[str, Any]:
    apps, containers = gc3objects.initial_graph()
    app_store = open_store(args, args.app_idfactory)
    store = open_store(args, args.idfactory)
    for app in apps:
        app_store.save(app)
    for container in containers:
        store.save(container)
    saved = gc3objects.all_persistables([*apps, *containers])
    return {
        "ids": [str(obj.persistent_id) for obj in saved],
        "id_types": sorted({type(obj.persistent_id).__name__ for obj in saved}),
        "saved": gc3objects.describe_all(saved),
        "states": {str(app.persistent_id): app.execution.state for app in apps},
        "jobnames": {str(app.persistent_id): app.jobname for app in apps},
        "names": {str(c.persistent_id): c.name
                  for c in saved if isinstance(c, (Container, gc3objects.Child))},
        "dump": dump_store(args),
    }


def _wait_for(path: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"start file {path} did not appear within {timeout} s")
        time.sleep(0.01)


def cmd_save_more(args: argparse.Namespace) -> dict[str, Any]:
    store = open_store(args, args.idfactory)
    if args.start_file:
        _wait_for(args.start_file)
    roots: list[Any] = []
    for round_ in range(args.rounds):
        batch = gc3objects.new_batch(f"{args.tag}-r{round_}", args.count)
        for obj in batch:
            store.save(obj)
        roots.extend(batch)
        if args.pause and round_ + 1 < args.rounds:
            time.sleep(args.pause)
    saved = gc3objects.all_persistables(roots)
    return {
        "ids": [str(obj.persistent_id) for obj in saved],
        "saved": gc3objects.describe_all(saved),
    }


def cmd_set_state(args: argparse.Namespace) -> dict[str, Any]:
    """GC3Pie loads every job (an object with ``execution.state``), sets its state
    and saves it: its FilesystemStore rewrites the record file in place."""
    store = open_store(args, args.idfactory)
    changed = []
    for id_ in store.list():
        obj = store.load(id_)
        execution = getattr(obj, "execution", None)
        if execution is not None and getattr(execution, "state", None) != args.state:
            execution.state = args.state
            store.save(obj)
            changed.append(str(id_))
    return {"changed": changed}


def cmd_dump(args: argparse.Namespace) -> dict[str, Any]:
    return dump_store(args)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("write", "dump", "save-more", "set-state"):
        p = sub.add_parser(name)
        p.add_argument("url")
        p.add_argument("--kind", choices=("dir", "sql"), required=True)
        p.add_argument("--table", default=None, help="SqlStore(table_name=...)")
        p.add_argument("--extra-fields", action="store_true",
                       help="open SQL stores with gc3objects.extra_fields()")
        p.add_argument("--idfactory", default="default",
                       choices=("default", "plain", "job", "intid", "job-intid"),
                       help="id factory of containers (and of everything save-more writes)")
        p.add_argument("--out", required=True, help="where to write the JSON result")
        if name == "write":
            p.add_argument("--app-idfactory", default=None,
                           choices=("default", "plain", "job", "intid", "job-intid"),
                           help="id factory of the jobs (default: job, or intid on SQL)")
        if name == "save-more":
            p.add_argument("--tag", required=True)
            p.add_argument("--count", type=int, default=4)
            p.add_argument("--rounds", type=int, default=1)
            p.add_argument("--pause", type=float, default=0.0)
            p.add_argument("--start-file", default=None)
        if name == "set-state":
            p.add_argument("--state", required=True)
    args = parser.parse_args(argv)
    if getattr(args, "app_idfactory", "x") is None:
        args.app_idfactory = "intid" if args.kind == "sql" else "job"
    return args


COMMANDS = {"write": cmd_write, "dump": cmd_dump, "save-more": cmd_save_more,
            "set-state": cmd_set_state}


def main(argv: list[str] | None = None) -> int:
    _logging()
    args = parse(argv)
    result = COMMANDS[args.command](args)
    result["side"] = "gc3pie"
    result["versions"] = {"gc3pie": version("gc3pie"), "sqlalchemy": sa.__version__,
                          "python": sys.version.split()[0]}
    gc3objects.write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
