"""The real GC3Pie 2.6.8, from PyPI, in a virtual environment of its own.

GC3Pie pins SQLAlchemy < 1.4 and typedstore needs SQLAlchemy 2, so the two never
share an interpreter here: GC3Pie runs in its own venv, as a subprocess
(:func:`run_gc3` runs ``gc3side.py`` there and parses the JSON it writes).

The venv is built once and kept between test runs, outside the repository, in
``${TYPEDSTORE_TEST_CACHE:-~/.cache/typedstore-tests}/gc3pie-2.6.8-py<major><minor>``.
Building it is guarded by a file lock (parallel test runs wait for one build), and
a marker file is written only after the install and an import check succeeded:
a venv without the marker (an interrupted build) is removed and built again.

GC3Pie's ``pycrypto`` dependency does not build on current Pythons and is used
only by its EC2/OpenStack backends, so GC3Pie is installed with ``--no-deps`` and
its other dependencies are listed here.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock

HERE = Path(__file__).resolve().parent
GC3SIDE = HERE / "gc3side.py"

GC3PIE_VERSION = "2.6.8"
#: GC3Pie 2.6.8's run-time dependencies, less pycrypto (used only by its EC2 and
#: OpenStack backends; it does not build on current Pythons) and SQLAlchemy.
#: Also used by tests/gc3pie_integration.
GC3PIE_DEPENDENCIES = (
    "blinker",
    "coloredlogs",
    "dictproxyhack",
    "future>=0.17",
    "lockfile",
    "paramiko",
    "parsedatetime",
    "prettytable",
    "pyCLI",
    "python-daemon",
    "pyyaml",
    "six",
)
#: This venv's: GC3Pie's pinned SQLAlchemy and the drivers it uses, psycopg2 for
#: ``postgresql://`` and PyMySQL for ``mysql+pymysql://``.
DEPENDENCIES = (*GC3PIE_DEPENDENCIES, "sqlalchemy<1.4", "psycopg2-binary", "pymysql")
#: Checked after the install (and by the marker): what the tests rely on.
IMPORT_CHECK = """
import json, sys
import gc3libs, gc3libs.core, gc3libs.session, gc3libs.persistence
import gc3libs.persistence.sql, gc3libs.persistence.filesystem, gc3libs.persistence.accessors
import sqlalchemy, psycopg2, pymysql
from importlib.metadata import version
assert version("gc3pie") == sys.argv[1], version("gc3pie")
assert sqlalchemy.__version__.startswith("1.3."), sqlalchemy.__version__
print(json.dumps({"gc3pie": version("gc3pie"), "sqlalchemy": sqlalchemy.__version__}))
"""
MARKER = ".typedstore-tests-ready"
#: Seconds allowed for each step of the build (pip downloads are slow at times).
BUILD_STEP_TIMEOUT = 900


class Gc3EnvError(Exception):
    """The GC3Pie venv could not be built; ``output`` holds what the failing step printed."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text}\n--- output ---\n{self.output}" if self.output else text


class Gc3SideError(Exception):
    """``gc3side.py`` failed: the message carries its exit status and stderr."""


def cache_root() -> Path:
    root = os.environ.get("TYPEDSTORE_TEST_CACHE") or "~/.cache/typedstore-tests"
    return Path(root).expanduser()


def venv_dir() -> Path:
    major, minor = sys.version_info[:2]
    return cache_root() / f"gc3pie-{GC3PIE_VERSION}-py{major}{minor}"


def _marker_text() -> str:
    """What the marker holds: a changed dependency list invalidates the venv."""
    return json.dumps({"gc3pie": GC3PIE_VERSION, "dependencies": list(DEPENDENCIES)},
                      sort_keys=True)


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _ready(venv: Path) -> bool:
    marker = venv / MARKER
    try:
        return marker.read_text() == _marker_text() and _venv_python(venv).exists()
    except OSError:
        return False


def _step(argv: Sequence[str | os.PathLike[str]], log: list[str]) -> str:
    """Run one build step; raise :class:`Gc3EnvError` with its output when it fails."""
    command = " ".join(str(a) for a in argv)
    log.append(f"$ {command}")
    env = dict(os.environ)
    # The venv's own interpreter and packages only: no test-run PYTHONPATH leaking in.
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)
    try:
        done = subprocess.run(
            [str(a) for a in argv], capture_output=True, text=True, env=env,
            timeout=BUILD_STEP_TIMEOUT, stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        output = "\n".join(log) + f"\n{exc.stdout or ''}{exc.stderr or ''}"
        raise Gc3EnvError(f"timed out after {BUILD_STEP_TIMEOUT} s: {command}", output) from None
    log.append(done.stdout + done.stderr)
    if done.returncode != 0:
        raise Gc3EnvError(f"exit status {done.returncode}: {command}", "\n".join(log))
    return done.stdout


def _build(venv: Path) -> None:
    log: list[str] = []
    shutil.rmtree(venv, ignore_errors=True)
    try:
        _step([sys.executable, "-m", "venv", venv], log)
        python = _venv_python(venv)
        _step([python, "-m", "pip", "install", "--no-deps", f"gc3pie=={GC3PIE_VERSION}"], log)
        _step([python, "-m", "pip", "install", *DEPENDENCIES], log)
        _step([python, "-c", IMPORT_CHECK, GC3PIE_VERSION], log)
    except BaseException:
        # Keep pip's output beside the venv for a look afterwards.
        venv.parent.mkdir(parents=True, exist_ok=True)
        (venv.parent / f"{venv.name}.build.log").write_text("\n".join(log))
        raise
    (venv / MARKER).write_text(_marker_text())


_python: Path | None = None


def ensure_gc3pie_python() -> Path:
    """The GC3Pie venv's interpreter, building the venv first if needed.

    Raises :class:`Gc3EnvError` (with pip's output) when the build fails.
    """
    global _python
    if _python is not None:
        return _python
    venv = venv_dir()
    if not _ready(venv):
        venv.parent.mkdir(parents=True, exist_ok=True)
        # A build takes minutes: wait for another run's build rather than fail.
        with FileLock(str(venv) + ".lock", timeout=2 * BUILD_STEP_TIMEOUT + 300):
            if not _ready(venv):
                _build(venv)
    _python = _venv_python(venv)
    return _python


def gc3_environment(overrides: Mapping[str, str]) -> dict[str, str]:
    """The environment of a GC3Pie subprocess: this one, with ``tests/gc3pie`` (and
    nothing else) as its ``PYTHONPATH`` and ``overrides`` applied.

    ``GC3PIE_ID_FILE`` must be among the overrides: GC3Pie's id counter defaults
    to ``~/.gc3/next_id.txt``, which a test must never touch.
    """
    if "GC3PIE_ID_FILE" not in overrides:
        raise ValueError("set GC3PIE_ID_FILE for GC3Pie subprocesses (a file under tmp_path)")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(HERE)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env.update(overrides)
    return env


def start_gc3(script_args: Sequence[str | os.PathLike[str]], env: Mapping[str, str],
              **popen: Any) -> subprocess.Popen[str]:
    """Start ``gc3side.py`` with these arguments in the GC3Pie venv (not waiting)."""
    argv = [str(ensure_gc3pie_python()), str(GC3SIDE), *(str(a) for a in script_args)]
    return subprocess.Popen(argv, env=gc3_environment(env), text=True,
                            stdin=subprocess.DEVNULL, **popen)


def run_gc3(script_args: Sequence[str | os.PathLike[str]], env: Mapping[str, str],
            timeout: float = 120, cwd: str | os.PathLike[str] | None = None) -> Any:
    """Run ``gc3side.py`` with these arguments in the GC3Pie venv and return its JSON.

    ``gc3side.py`` writes its result to the file named by ``--out``; this
    function adds ``--out`` itself (a file beside ``GC3PIE_ID_FILE``) when the
    arguments do not name one. A non-zero exit raises :class:`Gc3SideError`
    carrying stderr (where gc3libs logs).
    """
    args = [str(a) for a in script_args]
    if "--out" in args:
        out = Path(args[args.index("--out") + 1])
    else:
        out = Path(env["GC3PIE_ID_FILE"]).with_name(f"gc3side-{os.getpid()}-{next(_outs)}.json")
        args += ["--out", str(out)]
    argv = [str(ensure_gc3pie_python()), str(GC3SIDE), *args]
    try:
        done = subprocess.run(argv, env=gc3_environment(env), capture_output=True, text=True,
                              timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise Gc3SideError(f"gc3side {' '.join(args)} timed out after {timeout} s; "
                           f"stderr:\n{exc.stderr}") from None
    if done.returncode != 0:
        raise Gc3SideError(f"gc3side {' '.join(args)} exited with {done.returncode}; "
                           f"stderr:\n{done.stderr[-20000:]}")
    return read_result(out)


def read_result(path: str | os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


_outs = itertools.count()


# ---------------------------------------------------------------- one store, both sides


def gc3pie_url(store_url: str) -> str:
    """The URL under which GC3Pie 2.6.8 opens the store typedstore opens as ``store_url``.

    A directory stays a path. ``sqlite:////abs/path`` becomes GC3Pie's own
    ``sqlite:///abs/path`` (GC3Pie makes the path absolute). PostgreSQL goes
    through psycopg2 (GC3Pie's SQLAlchemy 1.3 has no psycopg 3 dialect); MySQL
    keeps PyMySQL. Query options and ``#table=`` are kept.
    """
    if "://" not in store_url:
        return store_url
    scheme, rest = store_url.split("://", 1)
    if scheme == "sqlite":
        return f"sqlite://{rest[1:]}" if rest.startswith("//") else store_url
    base = scheme.split("+", 1)[0]
    if base == "postgresql":
        return f"postgresql://{rest}"
    if base in ("mysql", "mariadb"):
        return f"mysql+pymysql://{rest}"
    raise AssertionError(f"no GC3Pie spelling for {store_url}")


def store_kind(store_url: str) -> str:
    return "sql" if "://" in store_url else "dir"


class Gc3Side:
    """``gc3side.py`` commands on one store, in the GC3Pie venv, with this test's
    counter file and a ``HOME`` of its own (GC3Pie must not touch ``~/.gc3``)."""

    def __init__(self, store_url: str, tmp_path: Path, id_file: Path) -> None:
        self.store_url = store_url
        self.url = gc3pie_url(store_url)
        self.kind = store_kind(store_url)
        self.tmp_path = tmp_path
        home = tmp_path / "gc3home"
        home.mkdir(exist_ok=True)
        self.env = {"GC3PIE_ID_FILE": str(id_file), "HOME": str(home)}
        self._n = 0

    def _out(self, command: str) -> Path:
        self._n += 1
        return self.tmp_path / f"gc3side-{self._n}-{command}.json"

    def _args(self, command: str, *extra: str) -> list[str]:
        return [command, self.url, "--kind", self.kind, "--extra-fields",
                "--out", str(self._out(command)), *extra]

    def run(self, command: str, *extra: str, timeout: float = 120) -> Any:
        return run_gc3(self._args(command, *extra), env=self.env, timeout=timeout,
                       cwd=self.tmp_path)

    def write(self) -> Any:
        """GC3Pie writes the initial graph (see gc3side.py ``write``)."""
        return self.run("write")

    def dump(self) -> Any:
        """GC3Pie lists and loads the whole store."""
        return self.run("dump")

    def save_more(self, tag: str, count: int = 3, rounds: int = 1) -> Any:
        return self.run("save-more", "--tag", tag, "--count", str(count),
                        "--rounds", str(rounds))

    def start_save_more(self, tag: str, count: int, rounds: int, pause: float,
                        start_file: Path) -> tuple[subprocess.Popen[str], Path]:
        """Start a GC3Pie writer that waits for ``start_file``; returns it and its output."""
        args = self._args("save-more", "--tag", tag, "--count", str(count),
                          "--rounds", str(rounds), "--pause", str(pause),
                          "--start-file", str(start_file))
        out = Path(args[args.index("--out") + 1])
        process = start_gc3(args, env=self.env, cwd=self.tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return process, out
