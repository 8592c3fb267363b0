"""Leftovers of dead or failed writers on the file store (issue 12, item 6).

Real processes: a writer killed in the middle of its commit (SIGKILL from an
audit hook, after its temporary file is written and before the rename), and a
writer whose write fails for a file-size limit (``RLIMIT_FSIZE`` in a child
process, the way a full disk or a quota fails a write).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from typedstore import FilesystemStore
from typedstore.defaults import STALE_TEMP_AGE
from typedstore.tempfiles import SUFFIX, writer_tag

KILLED_WRITER = """
import os, signal, sys
from typedstore import FilesystemStore

store = FilesystemStore(sys.argv[1])

def hook(event, args):
    # The record's temporary file is written: die before renaming it over the record.
    if event == "os.rename" and os.path.dirname(str(args[1])) == sys.argv[1]:
        os.kill(os.getpid(), signal.SIGKILL)

sys.addaudithook(hook)
store.save({"n": 1, "blob": "x" * 10000})
"""


def temporaries(store: FilesystemStore) -> list[str]:
    return [n for n in os.listdir(store._tmpdir) if n.endswith(SUFFIX)]


def test_a_killed_writers_temporary_file_goes_when_a_store_opens(tmp_path: Path) -> None:
    directory = tmp_path / "jobs"
    first = FilesystemStore(directory)
    kept = first.save({"n": 0})
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER)
    done = subprocess.run([sys.executable, str(script), str(directory)], timeout=60)
    assert done.returncode == -9
    assert len(temporaries(first)) == 1, "the killed writer left no temporary file"
    again = FilesystemStore(directory)
    assert temporaries(again) == []
    assert [str(i) for i in again.list()] == [str(kept)]  # the killed save is not there


def test_temporary_files_of_live_or_unknown_writers_stay(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "jobs")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host_ns = writer_tag().rsplit("~", 1)[0]
        names = {
            "live": f".7.{host_ns}~{live.pid}.0{SUFFIX}",
            "other host, fresh": f".8.elsewhere~1~{live.pid}.0{SUFFIX}",
            "other host, old": f".9.elsewhere~1~123.0{SUFFIX}",
            "old release, fresh": f".10.{live.pid}.0{SUFFIX}",
            "old release, old": f".11.{live.pid}.0{SUFFIX}",
        }
        for name in names.values():
            Path(store._tmpdir, name).write_bytes(b"partial")
        long_ago = time.time() - STALE_TEMP_AGE - 60
        for key in ("other host, old", "old release, old"):
            os.utime(Path(store._tmpdir, names[key]), (long_ago, long_ago))
        FilesystemStore(tmp_path / "jobs")
        left = set(temporaries(store))
        assert left == {names["live"], names["other host, fresh"], names["old release, fresh"]}
    finally:
        live.kill()
        live.wait()
    FilesystemStore(tmp_path / "jobs")  # its writer is gone now
    assert names["live"] not in set(temporaries(store))


LIMITED_WRITER = """
import json, os, resource, signal, sys
from typedstore import FilesystemStore, SaveError

directory, limit = sys.argv[1], int(sys.argv[2])
store = FilesystemStore(directory)
small = store.save({"n": 1})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
outcome = {}
for what in ("new", "replace"):
    try:
        if what == "new":
            store.save({"n": 2, "blob": os.urandom(4 * limit)})
        else:
            store.replace(small, {"n": 3, "blob": os.urandom(4 * limit)})
        outcome[what] = "saved"
    except SaveError as exc:
        outcome[what] = str(exc)
outcome["temporaries"] = [n for n in os.listdir(store._tmpdir) if n.endswith(".tmp")]
outcome["after"] = str(store.save({"n": 4}))  # a small save still works
outcome["small"] = str(small)
print(json.dumps(outcome))
"""


def test_a_write_past_a_size_limit_leaves_nothing_behind(tmp_path: Path) -> None:
    import json

    directory = tmp_path / "jobs"
    script = tmp_path / "limited.py"
    script.write_text(LIMITED_WRITER)
    limit = 256 * 1024
    done = subprocess.run([sys.executable, str(script), str(directory), str(limit)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.splitlines()[-1])
    for what in ("new", "replace"):
        message = outcome[what]
        assert "could not be written" in message and "File too large" in message, message
        assert "unchanged" in message
    assert f"record {outcome['small']}" in outcome["replace"]
    assert outcome["temporaries"] == []
    store = FilesystemStore(directory)
    assert store.load(outcome["small"]) == {"n": 1}  # the stored version, intact
    assert store.load(outcome["after"]) == {"n": 4}
    assert sorted(store.load(i)["n"] for i in store.list()) == [1, 4]


LIMITED_TRANSACTION = """
import json, os, resource, signal, sys
from typedstore import FilesystemStore, SaveError

directory, limit = sys.argv[1], int(sys.argv[2])
store = FilesystemStore(directory)
kept = store.save_many([{"n": n} for n in range(3)])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
outcome = {}
try:
    # Each record fits; the commit's index rows and journal do not.
    store.save_many([{"n": n, "pad": "p" * 200} for n in range(3, 3 + 2000)])
    outcome["error"] = None
except SaveError as exc:
    outcome["error"] = str(exc)
meta = os.path.dirname(store._tmpdir)
outcome["temporaries"] = os.listdir(store._tmpdir)
outcome["journals"] = [n for n in os.listdir(meta) if n.startswith("journal")]
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
outcome["after"] = str(store.save({"n": -1}))  # the same process saves again
outcome["kept"] = [str(i) for i in kept]
print(json.dumps(outcome))
"""


def test_a_transaction_past_a_size_limit_leaves_nothing_behind(tmp_path: Path) -> None:
    """A multi-record commit whose index rows or journal do not fit (a full disk,
    a quota) is a SaveError; its temporary files go at once (they would keep the
    disk full), and the same process saves again once there is room."""
    import json

    directory = tmp_path / "jobs"
    script = tmp_path / "limited.py"
    script.write_text(LIMITED_TRANSACTION)
    done = subprocess.run([sys.executable, str(script), str(directory), str(64 * 1024)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.splitlines()[-1])
    assert outcome["error"] is not None and "nothing of it was written" in outcome["error"], \
        outcome["error"]
    assert outcome["temporaries"] == [] and outcome["journals"] == []
    store = FilesystemStore(directory)
    assert sorted(str(i) for i in store.list()) == sorted(outcome["kept"] + [outcome["after"]])
    assert sorted(store.load(i)["n"] for i in store.list()) == [-1, 0, 1, 2]


def test_a_dead_writers_journal_temporary_goes(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "jobs")
    meta = Path(store._tmpdir).parent
    for name in ("journal.99999999.tmp", ".journal.99999999.tmp"):  # older and current names
        (meta / name).write_text('[["job.1", ".tmp-x"]]')
    FilesystemStore(tmp_path / "jobs")
    assert not (meta / "journal.99999999.tmp").exists()
    assert not (meta / ".journal.99999999.tmp").exists()
