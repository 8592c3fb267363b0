"""docs/sharing.md: each of its Python examples is a program; run them all, in a
fresh process each, on SQLite and on the file store (``URL`` is the shared store)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "sharing.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_the_page_has_examples() -> None:
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("number", range(len(EXAMPLES)))
@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_example_runs(number: int, kind: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}" if kind == "sqlite" else str(tmp_path / "jobs")
    program = f"URL = {url!r}\n" + EXAMPLES[number]
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=120, check=False, cwd=tmp_path)
    assert done.returncode == 0, f"example {number + 1}:\n{EXAMPLES[number]}\n{done.stderr}"
