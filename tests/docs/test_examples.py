"""Documentation examples are programs: run them so they cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typedstore.demo import run

ROOT = Path(__file__).resolve().parents[2]


def test_demo_answers_the_same_on_sqlite_and_the_file_store(tmp_path: Path) -> None:
    on_sqlite = run(f"sqlite:///{tmp_path / 'jobs.db'}", jobs=30, seed=3)
    on_files = run(str(tmp_path / "jobs"), jobs=30, seed=3)
    assert on_sqlite == on_files
    assert on_sqlite["total"] == 31  # the sweep and its 30 jobs
    assert 0 < on_sqlite["running"] < 30


def test_quickstart_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), str(tmp_path / "store")],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "11 records" in done.stdout


def test_demo_store_is_readable_by_another_process(tmp_path: Path) -> None:
    # python -m typedstore.demo runs as __main__: its jobs must still pickle as
    # typedstore.demo classes, or no other process could load them.
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    done = subprocess.run([sys.executable, "-m", "typedstore.demo", url, "--jobs", "5"],
                          capture_output=True, text=True, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    reader = (
        "import sys\n"
        "from typedstore import make_store\n"
        "from typedstore.demo import DemoJob, DemoJobRow\n"
        "store = make_store(sys.argv[1], row_model=DemoJobRow)\n"
        "objs = [store.load(i) for i in store.list()]\n"
        "print(sum(isinstance(o, DemoJob) for o in objs), len(objs))\n"
    )
    read = subprocess.run([sys.executable, "-c", reader, url], capture_output=True, text=True,
                          check=False, cwd=tmp_path)
    assert read.returncode == 0, read.stderr
    assert read.stdout.split() == ["5", "6"]
