"""Durability of single-record commits on the file store (issue 12).

Killing processes cannot show a missing fsync (the page cache survives a
killed process), and the multi-record crash tests never looked at single
saves. So:

* the system calls of a save and of a replace are recorded with ``strace`` on
  the real file system, and their order is checked: the temporary file is
  written and fsynced, renamed over the record, then the directory is fsynced;
* a single-record save, replace and remove are each killed (SIGKILL, from an
  audit hook in the child) at every file operation in turn: afterwards the
  record is wholly the old or wholly the new version (or absent/present for
  save and remove), and every listed record loads. A copy-then-delete in
  place of the atomic rename leaves a torn record at some kill point.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

STRACE = shutil.which("strace")

CHILD = """
import sys
from typedstore import FilesystemStore

store = FilesystemStore(sys.argv[1])
id_ = store.save({"n": 1, "blob": "x" * 5000})
store.replace(id_, {"n": 2, "blob": "y" * 5000})
print(id_)
"""

_CALL = re.compile(r"^(?:\d+\s+)?(\w+)\((.*)\)\s+=\s+(-?\d+)")


def syscalls(log: str) -> list[tuple[str, str, int]]:
    """``(name, arguments, result)`` of each complete call in an strace log."""
    calls = []
    for line in log.splitlines():
        match = _CALL.match(line.strip())
        if match:
            calls.append((match.group(1), match.group(2), int(match.group(3))))
    return calls


def test_save_and_replace_write_fsync_rename_fsync_dir(tmp_path: Path) -> None:
    if STRACE is None:
        if os.environ.get("CI") == "true":
            pytest.fail("strace is not installed (.ci/run installs it)")
        pytest.skip("strace is not installed")
    directory = tmp_path / "jobs"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    log = tmp_path / "strace.log"
    done = subprocess.run(
        [STRACE, "-f", "-qq", "-s", "256", "-o", str(log), "-e",
         "trace=openat,open,write,fsync,fdatasync,rename,renameat,renameat2,close",
         sys.executable, str(script), str(directory)],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    record = str(directory / done.stdout.strip())
    calls = syscalls(log.read_text())

    renames = [i for i, (name, args, result) in enumerate(calls)
               if name.startswith("rename") and f'"{record}"' in args and result == 0]
    assert len(renames) == 2, "the save and the replace each rename one file onto the record"
    directory_fds = {result for name, args, result in calls
                     if name in ("openat", "open") and f'"{directory}"' in args and result >= 0}
    for at in renames:
        temp = re.findall(r'"([^"]+)"', calls[at][1])[0]
        opened = [i for i in range(at) if calls[i][0] in ("openat", "open")
                  and f'"{temp}"' in calls[i][1] and "O_CREAT" in calls[i][1]]
        assert opened, f"{temp} was not created before its rename"
        fd = calls[opened[-1]][2]
        between = calls[opened[-1]:at]
        wrote = [i for i, (name, args, _) in enumerate(between)
                 if name == "write" and args.startswith(f"{fd},")]
        synced = [i for i, (name, args, _) in enumerate(between)
                  if name in ("fsync", "fdatasync") and args == str(fd)]
        assert wrote, "the temporary file was not written"
        assert synced and synced[-1] > wrote[-1], \
            "the temporary file was not fsynced after its last write, before the rename"
        after = [i for i in range(at + 1, len(calls))
                 if calls[i][0] in ("fsync", "fdatasync")
                 and int(calls[i][1] or -1) in directory_fds]
        assert after, "the directory was not fsynced after the rename"


KILL_DRIVER = """
import json, os, signal, sys
from typedstore import FilesystemStore

directory, operation = sys.argv[1], sys.argv[2]
EVENTS = ("open", "os.rename", "os.remove", "os.unlink")
setup = FilesystemStore(directory)
kept = setup.save({"n": 0, "blob": "k" * 3000})
target = setup.save({"n": 1, "blob": "a" * 3000})
outcomes = {}
for kill_at in range(1, 200):
    pid = os.fork()
    if pid == 0:
        store = FilesystemStore(directory)
        count = 0

        def hook(event, args):
            global count
            if event in EVENTS:
                count += 1
                if count == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)

        sys.addaudithook(hook)
        if operation == "save":
            store.save({"n": 2, "blob": "b" * 3000})
        elif operation == "replace":
            store.replace(target, {"n": 2, "blob": "b" * 3000})
        else:
            store.remove(target)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    killed = os.WIFSIGNALED(status)
    outcomes[kill_at] = "killed" if killed else "completed"
    check = FilesystemStore(directory)
    loaded = {str(i): check.load(i) for i in check.list()}  # a torn record raises here
    values = sorted(v["n"] for v in loaded.values())
    outcomes[kill_at] += " " + ",".join(map(str, values))
    check.close()
    if not killed:
        break
    # Back to the state before the operation for the next kill point.
    fresh = FilesystemStore(directory)
    for id_, value in loaded.items():
        if value["n"] == 2 and operation == "save":
            fresh.remove(id_)
    if operation == "replace":
        fresh.replace(target, {"n": 1, "blob": "a" * 3000})
    elif operation == "remove" and str(target) not in loaded:
        target = fresh.save({"n": 1, "blob": "a" * 3000})
    fresh.close()
print(json.dumps(outcomes))
"""


@pytest.mark.slow
@pytest.mark.parametrize("operation", ["save", "replace", "remove"])
def test_single_record_commit_killed_at_every_step(tmp_path: Path, operation: str) -> None:
    script = tmp_path / "driver.py"
    script.write_text(KILL_DRIVER)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "jobs"), operation],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    outcomes = {int(k): v for k, v in json.loads(done.stdout.splitlines()[-1]).items()}
    assert list(outcomes.values())[-1].startswith("completed"), outcomes
    assert len(outcomes) > 2, f"the commit made suspiciously few file operations: {outcomes}"
    before = {"save": "0,1", "replace": "0,1", "remove": "0,1"}[operation]
    after = {"save": "0,1,2", "replace": "0,2", "remove": "0"}[operation]
    for kill_at, outcome in outcomes.items():
        state = outcome.split(" ", 1)[1]
        assert state in (before, after), f"killed at step {kill_at}: records {state}"
    states = {outcome.split(" ", 1)[1] for outcome in outcomes.values()}
    assert states == {before, after}, "kills landed on one side of the commit point only"
