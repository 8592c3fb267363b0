"""Crash safety of the file store: writers killed with SIGKILL, then the store reopened.

Two kinds of crash:

* a writer process saving in a loop is killed after a random short interval
  (several rounds on one directory; the seed is in every assertion message);
* a commit is killed at each of its file-system steps in turn: a child process
  installs an audit hook (``sys.addaudithook``) that sends itself SIGKILL at the
  n-th ``open``/``os.rename``/``os.remove`` of its commit, for n = 1, 2, ... until
  a commit completes. The process really dies there; nothing is mocked.

Afterwards every id a writer reported as committed loads with what was written,
nothing listed fails to load (no torn record), and every multi-record
transaction is either wholly present or wholly absent.
"""

from __future__ import annotations

import collections
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from typedstore import FilesystemStore

pytestmark = pytest.mark.slow

GROUP_SIZE = 6

LOOP_WRITER = """
import sys
from typedstore import make_store

directory, round_, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = make_store(directory)
seq = 0
while True:
    seq += 1
    if seq % 3:
        value = {"kind": "single", "round": round_, "seq": seq, "blob": "x" * (seq % 200)}
        id_ = store.save(value)
        print("S", id_, seq, flush=True)
    else:
        with store.transaction():
            ids = [store.save({"kind": "group", "round": round_, "seq": seq, "i": i,
                               "size": size, "blob": "y" * 300})
                   for i in range(size)]
        print("T", ",".join(map(str, ids)), seq, flush=True)
"""


def single_value(round_: int, seq: int) -> dict[str, Any]:
    return {"kind": "single", "round": round_, "seq": seq, "blob": "x" * (seq % 200)}


def group_value(round_: int, seq: int, i: int) -> dict[str, Any]:
    return {"kind": "group", "round": round_, "seq": seq, "i": i, "size": GROUP_SIZE,
            "blob": "y" * 300}


def committed_lines(output: str) -> list[list[str]]:
    """The complete lines a killed writer printed (a last line cut short is dropped)."""
    lines = output.split("\n")
    return [line.split() for line in lines[:-1] if line]


def assert_groups_whole(store: FilesystemStore, context: str) -> dict[Any, int]:
    """Load everything listed; every group must be complete. Returns group -> count."""
    groups: collections.Counter[Any] = collections.Counter()
    for id_ in store.list():
        value = store.load(id_)  # raises on a torn record
        if isinstance(value, dict) and value.get("kind") == "group":
            groups[(value["round"], value["seq"])] += 1
            assert value["size"] == GROUP_SIZE
    partial = {key: n for key, n in groups.items() if n != GROUP_SIZE}
    assert not partial, f"{context}: transactions partly stored: {partial}"
    return dict(groups)


def test_killed_writer_loses_nothing_committed(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    directory = tmp_path / "jobs"
    script = tmp_path / "writer.py"
    script.write_text(LOOP_WRITER)
    committed: dict[str, dict[str, Any]] = {}
    committed_groups: set[tuple[int, int]] = set()

    for round_ in range(5):
        context = f"seed {seed}, round {round_}"
        proc = subprocess.Popen(
            [sys.executable, str(script), str(directory), str(round_), str(GROUP_SIZE)],
            stdout=subprocess.PIPE, text=True,
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the writer is up and has committed once
        time.sleep(rng.uniform(0.02, 0.4))
        proc.send_signal(signal.SIGKILL)
        output = first + proc.stdout.read()
        assert proc.wait(timeout=30) == -signal.SIGKILL, context

        lines = committed_lines(output)
        assert lines, context
        for kind, ids, seq in lines:
            if kind == "S":
                committed[ids] = single_value(round_, int(seq))
            else:
                committed_groups.add((round_, int(seq)))
                for i, id_ in enumerate(ids.split(",")):
                    committed[id_] = group_value(round_, int(seq), i)

        store = FilesystemStore(directory)
        listed = {str(id_) for id_ in store.list()}
        missing = set(committed) - listed
        assert not missing, f"{context}: committed ids not listed: {sorted(missing)}"
        for id_, value in committed.items():
            assert store.load(id_) == value, f"{context}: {id_}"
        groups = assert_groups_whole(store, context)
        assert committed_groups <= set(groups), context


CRASH_DRIVER = """
import json, os, signal, sys
from typedstore import make_store

directory, mode, SIZE = sys.argv[1], sys.argv[2], int(sys.argv[3])
EVENTS = ("open", "os.rename", "os.remove")

def commit_group(store, base_id, group, kill_at):
    count = 0
    armed = False

    def hook(event, args):
        nonlocal count
        if armed and event in EVENTS:
            count += 1
            if count == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)
    history = store.load(base_id)["history"]
    with store.transaction():
        for i in range(SIZE):
            store.save({"kind": "group", "round": 0, "seq": group, "i": i, "size": SIZE})
        store.replace(base_id, {"kind": "base", "history": [*history, group]})
        armed = True  # the commit happens when the block exits

setup = make_store(directory)
base_id = setup.save({"kind": "base", "history": []})
survivor = make_store(directory) if mode == "survivor" else None
outcomes = {}
for kill_at in range(1, 400):
    pid = os.fork()
    if pid == 0:
        commit_group(make_store(directory), base_id, kill_at, kill_at)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert killed or os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    outcomes[kill_at] = "killed" if killed else "completed"
    if survivor is not None:
        # A store opened before the crash goes on committing transactions.
        with survivor.transaction():
            survivor.save({"kind": "survivor", "after": kill_at})
            survivor.save({"kind": "survivor", "after": kill_at})
    if not killed:
        break
print(json.dumps({"base": str(base_id), "outcomes": outcomes}))
"""


def run_crash_driver(tmp_path: Path, mode: str) -> tuple[Path, str, dict[int, str]]:
    directory = tmp_path / "jobs"
    script = tmp_path / "driver.py"
    script.write_text(CRASH_DRIVER)
    done = subprocess.run(
        [sys.executable, str(script), str(directory), mode, str(GROUP_SIZE)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    outcomes = {int(k): v for k, v in report["outcomes"].items()}
    return directory, report["base"], outcomes


def check_commit_crashes(directory: Path, base: str, outcomes: dict[int, str]) -> None:
    completed = [n for n, outcome in outcomes.items() if outcome == "completed"]
    assert len(completed) == 1, outcomes
    assert len(outcomes) > GROUP_SIZE, "the commit made suspiciously few file operations"

    store = FilesystemStore(directory)
    groups = assert_groups_whole(store, "commit killed at each step")
    present = {seq for _round, seq in groups}
    assert completed[0] in present, "the commit that was not killed is missing"
    # Each transaction also appended its group to the base record (read afresh
    # by each writer): the history lists exactly the groups that are present.
    assert store.load(base)["history"] == sorted(present)
    # Both sides of the commit point were hit: some killed commits are gone, and
    # some were finished by whoever opened the store next (the journal replay).
    killed = {n for n, outcome in outcomes.items() if outcome == "killed"}
    assert killed - present, "no kill landed before the commit point"
    assert killed & present, "no kill landed after the commit point"
    # Reopening again changes nothing (recovery is done once, and is idempotent).
    again = FilesystemStore(directory)
    assert sorted(map(str, again.list())) == sorted(map(str, store.list()))


def test_commit_killed_at_every_step_is_all_or_nothing(tmp_path: Path) -> None:
    directory, base, outcomes = run_crash_driver(tmp_path, "alone")
    check_commit_crashes(directory, base, outcomes)


def test_crashed_commit_survives_other_open_store(tmp_path: Path) -> None:
    directory, base, outcomes = run_crash_driver(tmp_path, "survivor")
    check_commit_crashes(directory, base, outcomes)
