"""typedstore as a user gets it: a wheel, installed in a fresh virtual environment.

:func:`build_wheel` builds the wheel from a copy of the package's sources (the
checkout is left untouched); :func:`ensure_wheel_venv` installs it, with the
PostgreSQL driver, into a venv made without the system's site-packages, cached in
``${TYPEDSTORE_TEST_CACHE:-~/.cache/typedstore-tests}/typedstore-wheel-<hash>``
where ``<hash>`` is a hash of the wheel's contents: a changed package makes a new
venv, an unchanged one reuses it. As for GC3Pie's venv (tests/gc3pie/gc3env.py), the
build is guarded by a file lock and a marker written after an import check; older
wheel venvs are removed when a new one is made.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from filelock import FileLock

from tests.gc3pie.gc3env import cache_root

ROOT = Path(__file__).resolve().parents[2]
MARKER = ".typedstore-tests-ready"
PREFIX = "typedstore-wheel-"
STEP_TIMEOUT = 900
IMPORT_CHECK = (
    "import sys, typedstore, alembic, psycopg; "
    "assert 'site-packages' in typedstore.__file__, typedstore.__file__; "
    "assert sys.prefix != sys.base_prefix; print(typedstore.__file__)"
)


class WheelEnvError(Exception):
    """The wheel or its venv could not be built; the message holds the output."""


def _step(argv: list[str], cwd: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    try:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=STEP_TIMEOUT, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        raise WheelEnvError(f"timed out after {STEP_TIMEOUT} s: {' '.join(argv)}") from exc
    if done.returncode != 0:
        raise WheelEnvError(f"exit status {done.returncode}: {' '.join(argv)}\n"
                            f"{done.stdout}\n{done.stderr}")
    return done.stdout


def build_wheel(out: Path) -> Path:
    """Build typedstore's wheel into ``out`` from a copy of the sources; return it."""
    source = out / "source"
    shutil.copytree(ROOT / "typedstore", source / "typedstore",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, source / name)
    _step([sys.executable, "-m", "pip", "wheel", "--no-deps",
           "-w", str(out / "dist"), str(source)])
    [wheel] = (out / "dist").glob("typedstore-*.whl")
    return wheel


def wheel_hash(wheel: Path) -> str:
    """A hash of the wheel's members (names and contents, not their timestamps)."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(archive.namelist()):
            digest.update(name.encode() + b"\0" + archive.read(name) + b"\0")
    return digest.hexdigest()[:16]


def ensure_wheel_venv(wheel: Path) -> Path:
    """The ``bin`` folder of a venv holding ``wheel`` (with ``[postgres]``), built
    or reused (:mod:`this module <tests.docs.wheelenv>`)."""
    root = cache_root()
    venv = root / f"{PREFIX}{wheel_hash(wheel)}"
    marker = venv / MARKER
    if marker.exists():
        return venv / "bin"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(venv) + ".lock", timeout=2 * STEP_TIMEOUT):
        if marker.exists():
            return venv / "bin"
        shutil.rmtree(venv, ignore_errors=True)
        _step([sys.executable, "-m", "venv", str(venv)])  # no system site-packages
        python = str(venv / "bin" / "python")
        _step([python, "-m", "pip", "install", "--quiet", f"{wheel}[postgres]"])
        _step([python, "-c", IMPORT_CHECK], cwd=root)
        marker.write_text(wheel.name)
    for old in root.glob(f"{PREFIX}*"):
        if old.is_dir() and old != venv:
            shutil.rmtree(old, ignore_errors=True)
    return venv / "bin"
