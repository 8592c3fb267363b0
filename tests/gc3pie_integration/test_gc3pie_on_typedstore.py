"""GC3Pie 2.6.8 itself on typedstore (``typedstore.compat.gc3pie.install()``).

Real GC3Pie, real processes, no mocks: in one venv with GC3Pie 2.6.8 (without
its SQLAlchemy pin) and this checkout of typedstore (SQLAlchemy 2), a GC3Pie
``Session`` and ``Engine`` run three ``/bin/echo`` Applications on a local
``shellcmd`` resource until they are TERMINATED, persisting them through
typedstore on every backend. A new process reopens the session from its
directory alone, finds the tasks TERMINATED and asks typedstore's typed queries
about them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from integration_venv import Gc3Runner

from typedstore.compat import gc3pie as compat

pytestmark = pytest.mark.timeout(600)

JOBNAMES = ["echo-0", "echo-1", "echo-2"]


def test_install_after_gc3libs_persistence_was_imported_raises(gc3: Gc3Runner) -> None:
    result = gc3.code("""
        import json, sys
        import gc3libs                    # GC3Pie's own persistence package
        import typedstore.compat.gc3pie as compat
        try:
            compat.install()
        except compat.AlreadyImportedError as exc:
            outcome = {"error": str(exc), "modules": list(exc.modules),
                       "runtime_error": isinstance(exc, RuntimeError)}
        else:
            outcome = {"error": None}
        outcome["installed"] = compat.installed()
        outcome["persistence"] = repr(sys.modules["gc3libs.persistence"])
        json.dump(outcome, open(sys.argv[1], "w"))
    """)
    assert result["error"] is not None, "install() after import gc3libs did not raise"
    assert "must run before gc3libs is imported" in result["error"]
    assert "gc3libs.persistence (" in result["error"]
    assert "gc3libs.persistence" in result["modules"]
    assert result["runtime_error"] is True
    assert result["installed"] is False
    assert result["persistence"].endswith("gc3libs/persistence/__init__.py'>")


def test_served_modules_are_typedstore(gc3: Gc3Runner, tmp_path: Path) -> None:
    result = gc3.code(f"""
        import json, sys
        import typedstore.compat.gc3pie as compat
        compat.install()
        compat.install()                  # idempotent
        import gc3libs, gc3libs.exceptions, gc3libs.persistence
        import gc3libs.persistence.accessors, gc3libs.session, gc3libs.core
        import typedstore
        out = {{}}
        out["finders"] = sum(1 for f in sys.meta_path if f is compat._finder)
        out["installed"] = compat.installed()
        out["persistable_is"] = gc3libs.persistence.Persistable is typedstore.Persistable
        out["same"] = {{
            f"{{module}}.{{name}}": getattr(sys.modules[module], name) is getattr(typedstore, name)
            for module in compat.served_names()
            for name in compat.EXPORTS[module[len(compat.PACKAGE):].lstrip(".")]
        }}
        out["attributes"] = {{
            child: getattr(gc3libs.persistence, child)
            is sys.modules[f"{{compat.PACKAGE}}.{{child}}"]
            for child in compat.SUBMODULES
        }}
        out["package_attr"] = gc3libs.persistence is sys.modules["gc3libs.persistence"]
        out["task_is_persistable"] = issubclass(gc3libs.Task, typedstore.Persistable)
        out["session_store_class"] = gc3libs.persistence.store.Store is typedstore.Store
        try:
            gc3libs.persistence.serialization.make_pickler
        except AttributeError as exc:
            out["missing"] = str(exc)
        app = gc3libs.Application(["/bin/echo", "hi"], inputs=[], outputs=[],
                                  output_dir={str(tmp_path / "out")!r}, jobname="named")
        out["jobname"] = app.jobname
        out["changed"] = app.changed
        out["app_is_persistable"] = isinstance(app, gc3libs.persistence.Persistable)
        # typedstore's load errors are GC3Pie LoadErrors, as gclean expects
        store = gc3libs.persistence.make_store({str(tmp_path / "jobs")!r})
        store.save(app)
        out["saved_id"] = str(app.persistent_id)
        try:
            store.load("Application.999999")
        except gc3libs.exceptions.LoadError as exc:
            out["caught"] = [type(exc).__name__, isinstance(exc, gc3libs.exceptions.Error),
                             isinstance(exc, KeyError), isinstance(exc, typedstore.LoadError)]
        out["loaded_jobname"] = store.load(app.persistent_id).jobname
        # what SessionBasedScript does before adding new jobs
        store.idfactory.reserve(2)
        # a collection: each child is a record of its own, loaded back shared
        from gc3libs.workflow import ParallelTaskCollection
        children = [gc3libs.Application(["/bin/true"], inputs=[], outputs=[],
                                        output_dir={str(tmp_path / "out")!r}, jobname=f"c{{n}}")
                    for n in range(2)]
        collection = ParallelTaskCollection(children, jobname="collection")
        collection_id = store.save(collection)
        out["child_ids"] = sorted(str(c.persistent_id) for c in children)
        store.invalidate_cache()
        again = store.load(collection_id)
        out["children_loaded"] = sorted(str(t.persistent_id) for t in again.tasks)
        out["child_shared"] = again.tasks[0] is store.load(again.tasks[0].persistent_id)
        out["listed"] = len(store.list())
        # Session's default store: a jobs directory inside the session
        from gc3libs.session import Session
        session = Session({str(tmp_path / "default-session")!r})
        out["default_store"] = [type(session.store).__name__, str(session.store.url)]
        # Session.remove removes a collection's children too
        session_collection_id = session.add(ParallelTaskCollection(
            [gc3libs.Application(["/bin/true"], inputs=[], outputs=[],
                                 output_dir={str(tmp_path / "out")!r}) for _ in range(2)]))
        out["session_listed"] = len(session.store.list())
        session.remove(session_collection_id)
        out["session_removed"] = [len(session.store.list()), len(session.tasks)]
        json.dump(out, open(sys.argv[1], "w"))
    """)
    assert result["finders"] == 1
    assert result["installed"] is True
    assert result["persistable_is"] is True
    assert result["same"] and all(result["same"].values()), result["same"]
    assert "gc3libs.persistence.accessors.GET" in result["same"]
    assert result["attributes"] == {child: True for child in compat.SUBMODULES}
    assert result["package_attr"] is True
    assert result["task_is_persistable"] is True
    assert result["session_store_class"] is True
    assert "served by typedstore" in result["missing"]
    assert result["jobname"] == "named"
    assert result["changed"] is True
    assert result["app_is_persistable"] is True
    assert result["saved_id"].startswith("Application.")
    assert result["caught"] == ["NotFoundError", True, True, True]
    assert result["loaded_jobname"] == "named"
    assert len(result["child_ids"]) == 2
    assert all(i.startswith("Application.") for i in result["child_ids"])
    assert result["children_loaded"] == result["child_ids"]
    assert result["child_shared"] is True
    assert result["listed"] == 4  # app, two children, the collection
    assert result["default_store"] == [
        "FilesystemStore", str(tmp_path / "default-session" / "jobs")]
    assert result["session_listed"] == 3
    assert result["session_removed"] == [0, 0]


@pytest.mark.usefixtures("gnu_time")
def test_session_and_engine_persist_tasks_in_typedstore(
    gc3: Gc3Runner, backend: str, store_url: str, gc3_config: Path, tmp_path: Path,
) -> None:
    session = tmp_path / "session"
    ran = gc3.program("run", "--session", session, "--store", store_url,
                      "--config", gc3_config, "--work", tmp_path / "work")
    assert ran["persistence_module"] == "<module 'gc3libs.persistence' (typedstore.compat.gc3pie)>"
    assert ran["states"] == dict.fromkeys(JOBNAMES, "TERMINATED")
    assert ran["returncodes"] == dict.fromkeys(JOBNAMES, 0)
    assert ran["stdout"] == {f"echo-{n}": f"hello from task {n}\n" for n in range(3)}
    expected_store = "typedstore.filesystem.FilesystemStore" if backend == "file" \
        else "typedstore.sql.SqlStore"
    assert ran["store_type"] == expected_store
    assert ran["id_types"] == (["Id"] if backend == "file" else ["IntId"])
    # Session wrote str(store.url), from which a new process reopens the store.
    assert ran["store_url_file"] == ran["store_url"] == store_url
    ids = sorted(ran["ids"])
    assert len(set(ids)) == 3

    reopened = gc3.program("reopen", "--session", session)
    assert reopened["ids"] == ids
    assert reopened["store_type"] == expected_store
    assert reopened["store_is_typedstore"] is True
    assert reopened["classes"] == ["gc3libs.Application"]
    assert reopened["persistable"] is True
    assert reopened["states"] == dict.fromkeys(JOBNAMES, "TERMINATED")
    assert reopened["returncodes"] == dict.fromkeys(JOBNAMES, 0)
    assert reopened["listed"] == ids
    # typedstore's typed queries over what it extracted from GC3Pie's tasks
    assert reopened["query_terminated"] == ids
    by_name = dict(zip(ran["ids"], JOBNAMES, strict=True))
    assert reopened["query_terminated_rows"] == [[i, by_name[i], 0] for i in ids]
    assert reopened["query_row_model"] == ids
    assert reopened["query_jobname"] == [ran["ids"][1]]
    assert reopened["query_objects"] == ["echo-0", "echo-2"]
    assert reopened["count_not_terminated"] == 0
    assert reopened["temporary_session_ids"] == ids


@pytest.mark.usefixtures("gnu_time")
def test_a_gc3pie_session_moves_to_typedstore_and_back(
    gc3: Gc3Runner, gc3_config: Path, tmp_path: Path,
) -> None:
    """A session GC3Pie made on its own persistence runs on typedstore, and GC3Pie reads it back."""
    session = tmp_path / "session"
    created = gc3.program("create-plain", "--session", session, "--work", tmp_path / "work")
    assert "typedstore" not in created["persistence_module"].split(" from ")[0]
    assert created["store_type"] == "gc3libs.persistence.filesystem"
    assert created["id_types"] == ["gc3libs.persistence.idfactory.Id"]
    assert created["states"] == dict.fromkeys(JOBNAMES, "NEW")
    ids = created["ids"]

    resumed = gc3.program("resume", "--session", session, "--config", gc3_config)
    assert resumed["persistence_module"].endswith("(typedstore.compat.gc3pie)>")
    assert resumed["store_type"] == "typedstore.filesystem.FilesystemStore"
    assert resumed["ids"] == ids
    assert resumed["id_types"] == ["typedstore.ids.Id"]
    assert resumed["states"] == dict.fromkeys(JOBNAMES, "TERMINATED")
    assert resumed["stdout"] == {f"echo-{n}": f"hello from task {n}\n" for n in range(3)}
    assert resumed["query_terminated"] == ids
    assert resumed["query_jobname"] == ["Application.2"]

    back = gc3.program("reopen-plain", "--session", session)
    assert back["store_type"] == "gc3libs.persistence.filesystem"
    assert back["ids"] == ids
    assert back["id_types"] == ["gc3libs.persistence.idfactory.Id"]
    assert back["states"] == dict.fromkeys(JOBNAMES, "TERMINATED")
    assert back["returncodes"] == dict.fromkeys(JOBNAMES, 0)
