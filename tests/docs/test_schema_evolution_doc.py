"""docs/schema-evolution.md, run as a user would: every ``console`` block, exactly as
written, with typedstore installed from a wheel in a fresh venv, in an empty
directory outside the repository; ``python title="NAME"`` blocks are written to NAME
first. On SQLite as written, and on PostgreSQL with ``sqlite:jobs.db`` replaced by
this run's PostgreSQL URL. A line ending in ``# exit N`` must end with status N,
every other one with 0.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs.wheelenv import ROOT, build_wheel, ensure_wheel_venv

DOC = ROOT / "docs" / "schema-evolution.md"
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```\n", re.S | re.M)
EXIT = re.compile(r"\s+#\s*exit\s+(\d+)\s*$")
#: ```python title="NAME"``` (the file name Material shows above the block).
TITLE = re.compile(r'^title="([^"/]+)"$')
SQLITE_URL = "sqlite:jobs.db"


def doc_steps(text: str) -> list[tuple[str, str, str]]:
    """``("file", name, text)`` and ``("run", command, "")`` in the page's order."""
    steps: list[tuple[str, str, str]] = []
    for info, body in FENCE.findall(text):
        words = info.split()
        if words[:1] == ["console"]:
            for line in body.splitlines():
                if line.startswith("$ "):
                    steps.append(("run", line[2:], ""))
        elif words[:1] == ["python"] and len(words) > 1 and (titled := TITLE.match(words[1])):
            steps.append(("file", titled.group(1), body))
    return steps


def test_the_page_has_the_walkthrough() -> None:
    steps = doc_steps(DOC.read_text())
    commands = [s[1] for s in steps if s[0] == "run"]
    assert commands[0] == "typedstore init"
    assert any("revision --autogenerate" in c for c in commands)
    assert any(c.startswith("typedstore backfill") for c in commands)
    assert any("downgrade base" in c for c in commands)


@pytest.fixture(scope="session")
def wheel_bin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    wheel = build_wheel(tmp_path_factory.mktemp("wheel"))
    yield ensure_wheel_venv(wheel)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_every_command_of_the_page_runs(backend: str, wheel_bin: Path,
                                        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = SQLITE_URL if backend == "sqlite" else request.getfixturevalue("pg_base_url")
    project = tmp_path / "project"
    project.mkdir()
    assert ROOT not in project.parents
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "TYPEDSTORE_URL", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join([str(wheel_bin), env.get("PATH", "")])
    for kind, what, body in doc_steps(DOC.read_text()):
        if kind == "file":
            (project / what).write_text(body.replace(SQLITE_URL, url))
            continue
        expected = EXIT.search(what)
        command = what.replace(SQLITE_URL, url)
        done = subprocess.run(["bash", "-c", command], cwd=project, env=env,
                              capture_output=True, text=True, timeout=300, check=False)
        want = int(expected.group(1)) if expected else 0
        assert done.returncode == want, (
            f"{command!r} exited {done.returncode}, expected {want}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}")
        assert "Traceback" not in done.stderr, done.stderr
    assert sorted(p.name for p in (project / "migrations" / "versions").iterdir()) == [
        "README.md", "jobs", "tasks"]
