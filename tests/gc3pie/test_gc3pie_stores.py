"""Stores written by the real GC3Pie 2.6.8 and by typedstore, read by the other side.

GC3Pie runs in its own venv (``gc3env``), as ``gc3side.py`` subprocesses; this
process has typedstore and no gc3libs. Nothing here fabricates GC3Pie's format:
every GC3Pie record is written by GC3Pie's ``make_store``, and GC3Pie's verdict on
typedstore's records is GC3Pie's own ``list()`` and ``load()``.

On each backend (a jobs directory, SQLite, PostgreSQL, MariaDB):

* typedstore lists and loads everything GC3Pie wrote, value for value, with
  shared children shared (:func:`test_typedstore_reads_gc3pie_store`);
* GC3Pie reads back records typedstore added to its store
  (:func:`test_gc3pie_reads_records_typedstore_added`) and, after typedstore
  changed some records and added others sharing an existing child, the whole
  store (:func:`test_gc3pie_reads_store_typedstore_updated`): no load error,
  every value as typedstore left it, nothing but records in a jobs directory,
  GC3Pie's ``extra_fields`` columns filled as GC3Pie fills them;
* typedstore's typed queries use GC3Pie's ``extra_fields`` columns
  (:func:`test_typed_queries_on_gc3pie_columns`, SQL);
* GC3Pie and typedstore processes writing one store, in turns and at the same
  time, lose no record (:func:`test_mixed_writers_lose_no_record`).

Both sides use the test's ``GC3PIE_ID_FILE``: GC3Pie numbers ids from it, and
typedstore is assumed to do the same for a store GC3Pie wrote.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import gc3objects
import pytest
import tsside
from gc3env import Gc3Side, read_result
from gc3objects import Child, Container, all_persistables, describe_all

assert gc3objects.SIDE == "typedstore", "gc3libs must not be importable in typedstore's tests"

SQL_BACKENDS = ["sqlite", "postgresql", "mysql"]
#: A payload above MariaDB's BLOB limit (64 KiB), the column type GC3Pie creates.
BIG_BLOB = bytes(i * 7 % 251 for i in range(100_000))


# ------------------------------------------------------------------ helpers


class Stores:
    """typedstore stores opened by a test (each opened like a GC3Pie program would),
    all closed at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._open: list[Any] = []

    def open(self, **kwargs: Any) -> Any:
        store = tsside.open_store(self.url, **kwargs)
        self._open.append(store)
        return store

    def close(self, store: Any) -> None:
        self._open.remove(store)
        store.close()

    def close_all(self) -> None:
        while self._open:
            self._open.pop().close()


@pytest.fixture
def stores(store_url: str, gc3_id_file: Path) -> Any:
    opened = Stores(store_url)
    yield opened
    opened.close_all()


def load_all(store: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Every listed id loaded by ``store``: ``({id: object}, {id: error})``."""
    loaded: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for id_ in store.list():
        try:
            loaded[str(id_)] = store.load(id_)
        except Exception as exc:
            errors[str(id_)] = f"{type(exc).__name__}: {exc}"
    return loaded, errors


def _short(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."


def record_differences(expected: Mapping[str, Any], actual: Mapping[str, Any],
                       what: str, limit: int = 6) -> list[str]:
    """Readable differences between two ``describe_all()["records"]`` maps."""
    problems: list[str] = []
    missing = sorted(set(expected) - set(actual), key=_id_key)
    extra = sorted(set(actual) - set(expected), key=_id_key)
    if missing:
        problems.append(f"{what}: {len(missing)} records missing: {missing}")
    if extra:
        problems.append(f"{what}: {len(extra)} unexpected records: {extra}")
    differing = [i for i in sorted(set(expected) & set(actual), key=_id_key)
                 if expected[i] != actual[i]]
    if any(_id_types(expected[i]) != _id_types(actual[i]) for i in differing):
        problems.append(ID_TYPE_HINT)
    if differing:
        problems.append(f"{what}: {len(differing)} records differ: {differing}")
        for id_ in differing[:limit]:
            exp, got = expected[id_], actual[id_]
            for key in ("class", "id", "id_type"):
                if exp.get(key) != got.get(key):
                    problems.append(f"  {id_}: {key} expected {exp.get(key)!r}, "
                                    f"got {got.get(key)!r}")
            exp_attrs, got_attrs = exp.get("attrs", {}), got.get("attrs", {})
            for name in sorted(set(exp_attrs) | set(got_attrs)):
                want, have = exp_attrs.get(name, "<absent>"), got_attrs.get(name, "<absent>")
                if want != have:
                    problems.append(f"  {id_}.{name}: expected {_short(want)}, got {_short(have)}")
    return problems


ID_TYPE_HINT = (
    "  (id types: the ids of loaded objects and their references must be GC3Pie's own Id and "
    "IntId, as when GC3Pie wrote the record: GC3Pie's Id hashes as (prefix, seqno), so a plain "
    "str equals it but is not found in dicts keyed by Id such as Session.tasks, and sorts as "
    "text: 'job.10' < 'job.9')"
)


def _id_types(description: Any) -> list[str]:
    """Every ``id_type`` in a record description, nested references included."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "id_type" in node:
                found.append(node["id_type"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(description)
    return found


def _id_key(id_: str) -> tuple[str, int, str]:
    prefix, _, number = id_.rpartition(".")
    if number.isdigit():
        return (prefix, int(number), id_)
    return ("", int(id_), id_) if id_.isdigit() else (id_, -1, id_)


def error_lines(errors: Mapping[str, str], what: str, limit: int = 5) -> list[str]:
    if not errors:
        return []
    lines = [f"{what}: {len(errors)} ids failed to load: {sorted(errors, key=_id_key)}"]
    for id_ in sorted(errors, key=_id_key)[:limit]:
        lines.append(f"  {id_}: {errors[id_].splitlines()[0][:400]}")
    return lines


def foreign_entries(entries: Iterable[str], ids: Iterable[str]) -> list[str]:
    """Names in a jobs directory that are neither records nor their ``.OLD`` backups."""
    known = set(ids)
    return [e for e in entries
            if e not in known and not (e.endswith(".OLD") and e[: -len(".OLD")] in known)]


def check_gc3pie_dump(dump: Mapping[str, Any], expected: Mapping[str, Any],
                      expected_shared: Mapping[str, Any] | None, kind: str,
                      compare_records: bool = True) -> list[str]:
    """What is wrong with GC3Pie's reading of a store that should hold ``expected``
    (``None`` for ``expected_shared``: sharing not checked)."""
    problems: list[str] = []
    ids = set(expected)
    listed = dump["list"]
    if "list_error" in dump:
        problems.append(f"GC3Pie's list() failed: {dump['list_error']}")
    not_records = sorted(set(listed) - ids)
    if not_records:
        problems.append(f"GC3Pie's list() returns names that are not records: {not_records}")
    unlisted = sorted(ids - set(listed), key=_id_key)
    if unlisted:
        problems.append(f"GC3Pie's list() misses records: {unlisted}")
    problems += error_lines(dump["errors"], "GC3Pie load()")
    if compare_records:
        loaded = {i: r for i, r in dump["records"].items() if i in ids}
        problems += record_differences(
            {i: r for i, r in expected.items() if i in loaded}, loaded, "GC3Pie's copy")
    if dump["duplicates"]:
        problems.append(f"GC3Pie got several objects for one id: {dump['duplicates']}")
    sharing = None if expected_shared is None else dict(expected_shared)
    if sharing is not None and not dump["errors"] and dump["shared"] != sharing:
        problems.append(f"sharing differs in GC3Pie: expected {dict(expected_shared)}, "
                        f"got {dump['shared']}")
    if kind == "dir":
        foreign = foreign_entries(dump["entries"], ids)
        if foreign:
            problems.append(f"the jobs directory holds more than records: {foreign}")
    else:
        for id_, row in sorted(dump["rows"].items(), key=lambda kv: _id_key(kv[0])):
            want = dump["expected_rows"].get(id_)
            if want is None:
                continue
            got = {k: row.get(k) for k in want}
            if got != want:
                problems.append(f"row {id_}: columns as stored {got}, "
                                f"as GC3Pie computes them {want}")
    return problems


def report(gc3_counts: list[str], record_property: Callable[[str, Any], None],
           line: str, **counts: int) -> None:
    """Print a count line, keep it for the run's summary and the JUnit report."""
    gc3_counts.append(line)
    print(line)
    for key, value in counts.items():
        record_property(key, value)


def _label(description: Mapping[str, Any]) -> Any:
    attrs = description.get("attrs", {})
    value = attrs.get("name") or attrs.get("jobname")
    return value[1] if isinstance(value, list) and len(value) == 2 else value


def by_name(objects: Iterable[Any]) -> dict[str, Any]:
    """Loaded objects by ``jobname`` (jobs) or ``name`` (containers, children)."""
    named: dict[str, Any] = {}
    for obj in objects:
        name = getattr(obj, "jobname", None) or getattr(obj, "name", None)
        if name is not None:
            named[name] = obj
    return named


def sanity(written: Mapping[str, Any]) -> None:
    """GC3Pie reads its own store back exactly (else the harness is wrong)."""
    dump = written["dump"]
    assert dump["errors"] == {}, dump["errors"]
    assert dump["records"] == written["saved"]["records"]
    assert sorted(dump["list"]) == sorted(written["ids"])
    assert written["saved"]["shared"], "the graph has a shared child"


# ------------------------------------------------------------------ tests


def test_typedstore_reads_gc3pie_store(
    backend: str, gc3: Gc3Side, stores: Stores, gc3_counts: list[str],
    record_property: Callable[[str, Any], None],
) -> None:
    written = gc3.write()
    sanity(written)
    gc3_ids = written["ids"]

    store = stores.open()
    listed = sorted((str(i) for i in store.list()), key=_id_key)
    loaded, errors = load_all(store)
    got = describe_all(loaded.values())
    equal = [i for i in gc3_ids if got["records"].get(i) == written["saved"]["records"][i]]
    report(gc3_counts, record_property,
           f"{backend}: GC3Pie wrote {len(gc3_ids)} records; typedstore listed {len(listed)}, "
           f"loaded {len(loaded)} ({len(errors)} load errors), {len(equal)} value for value",
           gc3pie_written=len(gc3_ids), typedstore_loaded=len(loaded),
           typedstore_loaded_equal=len(equal))

    assert listed == sorted(gc3_ids, key=_id_key), "typedstore lists other ids than GC3Pie wrote"
    problems = error_lines(errors, "typedstore load() of GC3Pie records")
    problems += record_differences(written["saved"]["records"], got["records"],
                                   "typedstore's copy of GC3Pie's records")
    assert not problems, "\n".join(problems)
    assert got["duplicates"] == {}, "several objects for one id"
    assert got["shared"] == written["saved"]["shared"]
    named = by_name(loaded.values())
    alpha, beta, twice = named["alpha"], named["beta"], named["twice"]
    assert alpha.children[1] is beta.children[0] is named["shared"]
    assert twice.children[0] is twice.children[1]
    assert named["jobs"].children[1] is named["app2"]
    assert named["outer"].children[0] is named["inner"]


def test_references_read_from_gc3pie_records(backend: str, gc3: Gc3Side, stores: Stores) -> None:
    """The references of records GC3Pie wrote, read from their payloads without
    loading them (typedstore.references), are the Persistables each one holds."""
    from typedstore.references import referenced_ids
    from typedstore.serialization import Persistable

    written = gc3.write()
    sanity(written)
    store = stores.open()
    loaded, errors = load_all(store)
    assert not errors
    with_children = 0
    for id_, obj in loaded.items():
        payload = bytes(store._read(store._coerce_id(id_)).payload)
        found = {store._coerce_id(ref) for ref in referenced_ids(payload, id_)}
        held = {child.persistent_id for child in getattr(obj, "children", ())
                if isinstance(child, Persistable)}
        assert found == held, f"record {id_}: read {found}, holds {held}"
        with_children += bool(held)
    assert with_children >= 4


def test_references_of_a_gc3pie_store(backend: str, gc3: Gc3Side, stores: Stores) -> None:
    """A store GC3Pie wrote: typedstore knows who references whom (read from the
    payloads on first need), refuses to remove a shared child, and pack keeps
    every record GC3Pie wrote (whether GC3Pie saved one directly is not known)."""
    from typedstore import ReferencedError

    written = gc3.write()
    sanity(written)
    store = stores.open()
    named = by_name(load_all(store)[0].values())
    shared = named["shared"]
    holders = sorted(str(n.persistent_id) for n in named.values()
                     if any(c is shared for c in getattr(n, "children", ())))
    assert len(holders) == 2
    assert sorted(str(i) for i in store.referrers(shared.persistent_id)) == holders
    with pytest.raises(ReferencedError):
        store.remove(shared.persistent_id)
    report = stores.open().pack()
    assert report.removed == 0
    assert len(store.list()) == len(written["ids"])


def test_gc3pie_reads_records_typedstore_added(
    backend: str, gc3: Gc3Side, stores: Stores, gc3_counts: list[str],
    record_property: Callable[[str, Any], None],
) -> None:
    """typedstore adds records (loading nothing) to a store GC3Pie wrote; GC3Pie reads all."""
    written = gc3.write()
    sanity(written)

    store = stores.open()
    new = [*gc3objects.new_batch("ts-added", 4),
           gc3objects.make_app("ts-big", 3, "RUNNING", blob=BIG_BLOB)]
    for obj in new:
        store.save(obj)
    stores.close(store)
    ts_saved = describe_all(all_persistables(new))
    ts_ids = list(ts_saved["records"])

    clash = sorted(set(ts_ids) & set(written["ids"]), key=_id_key)
    expected = {**written["saved"]["records"], **ts_saved["records"]}
    dump = gc3.dump()
    loaded = [i for i in ts_ids if i in dump["records"]]
    equal = [i for i in ts_ids if dump["records"].get(i) == ts_saved["records"][i]]
    own = [i for i in written["ids"] if dump["records"].get(i) == expected[i]]
    report(gc3_counts, record_property,
           f"{backend}: typedstore added {len(ts_ids)} records to GC3Pie's store; GC3Pie loaded "
           f"{len(loaded)} of them, {len(equal)} value for value (and {len(own)} of its own "
           f"{len(written['ids'])})",
           typedstore_added=len(ts_ids), gc3pie_loaded=len(loaded), gc3pie_loaded_equal=len(equal))

    problems = []
    if clash:
        problems.append(f"typedstore reissued ids GC3Pie had used: {clash}")
    problems += check_gc3pie_dump(dump, expected, written["saved"]["shared"], gc3.kind)
    assert not problems, "\n".join(problems)


def test_gc3pie_reads_store_typedstore_updated(
    backend: str, gc3: Gc3Side, stores: Stores, gc3_counts: list[str],
    record_property: Callable[[str, Any], None],
) -> None:
    """typedstore loads GC3Pie's store, changes records, adds records sharing an existing
    child; GC3Pie then reads the whole store back as typedstore left it."""
    written = gc3.write()
    sanity(written)

    store = stores.open()
    loaded, errors = load_all(store)
    assert not errors, "\n".join(error_lines(errors, "typedstore load() of GC3Pie records"))
    named = by_name(loaded.values())

    # replace() after changing a nested (non-Persistable) value
    app2 = named["app2"]
    app2.execution.state = "TERMINATED"
    app2.execution.returncode = 0
    store.replace(app2.persistent_id, app2)
    # save() after assigning attributes
    app3 = named["app3"]
    app3.cores = 16
    app3.label = app3.label + " \U0001f680 updated"
    store.save(app3)
    # a changed shared child, saved through a container holding it
    shared, alpha = named["shared"], named["alpha"]
    shared.value = 43
    alpha.name = "alpha (typedstore)"
    store.save(alpha)
    # a container changed in place (list append), saved explicitly
    beta = named["beta"]
    beta.children.append(Child("beta-new", 5))
    beta.changed = True
    store.save(beta)
    # new records: a container sharing an existing child, a job over 64 KiB
    gamma = Container("gamma", [shared, Child("gamma-1", 1)])
    store.save(gamma)
    big = gc3objects.make_app("ts-big", 12, "RUNNING", blob=BIG_BLOB)
    store.save(big)
    new_ids = {str(o.persistent_id) for o in all_persistables([gamma, big, beta])} - set(loaded)
    stores.close(store)

    everything = all_persistables([*loaded.values(), gamma, big])
    expected = describe_all(everything)
    assert expected["shared"][str(shared.persistent_id)] == sorted(
        str(c.persistent_id) for c in (alpha, beta, gamma))

    # typedstore itself, from scratch
    again = stores.open()
    reloaded, errors = load_all(again)
    problems = error_lines(errors, "typedstore reload")
    problems += record_differences(expected["records"],
                                   describe_all(reloaded.values())["records"], "typedstore reload")
    stores.close(again)

    dump = gc3.dump()
    problems += check_gc3pie_dump(dump, expected["records"], expected["shared"], gc3.kind)
    ok = [i for i in expected["records"]
          if dump["records"].get(i) == expected["records"][i] and i not in dump["errors"]]
    report(gc3_counts, record_property,
           f"{backend}: typedstore changed 5 and added {len(new_ids)} records in GC3Pie's store "
           f"of {len(written['ids'])}; GC3Pie read back {len(ok)} of {len(expected['records'])} "
           f"value for value",
           typedstore_changed=5, typedstore_new=len(new_ids), gc3pie_read_back_equal=len(ok))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_typed_queries_on_gc3pie_columns(
    backend: str, gc3: Gc3Side, stores: Stores,
) -> None:
    written = gc3.write()
    sanity(written)
    rows_as_stored = written["dump"]["rows"]
    states, jobnames, names = written["states"], written["jobnames"], written["names"]

    fields = tsside.extra_fields()
    col = {c.name: c for c in fields}
    store = stores.open(extra_fields=fields)

    def ids(query: Any) -> list[str]:
        return sorted((str(i) for i in query.ids()), key=_id_key)

    running = sorted((i for i, s in states.items() if s == "RUNNING"), key=_id_key)
    assert ids(store.query(state="RUNNING")) == running
    app3 = next(i for i, n in jobnames.items() if n == "app3")
    assert ids(store.query(jobname="app3")) == [app3]
    assert ids(store.query(col["cores"] >= 4, state="RUNNING")) == running  # app2: 4, app3: 8
    non_jobs = [i for i in written["ids"] if i not in states]
    assert store.query(col["app_cores"] == -1).count() == len(non_jobs)  # GetValue(...).ONLY
    alpha = next(i for i, n in names.items() if n == "alpha")
    assert ids(store.query(container_name="alpha")) == [alpha]  # GetOnly(Container, xform=...)
    assert ids(store.query(col["returncode"] == 1)) == [
        i for i, s in states.items() if s == "TERMINATED" and rows_as_stored[i]["returncode"] == 1]

    rows = store.query(state="TERMINATED").rows()
    assert sorted((str(r.id) for r in rows), key=_id_key) == sorted(
        (i for i, s in states.items() if s == "TERMINATED"), key=_id_key)
    for row in rows:
        stored = rows_as_stored[str(row.id)]
        got = {name: getattr(row, name, "<missing from rows()>")
               for name in ["state", *gc3objects.EXTRA_COLUMNS]}
        assert got == {name: stored[name] for name in got}, f"row {row.id}"

    # a record typedstore adds is found by the same queries
    new = gc3objects.make_app("ts-query", 6, "RUNNING")
    new_id = str(store.save(new))
    assert ids(store.query(state="RUNNING")) == sorted([*running, new_id], key=_id_key)
    assert ids(store.query(jobname="ts-query")) == [new_id]


def test_mixed_writers_lose_no_record(
    backend: str, gc3: Gc3Side, stores: Stores, tmp_path: Path, gc3_id_file: Path,
    gc3_counts: list[str], record_property: Callable[[str, Any], None],
) -> None:
    """GC3Pie and typedstore processes add records to one store (GC3Pie's), first in
    turns, then at the same time; both number ids from the same GC3PIE_ID_FILE. At the
    end every record either side wrote is there, as its writer wrote it."""
    written = gc3.write()
    sanity(written)
    expected: dict[str, Any] = dict(written["saved"]["records"])
    writer: dict[str, str] = {i: "GC3Pie (initial)" for i in expected}
    problems: list[str] = []
    counts = {"GC3Pie": len(expected), "typedstore": 0}

    def take(result: Mapping[str, Any], side: str, what: str) -> None:
        for id_ in result["ids"]:
            if id_ in writer:
                problems.append(f"id {id_} issued to {writer[id_]} and again to {what} "
                                f"(one of the two records is lost)")
            writer[id_] = what
            expected[id_] = result["saved"]["records"][id_]
        counts[side] += len(result["ids"])

    # in turns: a GC3Pie process, then a typedstore store opened and closed (a process's life)
    for round_ in range(3):
        take(gc3.save_more(f"gc3-turn{round_}", count=3), "GC3Pie", f"GC3Pie (turn {round_})")
        take(tsside.save_more(stores.url, f"ts-turn{round_}", count=3), "typedstore",
             f"typedstore (turn {round_})")

    # at the same time: one process each, several rounds, started together
    go = tmp_path / "go"
    gc3_proc, gc3_out = gc3.start_save_more("gc3-conc", count=3, rounds=4, pause=0.02,
                                            start_file=go)
    ts_out = tmp_path / "tsside-conc.json"
    ts_proc = tsside.start(["save-more", stores.url, "--tag", "ts-conc", "--count", "3",
                            "--rounds", "4", "--pause", "0.02", "--start-file", str(go),
                            "--out", str(ts_out)],
                           env={"GC3PIE_ID_FILE": str(gc3_id_file)},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    go.touch()
    for name, proc, out, side in (("GC3Pie", gc3_proc, gc3_out, "GC3Pie"),
                                  ("typedstore", ts_proc, ts_out, "typedstore")):
        try:
            _, stderr = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
            pytest.fail(f"the concurrent {name} writer did not finish in 120 s:\n{stderr}")
        assert proc.returncode == 0, f"the concurrent {name} writer failed:\n{stderr[-5000:]}"
        take(read_result(out), side, f"{name} (concurrent)")

    dump = gc3.dump()
    gc3_view = dump["records"]
    lost = sorted((i for i in expected if gc3_view.get(i) != expected[i]), key=_id_key)
    if lost:
        problems.append(f"{len(lost)} of {len(expected)} records are not as their writer wrote "
                        f"them (GC3Pie's reading); the first ones:")
    for id_ in lost[:8]:
        got, want = gc3_view.get(id_), expected[id_]
        if got is None:
            problems.append(f"record {id_} written by {writer[id_]} is missing "
                            f"({dump['errors'].get(id_, 'not listed').splitlines()[0][:300]})")
        elif (got["class"], _label(got)) != (want["class"], _label(want)):
            problems.append(f"record {id_} written by {writer[id_]} as {want['class']} "
                            f"{_label(want)!r} was overwritten: GC3Pie reads {got['class']} "
                            f"{_label(got)!r}")
        else:
            detail = [d.strip() for d in record_differences({id_: want}, {id_: got}, id_)
                      if d.startswith(f"  {id_}")]
            problems.append(f"record {id_} written by {writer[id_]} differs: "
                            + " / ".join(detail[:2]))
    if any("id_type expected" in p for p in problems):
        problems.append(ID_TYPE_HINT)
    problems += check_gc3pie_dump(dump, expected, None, gc3.kind, compare_records=False)

    final = stores.open()
    loaded, errors = load_all(final)
    problems += error_lines(errors, "typedstore load() at the end")
    problems += record_differences(expected, describe_all(loaded.values())["records"],
                                   "typedstore's view at the end")
    report(gc3_counts, record_property,
           f"{backend}: mixed writers: GC3Pie wrote {counts['GC3Pie']}, typedstore "
           f"{counts['typedstore']} records; {len(expected) - len(lost)} of {len(expected)} "
           f"read back by GC3Pie as written",
           mixed_gc3pie_written=counts["GC3Pie"], mixed_typedstore_written=counts["typedstore"],
           mixed_intact=len(expected) - len(lost))
    assert not problems, "\n".join(problems)
