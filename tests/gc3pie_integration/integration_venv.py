"""One virtual environment holding GC3Pie 2.6.8 *and* typedstore (SQLAlchemy 2).

GC3Pie is installed with ``--no-deps``, so neither its ``SQLAlchemy < 1.4`` pin
nor ``pycrypto`` (used only by its EC2/OpenStack backends, and not building on
current Pythons) is installed; its other dependencies are listed here. typedstore
is installed editable from the repository these tests belong to (found from this
file's path), with its PostgreSQL and MySQL drivers.

The venv is built once and kept between test runs, outside the repository, in
``${TYPEDSTORE_TEST_CACHE:-~/.cache/typedstore-tests}/gc3pie-2.6.8-integration-py<XY>``.
A file lock guards building (parallel runs wait for one build). A marker file
is written only after the install and an import check succeeded; a venv without
it (an interrupted build) is built again from scratch. The marker records the
repository path and a hash of its ``pyproject.toml``: when another checkout, or
changed dependencies, use the cached venv, only typedstore's editable install
is redone (and checked) before the marker is rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock

# The one list of GC3Pie's version and dependencies (tests/gc3pie builds the other venv).
from tests.gc3pie.gc3env import GC3PIE_DEPENDENCIES, GC3PIE_VERSION

HERE = Path(__file__).resolve().parent
#: The checkout under test: tests/gc3pie_integration/ is two levels below it.
REPO_ROOT = HERE.parent.parent
PROGRAM = HERE / "gc3_program.py"

#: typedstore's extras installed with it.
EXTRAS = "postgres,mysql"
MARKER = ".typedstore-integration-ready"
#: Seconds one run of a program in the venv may take (three echo jobs take seconds).
PROGRAM_TIMEOUT = 120
#: Seconds allowed for each build step (pip downloads are slow at times).
BUILD_STEP_TIMEOUT = 900

#: Run in the venv after installing: GC3Pie imports on typedstore, beside SQLAlchemy 2,
#: and typedstore comes from this checkout.
IMPORT_CHECK = """
import json, sys
from importlib.metadata import version
from pathlib import Path
import typedstore.compat.gc3pie
typedstore.compat.gc3pie.install()
import gc3libs, gc3libs.core, gc3libs.session, gc3libs.persistence.sql
import sqlalchemy, psycopg, pymysql, typedstore
assert version("gc3pie") == sys.argv[1], version("gc3pie")
assert sqlalchemy.__version__.split(".")[0] == "2", sqlalchemy.__version__
assert gc3libs.persistence.Persistable is typedstore.Persistable
here = Path(typedstore.__file__).resolve()
assert here.is_relative_to(Path(sys.argv[2]).resolve()), (here, sys.argv[2])
print(json.dumps({"gc3pie": version("gc3pie"), "sqlalchemy": sqlalchemy.__version__,
                  "typedstore": str(here)}))
"""


class BuildError(Exception):
    """The venv could not be built; ``log`` names the file holding pip's output."""

    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(f"{message} (build log: {log})" if log else message)
        self.log = log


def cache_root() -> Path:
    root = os.environ.get("TYPEDSTORE_TEST_CACHE") or "~/.cache/typedstore-tests"
    return Path(root).expanduser()


def venv_dir() -> Path:
    major, minor = sys.version_info[:2]
    return cache_root() / f"gc3pie-{GC3PIE_VERSION}-integration-py{major}{minor}"


def venv_python(venv: Path | None = None) -> Path:
    return (venv or venv_dir()) / "bin" / "python"


def _base_marker() -> dict[str, object]:
    """What the GC3Pie part of the venv was built from."""
    return {"gc3pie": GC3PIE_VERSION, "dependencies": list(GC3PIE_DEPENDENCIES)}


def _repo_marker() -> dict[str, object]:
    """What the typedstore part was installed from."""
    pyproject = (REPO_ROOT / "pyproject.toml").read_bytes()
    return {"repo": str(REPO_ROOT), "extras": EXTRAS,
            "pyproject": hashlib.sha256(pyproject).hexdigest()}


def _read_marker(venv: Path) -> dict[str, object] | None:
    try:
        data = json.loads((venv / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not venv_python(venv).exists():
        return None
    return data


def _write_marker(venv: Path, typedstore_part: bool = True) -> None:
    data = {**_base_marker(), **(_repo_marker() if typedstore_part else {})}
    temporary = venv / f"{MARKER}.tmp"
    temporary.write_text(json.dumps(data, sort_keys=True))
    os.replace(temporary, venv / MARKER)


def _state(venv: Path) -> str:
    """``ready``, ``reinstall`` (typedstore part stale) or ``build`` (start over)."""
    marker = _read_marker(venv)
    if marker is None or any(marker.get(k) != v for k, v in _base_marker().items()):
        return "build"
    if any(marker.get(k) != v for k, v in _repo_marker().items()):
        return "reinstall"
    return "ready"


def _clean_env() -> dict[str, str]:
    """This environment without what would leak the test run's packages in."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _step(argv: Sequence[str | os.PathLike[str]], log: list[str]) -> None:
    command = " ".join(str(a) for a in argv)
    log.append(f"$ {command}")
    try:
        done = subprocess.run(
            [str(a) for a in argv], capture_output=True, text=True, env=_clean_env(),
            timeout=BUILD_STEP_TIMEOUT, stdin=subprocess.DEVNULL, cwd=cache_root(),
        )
    except subprocess.TimeoutExpired as exc:
        log.append(f"{exc.stdout or ''}{exc.stderr or ''}")
        raise BuildError(f"timed out after {BUILD_STEP_TIMEOUT} s: {command}") from None
    log.append(done.stdout + done.stderr)
    if done.returncode != 0:
        raise BuildError(f"exit status {done.returncode}: {command}\n{done.stderr[-3000:]}")


def _install_typedstore(python: Path, log: list[str]) -> None:
    _step([python, "-m", "pip", "install", "-e", f"{REPO_ROOT}[{EXTRAS}]"], log)
    _step([python, "-c", IMPORT_CHECK, GC3PIE_VERSION, REPO_ROOT], log)


def _build(venv: Path, state: str) -> None:
    log: list[str] = []
    python = venv_python(venv)
    try:
        if state == "build":
            shutil.rmtree(venv, ignore_errors=True)
            _step([sys.executable, "-m", "venv", venv], log)
            _step([python, "-m", "pip", "install", "--no-deps", f"gc3pie=={GC3PIE_VERSION}"], log)
            _step([python, "-m", "pip", "install", *GC3PIE_DEPENDENCIES], log)
        else:
            # Another checkout (or changed dependencies) of typedstore: the marker
            # loses its typedstore part first, so an interrupted reinstall is
            # redone (not the whole build) by the next run.
            _write_marker(venv, typedstore_part=False)
        _install_typedstore(python, log)
    except BaseException as exc:
        path = venv.parent / f"{venv.name}.build.log"
        path.write_text("\n".join(log))
        if isinstance(exc, BuildError):
            raise BuildError(str(exc), path) from None
        raise
    _write_marker(venv)


def ensure_venv() -> Path:
    """The venv's python, building (or updating) the venv first when needed.

    Raises :class:`BuildError` when a step fails (its message names the log),
    or ``filelock.Timeout`` when another run's build does not finish in time.
    """
    venv = venv_dir()
    if _state(venv) == "ready":
        return venv_python(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(venv) + ".lock", timeout=3 * BUILD_STEP_TIMEOUT + 300):
        state = _state(venv)
        if state != "ready":
            _build(venv, state)
    return venv_python(venv)


def subprocess_env(home: Path, **overrides: str) -> dict[str, str]:
    """The environment of a program run in the venv.

    ``HOME`` is ``home`` (GC3Pie writes ``~/.gc3``, its logs and the shellcmd
    spool there, and reads ``~/.gc3/gc3pie.conf``), ``GC3PIE_ID_FILE`` and
    ``TYPEDSTORE_HOME`` point inside it: nothing touches the real home directory.
    """
    env = _clean_env()
    env.update({
        "HOME": str(home),
        "GC3PIE_ID_FILE": str(home / "gc3pie-next-id.txt"),
        "GC3PIE_CONF": str(home / "no-gc3pie.conf"),
        "TYPEDSTORE_HOME": str(home / ".typedstore"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
    })
    env.update(overrides)
    return env


class Gc3Runner:
    """Runs code in the venv, as a new process each time, with ``HOME`` in tmp."""

    def __init__(self, python: Path, home: Path, tmp: Path) -> None:
        self.python = python
        self.home = home
        self.tmp = tmp
        self._outs = 0

    def _run(self, argv: Sequence[str | os.PathLike[str]], out: Path) -> Any:
        try:
            done = subprocess.run(
                [str(a) for a in argv], capture_output=True, text=True,
                env=subprocess_env(self.home), cwd=self.tmp,
                timeout=PROGRAM_TIMEOUT, stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"timed out after {PROGRAM_TIMEOUT} s: {argv}\n"
                                 f"stderr:\n{exc.stderr}") from None
        if done.returncode != 0:
            raise AssertionError(f"exit status {done.returncode}: {argv}\n"
                                 f"stdout:\n{done.stdout[-5000:]}\nstderr:\n{done.stderr[-20000:]}")
        with open(out, encoding="utf-8") as stream:
            return json.load(stream)

    def _out(self) -> Path:
        self._outs += 1
        return self.tmp / f"result-{self._outs}.json"

    def program(self, *args: str | os.PathLike[str]) -> Any:
        """Run ``gc3_program.py`` with these arguments; return the JSON it wrote."""
        out = self._out()
        return self._run([self.python, PROGRAM, *args, "--out", out], out)

    def code(self, source: str) -> Any:
        """Run ``source``, which must write JSON to the file named by ``sys.argv[1]``."""
        out = self._out()
        return self._run([self.python, "-c", textwrap.dedent(source), out], out)
