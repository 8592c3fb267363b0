"""The command's entry points: ``typedstore --version`` and ``python -m typedstore``."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version


def test_version_and_module_entry_point() -> None:
    done = subprocess.run([sys.executable, "-m", "typedstore", "--version"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"typedstore {version('typedstore')}"
    done = subprocess.run([sys.executable, "-m", "typedstore", "check", "foo://bar"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and done.stderr.startswith("error: ")
    assert "Traceback" not in done.stderr


def test_a_missing_driver_names_the_extra_to_install() -> None:
    """Without psycopg (blocked from importing, as when it is not installed) a
    PostgreSQL URL says which extra installs it; SQLite stores still work."""
    program = (
        "import sys\n"
        "sys.modules['psycopg'] = None\n"
        "from typedstore import StoreError, make_store\n"
        "try:\n"
        "    make_store('postgresql://postgres@127.0.0.1:5432/test')\n"
        "except StoreError as exc:\n"
        "    print(exc)\n"
        "make_store('sqlite:///' + sys.argv[1]).save({'n': 1})\n"
    )
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        done = subprocess.run([sys.executable, "-c", program, f"{directory}/x.db"],
                              capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "pip install 'typedstore[postgres]'" in done.stdout
