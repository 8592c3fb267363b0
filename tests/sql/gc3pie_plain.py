"""A job class that typedstore and the real GC3Pie 2.6.8 both import, and GC3Pie's side
of ``test_sql_gc3pie_writer.py``.

GC3Pie needs SQLAlchemy 1.3 and typedstore SQLAlchemy 2, so GC3Pie runs in a venv
of its own, as a child process running this file; nothing here imports typedstore.

Run with GC3Pie's python: ``gc3pie_plain.py URL COMMANDS``, where ``COMMANDS`` is a
JSON list of ``["rename", id, jobname]`` (load, set ``jobname``, save: GC3Pie's
``SqlStore.save`` updates the row ``id == obj.persistent_id`` if there is one and
inserts it otherwise), ``["jobname", id]`` (load) and ``["list"]``. The store has
GC3Pie's ``extra_fields`` ``jobname``. Prints one JSON list of the results.
"""

from __future__ import annotations

import json
import sys
from typing import Any


class PlainJob:
    """A job with a name; not a Persistable of either library."""

    def __init__(self, jobname: str) -> None:
        self.jobname = jobname


def gc3pie_side(url: str, commands: list[Any]) -> list[Any]:  # pragma: no cover (GC3Pie venv)
    import sqlalchemy  # GC3Pie's SQLAlchemy 1.3
    from gc3libs.persistence.accessors import GetValue
    from gc3libs.persistence.sql import SqlStore
    from gc3libs.url import Url

    store = SqlStore(Url(url),
                     extra_fields={sqlalchemy.Column("jobname", sqlalchemy.String(256)):
                                   GetValue().jobname})
    results: list[Any] = []
    for command in commands:
        if command[0] == "rename":
            obj = store.load(command[1])
            obj.jobname = command[2]
            results.append(int(store.save(obj)))
        elif command[0] == "jobname":
            results.append(store.load(command[1]).jobname)
        elif command[0] == "list":
            results.append(sorted(int(i) for i in store.list()))
        else:
            raise SystemExit(f"unknown command {command!r}")
    return results


if __name__ == "__main__":
    print(json.dumps(gc3pie_side(sys.argv[1], json.loads(sys.argv[2]))))
