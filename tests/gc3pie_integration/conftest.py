"""Fixtures of the GC3Pie-on-typedstore tests: real GC3Pie 2.6.8 in its own venv.

* ``integration_python`` (session): the python of the venv holding GC3Pie 2.6.8
  and this checkout of typedstore (:mod:`integration_venv`), built once and
  cached between runs. When ``CI=true`` a failed build fails the tests; elsewhere
  they are skipped with the reason.
* ``gnu_time`` (session): GC3Pie's ``shellcmd`` backend runs every job under GNU
  ``time``; without it the run-locally tests fail in CI and skip elsewhere.
* ``gc3_home``: a home directory in the test's tmp dir for the GC3Pie processes.
* ``gc3_config``: a GC3Pie configuration file with one local ``shellcmd`` resource.
* ``gc3``: runs Python in the venv (:class:`integration_venv.Gc3Runner`), returning its JSON.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import integration_venv
import pytest
from integration_venv import Gc3Runner

IN_CI = os.environ.get("CI", "").lower() == "true"


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def integration_python() -> Path:
    """The python of the GC3Pie + typedstore venv (built on first use)."""
    try:
        return integration_venv.ensure_venv()
    except Exception as exc:  # BuildError, a lock timeout, a full disk...
        _unavailable(
            f"the GC3Pie {integration_venv.GC3PIE_VERSION} + typedstore venv at "
            f"{integration_venv.venv_dir()} could not be built: {type(exc).__name__}: {exc}"
        )
        raise AssertionError("unreachable") from exc


@pytest.fixture(scope="session")
def gnu_time() -> None:
    """GC3Pie's shellcmd backend needs GNU time (it looks for ``time``, then ``gtime``)."""
    for command in ("time", "gtime"):
        done = subprocess.run(
            f"command {command} --version 2>&1 | grep -q GNU", shell=True, check=False,
        )
        if done.returncode == 0:
            return
    _unavailable("GNU time is not installed: GC3Pie's shellcmd backend runs every job "
                 "under it (install the 'time' package)")


@pytest.fixture
def gc3_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def gc3_config(tmp_path: Path) -> Path:
    """One resource, ``localhost``: GC3Pie's standard run-locally set-up."""
    path = tmp_path / "gc3pie.conf"
    path.write_text(textwrap.dedent("""\
        [resource/localhost]
        enabled = yes
        type = shellcmd
        transport = local
        auth = none
        max_cores = 4
        max_cores_per_job = 1
        max_memory_per_core = 1 GiB
        max_walltime = 1 hour
        architecture = x86_64
        override = no
        """))
    return path


@pytest.fixture
def gc3(integration_python: Path, gc3_home: Path, tmp_path: Path) -> Gc3Runner:
    return Gc3Runner(integration_python, gc3_home, tmp_path)
