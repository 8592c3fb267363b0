"""A GC3Pie program whose persistence is typedstore (run by the tests, in the
integration venv: GC3Pie 2.6.8 + typedstore + SQLAlchemy 2).

    python gc3_program.py run    --session DIR --store URL --config FILE --work DIR --out JSON
    python gc3_program.py reopen --session DIR --out JSON
    python gc3_program.py create-plain --session DIR --work DIR --out JSON
    python gc3_program.py resume --session DIR --config FILE --out JSON
    python gc3_program.py reopen-plain --session DIR --out JSON

``run`` creates a GC3Pie ``Session`` on the store URL, runs three
``/bin/echo`` Applications with a GC3Pie ``Engine`` on the local ``shellcmd``
resource of the config file until they are TERMINATED (the Engine saves each
task through the session's store as it changes) and saves the session.
``reopen``, in a new process, opens the session by its directory alone
(``Session`` reads ``store.url`` back), loads the tasks and asks the store
typed queries about them.

The ``-plain`` commands run GC3Pie on its *own* persistence package (no
``install()``; its file store needs no SQLAlchemy): ``create-plain`` makes a
session with three NEW Applications in a GC3Pie jobs directory,
``reopen-plain`` reads a session back. ``resume`` reopens a session on
typedstore and runs its tasks until they are TERMINATED. Every command writes
what it found to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

#: GC3Pie's own persistence package for the ``-plain`` commands, typedstore's otherwise.
PLAIN = len(sys.argv) > 1 and sys.argv[1].endswith("-plain")

if not PLAIN:
    import typedstore.compat.gc3pie

    typedstore.compat.gc3pie.install()

import gc3libs  # noqa: E402  (after install(), which must come first)
import gc3libs.persistence  # noqa: E402
from gc3libs import Application, Run  # noqa: E402
from gc3libs.session import Session, TemporarySession  # noqa: E402

import typedstore  # noqa: E402
from typedstore import GET, StoreRow, extracted  # noqa: E402

JOBS = 3


class TaskRow(StoreRow, table=True):
    """Typed columns extracted from each GC3Pie task on every save."""

    __tablename__ = "gc3pie_integration_tasks"

    jobname: str | None = extracted(GET.jobname, max_length=100, index=True)
    returncode: int | None = extracted(GET.execution.returncode)


def make_apps(work: str) -> list[Any]:
    return [
        Application(
            ["/bin/echo", f"hello from task {n}"],
            inputs=[],
            outputs=[],
            output_dir=os.path.join(work, f"output-{n}"),
            stdout="stdout.txt",
            jobname=f"echo-{n}",
        )
        for n in range(JOBS)
    ]


def drive(engine: Any, apps: list[Any], timeout: float) -> None:
    """Let the Engine progress until every task is TERMINATED."""
    deadline = time.monotonic() + timeout
    while any(app.execution.state != Run.State.TERMINATED for app in apps):
        if time.monotonic() > deadline:
            states = {app.jobname: app.execution.state for app in apps}
            raise SystemExit(f"tasks not TERMINATED after {timeout} s: {states}")
        engine.progress()
        time.sleep(0.1)


def outputs(apps: list[Any]) -> dict[str, str]:
    found = {}
    for app in apps:
        with open(os.path.join(app.output_dir, "stdout.txt"), encoding="utf-8") as stream:
            found[app.jobname] = stream.read()
    return found


def describe(tasks: Any) -> dict[str, Any]:
    return {
        "ids": sorted(str(t.persistent_id) for t in tasks),
        "id_types": sorted({type(t.persistent_id).__module__ + "." + type(t.persistent_id).__name__
                            for t in tasks}),
        "states": {t.jobname: t.execution.state for t in tasks},
        "returncodes": {t.jobname: t.execution.returncode for t in tasks},
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    session = Session(args.session, store_or_url=args.store, row_model=TaskRow)
    engine = gc3libs.create_engine(args.config, store=session.store)
    apps = make_apps(args.work)
    for app in apps:
        session.add(app)
        engine.add(app)
    drive(engine, apps, args.timeout)
    session.save_all()
    store = session.store
    result = {
        "ids": [str(app.persistent_id) for app in apps],
        "id_types": sorted({type(app.persistent_id).__name__ for app in apps}),
        "states": {app.jobname: app.execution.state for app in apps},
        "returncodes": {app.jobname: app.execution.returncode for app in apps},
        "stdout": outputs(apps),
        "store_type": f"{type(store).__module__}.{type(store).__qualname__}",
        "store_url": str(store.url),
        "store_url_file": Path(args.session, Session.STORE_URL_FILENAME).read_text(),
    }
    store.close()
    return result


def create_plain(args: argparse.Namespace) -> dict[str, Any]:
    session = Session(args.session)
    for app in make_apps(args.work):
        session.add(app)
    return {**describe(session.tasks.values()), "store_type": type(session.store).__module__}


def resume(args: argparse.Namespace) -> dict[str, Any]:
    session = Session(args.session, create=False, row_model=TaskRow)
    engine = gc3libs.create_engine(args.config, store=session.store)
    apps = list(session.tasks.values())
    for app in apps:
        engine.add(app)
    drive(engine, apps, args.timeout)
    session.save_all()
    store = session.store
    result = {
        **describe(apps),
        "stdout": outputs(apps),
        "store_type": f"{type(store).__module__}.{type(store).__qualname__}",
        "query_terminated": sorted(str(i) for i in store.query(state="TERMINATED").ids()),
        "query_jobname": [str(i) for i in store.query(TaskRow.jobname == "echo-1").ids()],
    }
    store.close()
    return result


def reopen_plain(args: argparse.Namespace) -> dict[str, Any]:
    session = Session(args.session, create=False)
    return {**describe(session.tasks.values()), "store_type": type(session.store).__module__}


def reopen(args: argparse.Namespace) -> dict[str, Any]:
    session = Session(args.session, create=False, row_model=TaskRow)
    store = session.store
    tasks = session.tasks
    terminated = store.query(state="TERMINATED")
    result = {
        "ids": sorted(str(i) for i in tasks),
        "classes": sorted({f"{type(t).__module__}.{type(t).__qualname__}"
                           for t in tasks.values()}),
        "states": {t.jobname: t.execution.state for t in tasks.values()},
        "returncodes": {t.jobname: t.execution.returncode for t in tasks.values()},
        "persistable": all(isinstance(t, typedstore.Persistable) for t in tasks.values()),
        "store_type": f"{type(store).__module__}.{type(store).__qualname__}",
        "store_is_typedstore": isinstance(store, typedstore.Store),
        "listed": sorted(str(i) for i in store.list()),
        # typedstore's typed queries over the columns it extracted on save
        "query_terminated": sorted(str(i) for i in terminated.ids()),
        "query_terminated_rows": sorted(
            (str(row.id), row.jobname, row.returncode) for row in terminated),
        "query_row_model": sorted(
            str(i) for i in store.query(TaskRow.state == "TERMINATED",
                                        TaskRow.returncode == 0).ids()),
        "query_jobname": [str(i) for i in store.query(TaskRow.jobname == "echo-1").ids()],
        "query_objects": sorted(
            t.jobname for t in store.query(TaskRow.jobname.in_(["echo-0", "echo-2"])).objects()),
        "count_not_terminated": store.query(TaskRow.state != "TERMINATED").count(),
        # GC3Pie's TemporarySession: a session over every task of a store URL
        "temporary_session_ids": sorted(
            str(i) for i in TemporarySession(str(store.url), row_model=TaskRow).tasks),
    }
    store.close()
    return result


COMMANDS = {
    "run": run,
    "reopen": reopen,
    "create-plain": create_plain,
    "resume": resume,
    "reopen-plain": reopen_plain,
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--session", required=True)
    parser.add_argument("--store")
    parser.add_argument("--config")
    parser.add_argument("--work")
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    gc3libs.configure_logger(level=int(os.environ.get("GC3_PROGRAM_LOG_LEVEL", "30")))
    result = COMMANDS[args.command](args)
    result["persistence_module"] = repr(gc3libs.persistence)
    with open(args.out, "w", encoding="utf-8") as stream:
        json.dump(result, stream, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
