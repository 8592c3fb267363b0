"""typedstore's side of the mixed-writer tests: the same writes as ``gc3side.py save-more``.

Used in the test process (:func:`save_more`) and as a separate writer process
(``python tsside.py save-more URL --tag T --out JSON``, run with the test
environment's interpreter and ``PYTHONPATH`` naming the repository and this
directory). Stores are opened as a GC3Pie program would open them, with
``typedstore.make_store`` in place of GC3Pie's and the same ``extra_fields``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gc3objects
import sqlalchemy as sa

import typedstore

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def extra_fields() -> dict[Any, Any]:
    """The GC3Pie ``extra_fields`` of the tests, with typedstore's accessors."""
    return gc3objects.extra_fields(sa, typedstore)


def open_store(url: str, **kwargs: Any) -> Any:
    """``typedstore.make_store`` called as GC3Pie code calls ``make_store``."""
    kwargs.setdefault("extra_fields", extra_fields())
    return typedstore.make_store(url, **kwargs)


def save_more(url: str, tag: str, count: int, rounds: int = 1, pause: float = 0.0,
              start_file: str | None = None) -> dict[str, Any]:
    """Open the store, save ``rounds`` batches of new objects, close it; describe them."""
    store = open_store(url)
    try:
        if start_file:
            _wait_for(start_file)
        roots: list[Any] = []
        for round_ in range(rounds):
            batch = gc3objects.new_batch(f"{tag}-r{round_}", count)
            for obj in batch:
                store.save(obj)
            roots.extend(batch)
            if pause and round_ + 1 < rounds:
                time.sleep(pause)
    finally:
        store.close()
    saved = gc3objects.all_persistables(roots)
    return {"ids": [str(obj.persistent_id) for obj in saved],
            "saved": gc3objects.describe_all(saved), "side": "typedstore"}


def _wait_for(path: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"start file {path} did not appear within {timeout} s")
        time.sleep(0.01)


def start(script_args: Sequence[str], env: Mapping[str, str], **popen: Any
          ) -> subprocess.Popen[str]:
    """Start this script in a new process of the test environment's interpreter."""
    child_env = dict(os.environ)
    child_env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(HERE)])
    child_env.update(env)
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *script_args],
                            env=child_env, text=True, stdin=subprocess.DEVNULL, **popen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("save-more")
    p.add_argument("url")
    p.add_argument("--tag", required=True)
    p.add_argument("--count", type=int, default=4)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--pause", type=float, default=0.0)
    p.add_argument("--start-file", default=None)
    p.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    result = save_more(args.url, args.tag, args.count, args.rounds, args.pause, args.start_file)
    gc3objects.write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
