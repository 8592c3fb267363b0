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
