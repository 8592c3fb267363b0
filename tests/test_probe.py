"""Which objects the pickling probe takes for references, on its fast and general paths.

``dumps`` first pickles a record with the C pickler; a Persistable's own
``__reduce_ex__`` reports a reference. Once a store gives an id to an object that
is not a Persistable, or a Persistable subclass overrides ``__reduce_ex__``, the
probe looks at every object instead. The flag is per process, so each path is
checked in a fresh interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCENARIO = """
import sys
from typedstore import FilesystemStore, Persistable, serialization

class Child(Persistable):
    def __init__(self, name):
        self.name = name
{extra}
class Plain:
    pass

store = FilesystemStore(sys.argv[1])
{prepare}
child = Child("c")
holder = {{"deep": [(1, {{"child": child}})], "alone": Child("own")}}
holder_id = store.save(holder)
assert serialization._fast_probe is {fast}, serialization._fast_probe

fresh = FilesystemStore(sys.argv[1])
loaded = fresh.load(holder_id)
kid = loaded["deep"][0][1]["child"]
assert kid.name == "c" and kid.persistent_id == child.persistent_id
assert fresh.load(child.persistent_id) is kid          # a record of its own
assert len(fresh.list()) == 3 + {extra_records}, fresh.list()
{check}
print("ok")
"""


def run(tmp_path: Path, fast: bool, extra: str = "", prepare: str = "", check: str = "",
        extra_records: int = 0) -> None:
    script = SCENARIO.format(extra=extra, prepare=prepare, fast=fast,
                             check=check, extra_records=extra_records)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "store")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_fast_probe_finds_persistables_nested_in_containers(tmp_path: Path) -> None:
    run(tmp_path, fast=True)


def test_a_reduce_ex_override_switches_to_the_general_probe(tmp_path: Path) -> None:
    extra = textwrap.dedent("""
    class Custom(Persistable):
        def __reduce_ex__(self, protocol):
            return (Custom, ())
    """)
    run(tmp_path, fast=False, extra=extra)


@pytest.mark.parametrize("where", ["saved", "loaded"])
def test_plain_objects_with_ids_become_references(tmp_path: Path, where: str) -> None:
    """A plain object saved on its own is stored by reference in a later record."""
    prepare = "plain = Plain(); plain.value = 5; plain_id = store.save(plain)"
    if where == "loaded":
        prepare += "; plain = FilesystemStore(sys.argv[1]).load(plain_id)"
    prepare += "\nbox = Child('box'); box.plain = plain; box_id = store.save(box)"
    check = textwrap.dedent("""
    again = fresh.load(box_id)
    assert again.plain is fresh.load(plain_id) and again.plain.value == 5
    """)
    run(tmp_path, fast=False, prepare=prepare, check=check, extra_records=2)
